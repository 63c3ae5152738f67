"""Residual scan: faces and licence plates the build missed, outside every anonymized region.

Faces: a second, differently built face detector. A candidate is a finding only when a person would call it an
identifiable face: the detector is confident (the CenterFace fallback at ``RESIDUAL_FACE_THRESHOLD``), the box is
at least ``FACE_MIN_SIDE`` px and its facial detail reaches ``FACE_MIN_DETAIL`` (``veilset.audit.identifiable``;
the same measure the anonymization check uses). Weaker or smaller candidates are counted in the stats.

Plates: a stronger configuration than the build's default ``plates`` (``RESIDUAL_PLATE_SPECS``: clp_det at a
lower threshold and 1920 px, and every text line at 1280 px). A candidate is a finding only when text recognition
(band by band for a plate box, as one line for a text line: ``read_candidate``) reads a plate number in it
(``Reading.reads`` and ``Reading.looks_like_plate``): dashcam time stamps, signs and phone numbers that the text
detector also finds are counted, not reported.

Default second detector: RetinaFace (ResNet-50, PyTorch) when its weights are present offline; otherwise
CenterFace in its "audit" preset (the build's 1280-px pass plus the whole image at 1600 px), which sees small
faces that the production single-pass run does not. Every face it finds outside the anonymized regions is a
finding, with a thumbnail whose face box is pixelated before it is stored.

Anonymized patches have edges and block patterns that a detector sometimes reads as a face right next to the
patch. A candidate near a region is therefore confirmed on a copy of the image whose anonymized regions are
filled flat grey: a real face outside the regions does not depend on those pixels; an artefact of the patch
disappears. Candidates away from every region are reported as they are. Unconfirmed
candidates are counted in the stats (``artefacts``), not reported as findings.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from veilset.audit.anonymization import INSIDE_COVERAGE, SAMPLE_ARG, WORKERS_ARG, image_regions
from veilset.audit.identifiable import (FACE_MIN_DETAIL, PLATE_MAX_LETTER_RUN, RESIDUAL_FACE_THRESHOLD, PlateReader,
                                       crop, face_detail)
from veilset.audit.findings import RESIDUAL, CheckResult, Finding
from veilset.audit.imaging import anonymized_thumbnail, coverage, deterministic_sample, region_mask
from veilset.audit.parallel import Recipe, distinct_pixels, map_images
from veilset.audit.release import Release
from veilset.detectors.ops import iou_matrix
from veilset.detectors.plate_text import longest_letter_run
from veilset.detectors.registry import threads_per_worker, with_threads
from veilset.plugins import Arg, Args, Availability, Plugin, available, unavailable

CONFIRM_IOU = 0.5  # a candidate is confirmed when the grey-filled image still gives a box this close to it
REGION_FILL = 128
NEAR = 0.5  # a candidate whose box, enlarged by half its size on every side, touches a region is "near" it

RETINAFACE_SPEC = "retinaface"
# Without RetinaFace weights: CenterFace in another configuration than the build's default (one 1280-px pass,
# threshold 0.1): the "audit" preset is the build's pass plus the whole image again at 1600 px (centerface.AUDIT_SIDE),
# so every box the build's pass gives is among its candidates (or merged into a higher-scoring box of the larger
# pass) and smaller faces are seen 1.25x larger; and a stricter threshold (fewer false alarms). At the build's
# threshold 0.1 on the eval faces (veilset eval faces): recall 163 of 176 against the build's 160 (the crowd preset
# used before, whole image + 2x2 tiles at 2x, 5 inferences instead of 2: 163). fp32 + NMS are spelled out so that the
# audit's scan stays the same if the build's defaults change.
# Threshold 0.6: on default builds of the eval photos every candidate of the audit preset outside the regions scored
# <= 0.458 and none was a face (a car's reflection, the back of a head, a wheel); real faces >= 24 px score >= 0.6 in
# 61 of the 73 eval ground-truth faces (the rest are profiles and occluded faces that CenterFace scores low anyway).
# (CALIBRATION["residual_face"]; benchmarks/audit_findings.py --calibrate.)
FALLBACK_SPEC = f"centerface:preset=audit,threshold={RESIDUAL_FACE_THRESHOLD},precision=fp32,merge=nms"
# Candidates for residual plates, each read by text recognition (no merging: the crop that reads best counts).
RESIDUAL_PLATE_SPECS = ("clpdet:threshold=0.2,max_side=1920", "pptext:threshold=0.5,max_side=1280")
DEDUP_IOU = 0.3  # two readable candidates this close are one plate
# A text detector's candidate is one line of text: read as one line, not as a plate box's bands (READ_BANDS, for
# two-line plates), unless it is less than TWO_LINES_ASPECT times as wide as tall and might hold two lines. On the
# eval builds the residual scan read 385 text lines outside the regions: 31.3 CPU-s as bands, 7.5 as one line, and
# the same verdict on every one but a sign ('1/4 MILE': bands '74MLE', a word all the same; one line '4MILE').
LINE_DETECTORS = ("pptext",)
TWO_LINES_ASPECT = 2.0


@dataclass(frozen=True)
class ResidualDetector:
    spec: str
    detector: Any
    why: str  # how it was chosen, for the report
    plates: "ResidualPlates | None" = None  # None: check_residual builds the default (RESIDUAL_PLATE_SPECS)


class ResidualPlates:
    """Plate candidates from ``RESIDUAL_PLATE_SPECS`` and the reader that decides which ones are readable."""

    def __init__(self, specs: tuple[str, ...] = RESIDUAL_PLATE_SPECS, reader: Any = None, threads: int = 0) -> None:
        from veilset.detectors.registry import build_detector

        self.specs = specs
        self.detectors = [build_detector(spec) for spec in specs]
        self.reader = reader or PlateReader(threads=threads)

    def candidates(self, pixels: np.ndarray) -> list[Any]:
        return [d for det in self.detectors for d in det.detect(pixels)]


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


class ResidualState:
    """What scanning an image needs, built once per process: the second face detector and the plate candidates."""

    def __init__(self, residual: ResidualDetector) -> None:
        self.residual = residual
        self.plates = residual.plates if residual.plates is not None else ResidualPlates()


def residual_state(spec: str, threads: int) -> ResidualState:
    """A worker's ``ResidualState``: the detector the main process chose and the plate candidates, rebuilt from
    their specs, and the plate reader, with ``threads`` inference threads (findings name the specs as chosen)."""
    residual = build_residual_detector(with_threads(spec, threads))
    plates = ResidualPlates(tuple(with_threads(s, threads) for s in RESIDUAL_PLATE_SPECS), threads=threads)
    return ResidualState(dataclasses.replace(residual, spec=spec, plates=plates))


@dataclass(frozen=True)
class ScanOutcome:
    """One published copy (one distinct set of pixels) scanned: its findings, the face scores and the counters
    (``COUNTERS``)."""

    findings: tuple[Finding, ...]
    scores: tuple[float, ...]
    faces: int
    counts: dict[str, int]


COUNTERS = ("inside", "artefacts", "weak", "small", "plate_candidates", "plate_unread", "plate_words",
            "plate_findings")


def scan_image(state: ResidualState, image_id: str, copies: Any, regions: Any) -> list[ScanOutcome]:
    """``parallel.map_images`` work: each distinct set of pixels among the image's copies scanned."""
    return [scan_copy(state, image_id, file, pixels, regions) for file, pixels in distinct_pixels(copies)]


def scan_copy(state: ResidualState, image_id: str, file: str, pixels: np.ndarray, regions: Any) -> ScanOutcome:
    h, w = pixels.shape[:2]
    mask = region_mask(regions, w, h)
    counts = dict.fromkeys(COUNTERS, 0)
    faces, scores = _scan_faces(state.residual, image_id, file, pixels, mask, counts)
    plates = _scan_plates(state.plates, image_id, file, pixels, mask, counts)
    return ScanOutcome(tuple(faces + plates), tuple(scores), len(faces), counts)


def _scan_faces(residual: ResidualDetector, image_id: str, file: str, pixels: np.ndarray, mask: np.ndarray,
                counts: dict[str, int]) -> tuple[list[Finding], list[float]]:
    findings, scores, candidates = [], [], []
    for det in residual.detector.detect(pixels):
        scores.append(float(det.score))
        cov = coverage(det.box_xyxy, mask)
        if cov >= INSIDE_COVERAGE:
            counts["inside"] += 1
        else:
            candidates.append((det, cov))
    confirmed = confirm(residual.detector, pixels, mask, [d for d, _ in candidates])
    for (det, cov), ok in zip(candidates, confirmed):
        if not ok:
            counts["artefacts"] += 1
            continue
        detail = face_detail(pixels, det.box_xyxy)
        if detail is None or detail < FACE_MIN_DETAIL:
            counts["small" if detail is None else "weak"] += 1
            continue
        findings.append(Finding(
            check=RESIDUAL, file=file, image_id=image_id, box_xyxy=tuple(det.box_xyxy),
            score=det.score, thumbnail_png=anonymized_thumbnail(pixels, det.box_xyxy),
            message=f"face (score {det.score:.2f}, {residual.spec}; facial detail {detail:.1f} >= "
                    f"{FACE_MIN_DETAIL}) outside the anonymized regions ({cov:.0%} covered)"))
    return findings, scores


WORD_PAD = 0.1  # of the candidate's width, on its left and right


def read_candidate(reader: Any, pixels: np.ndarray, det: Any, pad: float = 0.0) -> Any:
    """The candidate's reading (its box widened by ``pad`` of its width left and right): a text line as one line,
    anything else (a plate detector's box, a squat text box) as a plate, band by band."""
    x0, y0, x1, y1 = (float(v) for v in det.box_xyxy)
    patch = crop(pixels, (x0 - pad * (x1 - x0), y0, x1 + pad * (x1 - x0), y1))
    if det.detector in LINE_DETECTORS and (x1 - x0) >= TWO_LINES_ASPECT * (y1 - y0):
        return reader.read_line(patch)
    return reader.read(patch)


def part_of_a_word(reader: Any, pixels: np.ndarray, det: Any) -> bool:
    """The candidate, read again a little wider (``WORD_PAD``), holds a run of more than
    ``PLATE_MAX_LETTER_RUN`` confident letters: a word on a sign that one unsure letter made look like a plate
    number ("1/4 MILE" read as '74MLE'). On the eval photos' annotated plates, 181 of the 182 that read like a plate
    pass this test (README, Audit)."""
    return longest_letter_run(read_candidate(reader, pixels, det, WORD_PAD).confident()) > PLATE_MAX_LETTER_RUN


def _scan_plates(plates: ResidualPlates, image_id: str, file: str, pixels: np.ndarray, mask: np.ndarray,
                 counts: dict[str, int]) -> list[Finding]:
    readable: list[tuple[Any, Any, float]] = []
    for det in plates.candidates(pixels):
        cov = coverage(det.box_xyxy, mask)
        if cov >= INSIDE_COVERAGE:
            continue  # an anonymized plate: the anonymization check judges it
        counts["plate_candidates"] += 1
        reading = read_candidate(plates.reader, pixels, det)
        if not (reading.reads() and reading.looks_like_plate()):
            counts["plate_unread"] += 1
            continue
        if part_of_a_word(plates.reader, pixels, det):
            counts["plate_words"] += 1
            continue
        readable.append((det, reading, cov))
    findings: list[Finding] = []
    kept: list[Any] = []
    for det, reading, cov in sorted(readable, key=lambda t: -len(t[1].confident())):
        boxes = np.array([k.box_xyxy for k in kept], dtype=float).reshape(-1, 4)
        if len(boxes) and iou_matrix(np.array([det.box_xyxy], dtype=float), boxes)[0].max() >= DEDUP_IOU:
            continue
        kept.append(det)
        counts["plate_findings"] += 1
        findings.append(Finding(
            check=RESIDUAL, file=file, image_id=image_id, box_xyxy=tuple(det.box_xyxy), score=det.score,
            thumbnail_png=anonymized_thumbnail(pixels, det.box_xyxy),
            message=f"readable licence plate outside the anonymized regions ({cov:.0%} covered): text "
                    f"recognition reads {reading.confident()!r} (candidate of {det.detector} at "
                    f"{det.score:.2f})"))
    return findings


def check_residual(release: Release, residual: ResidualDetector, sample: int | None = None, workers: int = 1,
                   rebuild: bool = False) -> CheckResult:
    """The scan over ``workers`` processes, each rebuilding ``residual`` from its spec when ``rebuild`` (it was
    built from its spec, not injected); else here."""
    chosen = deterministic_sample(release.published_ids(), sample)
    regions = image_regions(release)
    per_image: dict[str, int] = {}
    findings: list[Finding] = []
    scores: list[float] = []
    counts = dict.fromkeys(COUNTERS, 0)
    for image_id, outcomes in map_images(
            release, chosen, scan_image, local=lambda: ResidualState(residual),
            recipe=Recipe(residual_state, (residual.spec, threads_per_worker(workers))) if rebuild else None,
            extra=lambda i: regions.get(i, []), workers=workers):
        for o in outcomes:
            findings += o.findings
            scores += o.scores
            per_image[image_id] = max(per_image.get(image_id, 0), o.faces)
            counts = {k: counts[k] + o.counts[k] for k in COUNTERS}
    return _result(release, residual, sample, chosen, findings, scores, counts, per_image)


def _result(release: Release, residual: ResidualDetector, sample: int | None, chosen: list[str],
            findings: list[Finding], scores: list[float], c: dict[str, int], per_image: dict[str, int]) -> CheckResult:
    what = "all" if sample is None or sample >= len(release.published_ids()) else f"a sample of {len(chosen)}"
    faces = len(findings) - c["plate_findings"]
    specs = residual.plates.specs if residual.plates is not None else RESIDUAL_PLATE_SPECS
    return CheckResult.from_findings(
        RESIDUAL, findings,
        f"{residual.spec} ({residual.why}) on {what} images: {faces} identifiable faces outside the anonymized "
        f"regions, {c['inside']} inside, {c['artefacts']} unconfirmed patch artefacts, {c['weak'] + c['small']} too "
        f"small or without facial detail; {' + '.join(specs)}: {c['plate_findings']} readable plates outside the "
        f"regions, {c['plate_unread']} candidates that do not read as a plate, {c['plate_words']} that read as "
        f"part of a word",
        {"detector": residual.spec, "why": residual.why, "images_scanned": len(chosen),
         "faces_inside_regions": c["inside"], "artefacts": c["artefacts"], "residual_faces": faces,
         "faces_without_detail": c["weak"], "faces_too_small": c["small"],
         "scores": [round(s, 4) for s in scores],
         "residual_per_image": per_image})


def _run(ctx: Any) -> CheckResult:
    """The plugin: the audit's detector (built by the runner from its spec unless injected) or the default."""
    if ctx.residual is None:
        return check_residual(ctx.release, build_residual_detector(), ctx.sample, ctx.workers, rebuild=True)
    return check_residual(ctx.release, ctx.residual, ctx.sample, ctx.workers, ctx.rebuild_residual)


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
                _run, Args(SAMPLE_ARG, WORKERS_ARG,
                           Arg("face_detector", "text", None, "second face detector spec (default: retinaface when "
                               "its weights are present, else " + FALLBACK_SPEC + ")")),
                check=_check, summary="a second face detector finds no face outside the anonymized regions")
