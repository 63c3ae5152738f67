"""Run the audit checks on one release and collect what the report shows."""
from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from veilset.audit import findings as F
from veilset.audit.anonymization import ProductionDetector, check_anonymization
from veilset.audit.findings import CheckResult
from veilset.audit.integrity import check_integrity
from veilset.audit.masks import check_masks
from veilset.audit.metadata import check_metadata
from veilset.audit.release import Release
from veilset.audit.residual import ResidualDetector, build_residual_detector, check_residual
from veilset.audit.takedowns import check_takedowns, open_ledger

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


def detection_stats(release: Release) -> dict[str, Any]:
    """Per-image face/plate counts and detection scores (from the first format that records detections)."""
    per_image: dict[str, dict[str, int]] = {}
    scores: dict[str, list[float]] = {"face": [], "license_plate": []}
    for rec in release.iter_records():
        if rec.detections is None or rec.image_id in per_image:
            continue
        counts = Counter(d.get("label") for d in rec.detections)
        per_image[rec.image_id] = {"face": counts.get("face", 0), "license_plate": counts.get("license_plate", 0)}
        for d in rec.detections:
            if d.get("label") in scores and isinstance(d.get("score"), (int, float)):
                scores[d["label"]].append(float(d["score"]))
    return {"per_image": per_image, "scores": scores}


def run_audit(release_dir: str, *, ledger: str | None = None, sample: int | None = None,
              face_detector: str | None = None, checks: Sequence[str] = F.CHECKS,
              residual: ResidualDetector | None = None,
              production: Sequence[ProductionDetector] | None = None) -> AuditReport:
    """Every requested check on ``release_dir``. ``residual``/``production`` inject prebuilt detectors (tests
    and repeated audits reuse a loaded model); by default they are built from ``face_detector`` and the
    manifest."""
    unknown = [c for c in checks if c not in F.CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown!r}; choose from {', '.join(F.CHECKS)}")
    if sample is not None and sample < 1:
        raise ValueError(f"--sample must be >= 1, got {sample}")
    release = Release(release_dir)
    led = open_ledger(ledger) if ledger else None
    if F.RESIDUAL in checks and residual is None:
        residual = build_residual_detector(face_detector)  # fails early, before the long checks
    results = []
    for check in checks:
        started = time.perf_counter()
        if check == F.INTEGRITY:
            results.append(check_integrity(release))
        elif check == F.TAKEDOWNS:
            results.append(check_takedowns(release, led))
        elif check == F.METADATA:
            results.append(check_metadata(release))
        elif check == F.ANONYMIZATION:
            results.append(check_anonymization(release, sample, production))
        elif check == F.RESIDUAL:
            results.append(check_residual(release, residual, sample))
        elif check == F.MASKS:
            results.append(check_masks(release))
        results[-1].stats["seconds"] = round(time.perf_counter() - started, 3)
    history = tuple(mask_emails(h) for h in led.history()) if led is not None else ()
    return AuditReport(release_dir, release.manifest, tuple(results), history, detection_stats(release))
