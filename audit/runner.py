"""Run the audit checks on one release and collect what the report shows."""
from __future__ import annotations

import re
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from veilset.audit import findings as F
from veilset.audit.anonymization import ProductionDetector, image_detections
from veilset.audit.checks import CHECKS, AuditContext
from veilset.audit.findings import CheckResult
from veilset.audit.illustrate import illustrate
from veilset.audit.release import Release
from veilset.audit.residual import ResidualDetector, build_residual_detector
from veilset.audit.takedowns import LedgerSnapshot

_EMAIL = re.compile(r"([A-Za-z0-9._%+-]+)@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


@dataclass(frozen=True)
class AuditReport:
    release_dir: str
    manifest: dict[str, Any] = field(repr=False)
    results: tuple[CheckResult, ...]
    ledger_history: tuple[dict[str, Any], ...] = ()
    detection_stats: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return all(r.status != F.FAIL for r in self.results)

    @property
    def findings(self) -> list[F.Finding]:
        return [f for r in self.results for f in r.findings]

    def result(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)


def mask_emails(value: Any) -> Any:
    """Replace the local part of e-mail addresses (requesters are people) in strings inside ``value``."""
    if isinstance(value, str):
        return _EMAIL.sub(lambda m: "***@" + m.group(2), value)
    if isinstance(value, dict):
        return {k: mask_emails(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_emails(v) for v in value]
    return value


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of the children it has waited for: a check's worker
    processes are waited for when the check ends, so the difference around a check is what it cost."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def detection_stats(release: Release) -> dict[str, Any]:
    """Per-image face/plate counts and detection scores (from the first format that records detections)."""
    per_image: dict[str, dict[str, int]] = {}
    scores: dict[str, list[float]] = {"face": [], "license_plate": []}
    for image_id, detections in image_detections(release).items():
        counts = Counter(d.get("label") for d in detections)
        per_image[image_id] = {"face": counts.get("face", 0), "license_plate": counts.get("license_plate", 0)}
        for d in detections:
            if d.get("label") in scores and isinstance(d.get("score"), (int, float)):
                scores[d["label"]].append(float(d["score"]))
    return {"per_image": per_image, "scores": scores}


class CheckProgress:
    """One bar over (published images x checks), total from the manifest's counts. A check that reads images one
    by one (``Release.iter_copies_of``: the re-detection and the residual scan) moves it per image; every check
    moves it to its end when it is done, so the bar reaches the total."""

    def __init__(self, release: Release, progress: Any, checks: Sequence[str]) -> None:
        counts = release.manifest.get("counts") if isinstance(release.manifest.get("counts"), dict) else {}
        published = counts.get("published", 0)
        self._per_check = published if isinstance(published, int) and published > 0 else 0
        self._release, self._index, self._done = release, -1, 0
        self._reporter = progress(self._per_check * len(checks), "image checks") \
            if progress is not None and self._per_check else None
        self._name = ""

    def start(self, name: str) -> None:
        self._index, self._name = self._index + 1, name
        if self._reporter is not None:
            self._release.on_image = self._tick
            self._reporter.update(self._done, name)

    def _tick(self) -> None:
        self._done = min(self._done + 1, (self._index + 1) * self._per_check)
        self._reporter.update(self._done, self._name)

    def finish(self) -> None:
        self._done = (self._index + 1) * self._per_check
        if self._reporter is not None:
            self._reporter.update(self._done, self._name)

    def close(self) -> None:
        self._release.on_image = None
        if self._reporter is not None:
            self._reporter.close()


def run_audit(release_dir: str, *, ledger: LedgerSnapshot | None = None, sample: int | None = None,
              face_detector: str | None = None, checks: Sequence[str] | None = None,
              residual: ResidualDetector | None = None,
              production: Sequence[ProductionDetector] | None = None, progress: Any = None,
              workers: int = 1) -> AuditReport:
    """Every requested check (default: every registered one, ``checks.CHECKS``) on ``release_dir``. ``ledger`` is
    the takedown ledger as data (``veilset.api.audit`` reads it from a path). ``residual``/``production`` inject
    prebuilt detectors (tests and repeated audits reuse a loaded model); by default they are built from
    ``face_detector`` and the manifest. ``progress``: a reporter factory (``veilset.progress.factory``; None: no
    progress) for one bar over published images x checks. ``workers``: processes for the per-image work of the
    anonymization and residual checks (each rebuilds the detectors once; injected detectors run in this process)."""
    names = CHECKS.names()
    checks = names if checks is None else list(checks)
    unknown = [c for c in checks if c not in names]
    if unknown:
        raise ValueError(f"unknown checks {unknown!r}; choose from {', '.join(names)}")
    if sample is not None and sample < 1:
        raise ValueError(f"--sample must be >= 1, got {sample}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    selected = [CHECKS.get(c) for c in checks]  # a check that cannot be loaded fails here, before the long ones
    release = Release(release_dir)
    rebuild = residual is None
    if F.RESIDUAL in checks and residual is None:
        residual = build_residual_detector(face_detector)  # fails early, before the long checks
    context = AuditContext(release, ledger, sample, production, residual, workers, rebuild)
    shown = CheckProgress(release, progress, [p.name for p in selected])
    results = []
    try:
        for plugin in selected:
            shown.start(plugin.name)
            started, cpu = time.perf_counter(), cpu_seconds()
            result = plugin.builder(context)
            result.stats["seconds"] = round(time.perf_counter() - started, 3)
            result.stats["cpu_seconds"] = round(cpu_seconds() - cpu, 3)
            results.append(result)
            shown.finish()
    finally:
        shown.close()
    history = tuple(mask_emails(h) for h in ledger.history) if ledger is not None else ()
    return AuditReport(release_dir, release.manifest, illustrate(release, results), history,
                       detection_stats(release))
