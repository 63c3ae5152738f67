"""Residual-face scan: a second, differently built face detector looks for faces the build missed.

Default second detector: RetinaFace (ResNet-50, PyTorch) when its weights are present offline; otherwise
CenterFace in its tiled preset (whole image + 2x2 overlapping tiles upscaled 2x), which sees small faces
that the production single-pass run does not. Every face it finds outside the anonymized regions is a
finding, with a thumbnail whose face box is pixelated before it is stored.

Anonymized patches have edges and block patterns that a detector sometimes reads as a face right next to the
patch. A candidate near a region is therefore confirmed on a copy of the image whose anonymized regions are
filled flat grey: a real face outside the regions does not depend on those pixels; an artefact of the patch
disappears. Candidates away from every region are reported as they are. Unconfirmed
candidates are counted in the stats (``artefacts``), not reported as findings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from veilset.audit.anonymization import INSIDE_COVERAGE, SAMPLE_ARG, image_regions
from veilset.audit.findings import RESIDUAL, CheckResult, Finding
from veilset.audit.imaging import anonymized_thumbnail, coverage, deterministic_sample, region_mask
from veilset.audit.release import Release
from veilset.detectors.ops import iou_matrix
from veilset.plugins import Arg, Args, Availability, Plugin, available, unavailable

CONFIRM_IOU = 0.5  # a candidate is confirmed when the grey-filled image still gives a box this close to it
REGION_FILL = 128
NEAR = 0.5  # a candidate whose box, enlarged by half its size on every side, touches a region is "near" it

RETINAFACE_SPEC = "retinaface"
# Without RetinaFace weights: CenterFace in another configuration than the build's default (one 1280-px pass,
# threshold 0.1): multi-scale (the crowd preset adds 2x2 tiles at 2x) and a stricter threshold (fewer false alarms).
# fp32 + NMS are spelled out so that the audit's scan stays the same if the build's defaults change.
FALLBACK_SPEC = "centerface:preset=crowd,threshold=0.4,precision=fp32,merge=nms"


@dataclass(frozen=True)
class ResidualDetector:
    spec: str
    detector: Any
    why: str  # how it was chosen, for the report


def build_residual_detector(spec: str | None = None) -> ResidualDetector:
    """The scan's detector: ``spec`` when given; else RetinaFace if its weights are present, else CenterFace
    multi-scale. A missing model for an explicit spec is an error (no silent substitute)."""
    from veilset.detectors.registry import build_detector

    if spec:
        det = build_detector(spec)
        if det is None:
            raise ValueError(f"--face-detector: {spec!r} disables detection; the residual scan needs a detector")
        if getattr(det, "label", "face") != "face":
            raise ValueError(f"--face-detector: {spec!r} is a {det.label} detector, not a face detector")
        return ResidualDetector(spec, det, "chosen with --face-detector")
    try:
        return ResidualDetector(RETINAFACE_SPEC, build_detector(RETINAFACE_SPEC), "RetinaFace weights present")
    except (FileNotFoundError, ImportError) as err:
        why = f"RetinaFace unavailable ({type(err).__name__}: {str(err).splitlines()[0][:160]}); CenterFace multi-scale"
    return ResidualDetector(FALLBACK_SPEC, build_detector(FALLBACK_SPEC), why)


def _near_region(box_xyxy: Any, region_mask_: np.ndarray) -> bool:
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    mx, my = (x1 - x0) * NEAR, (y1 - y0) * NEAR
    return coverage((x0 - mx, y0 - my, x1 + mx, y1 + my), region_mask_) > 0.0


def confirm(detector: Any, pixels: np.ndarray, region_mask_: np.ndarray, candidates: list[Any]) -> list[bool]:
    """For each candidate, whether it is a face independent of the anonymized patches: candidates away from
    every region are confirmed as they are; those near a region must still be detected once the regions are
    flat grey."""
    near = [_near_region(c.box_xyxy, region_mask_) for c in candidates]
    if not any(near):
        return [True] * len(candidates)
    grey = pixels.copy()
    grey[region_mask_] = REGION_FILL
    again = [d for d in detector.detect(grey)]
    if not again:
        return [not n for n in near]
    ious = iou_matrix(np.array([c.box_xyxy for c in candidates], dtype=float),
                      np.array([d.box_xyxy for d in again], dtype=float))
    return [not n or bool(row.max() >= CONFIRM_IOU) for n, row in zip(near, ious)]


def check_residual(release: Release, residual: ResidualDetector, sample: int | None = None) -> CheckResult:
    findings: list[Finding] = []
    chosen = deterministic_sample(release.published_ids(), sample)
    regions = image_regions(release)
    per_image: dict[str, int] = {}
    scores: list[float] = []
    inside = artefacts = 0
    for image_id, copy, pixels in release.iter_decoded_copies(chosen):
        h, w = pixels.shape[:2]
        mask = region_mask(regions.get(image_id, []), w, h)
        found = 0
        candidates = []
        for det in residual.detector.detect(pixels):
            scores.append(float(det.score))
            cov = coverage(det.box_xyxy, mask)
            if cov >= INSIDE_COVERAGE:
                inside += 1
            else:
                candidates.append((det, cov))
        confirmed = confirm(residual.detector, pixels, mask, [d for d, _ in candidates])
        for (det, cov), ok in zip(candidates, confirmed):
            if not ok:
                artefacts += 1
                continue
            found += 1
            findings.append(Finding(
                check=RESIDUAL, file=copy.file, image_id=image_id, box_xyxy=tuple(det.box_xyxy),
                score=det.score, thumbnail_png=anonymized_thumbnail(pixels, det.box_xyxy),
                message=f"face (score {det.score:.2f}, {residual.spec}) outside the anonymized regions "
                        f"({cov:.0%} covered)"))
        per_image[image_id] = max(per_image.get(image_id, 0), found)
    what = "all" if sample is None or sample >= len(release.published_ids()) else f"a sample of {len(chosen)}"
    return CheckResult.from_findings(
        RESIDUAL, findings, f"{residual.spec} ({residual.why}) on {what} images: {len(findings)} faces outside the "
                           f"anonymized regions, {inside} inside, {artefacts} unconfirmed patch artefacts",
        {"detector": residual.spec, "why": residual.why, "images_scanned": len(chosen),
         "faces_inside_regions": inside, "artefacts": artefacts, "residual_faces": len(findings),
         "scores": [round(s, 4) for s in scores],
         "residual_per_image": per_image})


def _check() -> Availability:
    """Which second detector the scan would use here (without ``--face-detector``)."""
    from veilset.detectors.registry import DETECTORS

    retinaface = DETECTORS.get("retinaface").availability()
    if retinaface.ok:
        return available("second detector: RetinaFace")
    centerface = DETECTORS.get("centerface").availability()
    if centerface.ok:
        return available(f"second detector: CenterFace multi-scale; RetinaFace: {retinaface.reason}")
    return unavailable(f"no second face detector: RetinaFace: {retinaface.reason}; CenterFace: {centerface.reason}")


PLUGIN = Plugin("audit check", RESIDUAL,
                lambda ctx: check_residual(ctx.release, ctx.residual or build_residual_detector(), ctx.sample),
                Args(SAMPLE_ARG, Arg("face_detector", "text", None, "second face detector spec (default: "
                                     "retinaface when its weights are present, else " + FALLBACK_SPEC + ")")),
                check=_check, summary="a second face detector finds no face outside the anonymized regions")
