"""Audit records: one ``Finding`` per problem, one ``CheckResult`` per check (frozen dataclasses)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS = "pass"
FAIL = "fail"
SKIPPED = "skipped"
STATUSES = (PASS, FAIL, SKIPPED)

# Check names, in report order (one module per family).
INTEGRITY = "integrity"
TAKEDOWNS = "takedowns"
METADATA = "metadata"
ANONYMIZATION = "anonymization"
RESIDUAL = "residual_faces"
MASKS = "masks"
DUPLICATES = "duplicates"
CHECKS = (INTEGRITY, TAKEDOWNS, METADATA, ANONYMIZATION, RESIDUAL, MASKS, DUPLICATES)


@dataclass(frozen=True)
class Finding:
    """One violation: which check, which file (relative to the release root), which image, what is wrong.

    ``file`` is "" when the problem is release-wide (e.g. counts); ``image_id`` is "" when no single image is
    concerned. ``box_xyxy`` locates the problem in the image (published pixels) when there is one;
    ``thumbnail_png`` is an already-anonymized PNG crop for the HTML report (never the raw pixels).
    """

    check: str
    file: str
    image_id: str
    message: str
    box_xyxy: tuple[float, float, float, float] | None = None
    score: float | None = None
    thumbnail_png: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "file": self.file, "image_id": self.image_id,
                               "message": self.message}
        if self.box_xyxy is not None:
            out["box_xyxy"] = [round(float(v), 2) for v in self.box_xyxy]
        if self.score is not None:
            out["score"] = round(float(self.score), 4)
        return out

    def line(self) -> str:
        return f"[{self.check}] {self.file or '-'} {self.image_id or '-'}: {self.message}"


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: ``pass`` (no findings), ``fail`` (>= 1 finding) or ``skipped`` (with the reason)."""

    check: str
    status: str
    findings: tuple[Finding, ...] = ()
    message: str = ""  # what was checked, or why it was skipped
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == PASS and self.findings:
            raise ValueError(f"{self.check}: status pass with {len(self.findings)} findings")
        if self.status == FAIL and not self.findings:
            raise ValueError(f"{self.check}: status fail without findings")

    @classmethod
    def from_findings(cls, check: str, findings: list[Finding], message: str,
                      stats: dict[str, Any] | None = None) -> "CheckResult":
        return cls(check=check, status=FAIL if findings else PASS, findings=tuple(findings), message=message,
                   stats=dict(stats or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "message": self.message, "stats": self.stats,
                "findings": [f.to_dict() for f in self.findings]}
