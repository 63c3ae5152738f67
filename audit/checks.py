"""The audit checks: a ``veilset.plugins.Registry``; ``runner.run_audit`` runs them in ``CHECKS.names()`` order.

A check is a ``Plugin`` whose builder is ``run(context: AuditContext) -> CheckResult`` (``findings``); its
``args`` list the ``veilset audit`` options it reads. Built-in checks declare theirs next to the check
(``audit/integrity.py``: ``PLUGIN``); other distributions add theirs under the entry-point group
``veilset.audit_checks`` (they run after the built-in ones, sorted by name).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from veilset.audit import findings as F
from veilset.audit.release import Release
from veilset.audit.takedowns import LedgerSnapshot
from veilset.plugins import Registry

KIND = "audit check"
GROUP = "veilset.audit_checks"

CHECKS = Registry(KIND, GROUP, {
    F.INTEGRITY: "veilset.audit.integrity:PLUGIN",
    F.TAKEDOWNS: "veilset.audit.takedowns:PLUGIN",
    F.METADATA: "veilset.audit.metadata:PLUGIN",
    F.ANONYMIZATION: "veilset.audit.anonymization:PLUGIN",
    F.RESIDUAL: "veilset.audit.residual:PLUGIN",
    F.MASKS: "veilset.audit.masks:PLUGIN",
    F.DUPLICATES: "veilset.audit.duplicates:PLUGIN",
})


@dataclass(frozen=True)
class AuditContext:
    """What every check gets: the release, the takedown ledger (as data), the sample size and the detectors the
    audit prepared (``production``: the build's, rebuilt from the manifest; ``residual``: the second scan's) and how
    many worker processes the per-image work may use."""

    release: Release
    ledger: LedgerSnapshot | None = None
    sample: int | None = None
    production: Sequence[Any] | None = None
    residual: Any = None
    workers: int = 1  # processes for the per-image work (``audit.parallel``)
    rebuild_residual: bool = False  # ``residual`` was built from its spec here (workers rebuild it), not injected
