"""Anonymization: every published image carries its record (method, margin, regions, detector identities with
thresholds, boxes), the record is the same in every format and matches the manifest's models, and no anonymized
area is still identifiable.

An area is a finding only when what it holds can still identify someone (``judge``): a face whose facial detail
is above what the build's pixelation can leave, a plate whose number text recognition reads
(``veilset.audit.identifiable``). The areas judged are every recorded face/plate box and every spot inside the
regions where the production detectors, re-run at their production thresholds on the regions' content only,
fire without a recorded box there. That a detector still fires on a pixelated blob is shown as evidence in a
finding, never a finding on its own: on the eval photos CenterFace and the plate detectors re-detect pixelated
heads and plates at up to 95 % of their original score although nothing identifying is left. Faces and plates
outside the regions are the residual scan's job.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from veilset.audit.findings import ANONYMIZATION, CheckResult, Finding
from veilset.audit.imaging import anonymized_thumbnail, coverage, deterministic_sample, region_mask, region_windows
from veilset.audit.parallel import Recipe, distinct_pixels, map_images
from veilset.audit.release import ImageRecord, Release
from veilset.detectors.ops import iou_matrix
from veilset.detectors.registry import threads_per_worker, with_threads
from veilset.plugins import Arg, Args, Plugin, available

RECORD_KEYS = ("method", "margin", "regions", "detectors")
DETECTOR_KEYS = {"face": "face_detector", "license_plate": "plate_detector"}
INSIDE_COVERAGE = 0.5  # a detection counts as "inside" the anonymized regions when >= half its box is covered
# A re-detection inside a region is a finding when the detector still gives it at least this share of the score
# it gave the original pixels there (recorded); weaker hits are counted in the stats, not failed.
RETAINED_FRACTION = 0.5
MATCH_IOU = 0.3  # pairs a re-detection with the recorded original detection
CONTEXT_FILL = 128  # what replaces the pixels outside the regions for re-detection
BOX_SLACK_PX = 1.0
# A production hit where nothing was recorded is judged only when this share of its box lies in the anonymized
# pixels of regions of its own label (a face region is an ellipse in its box): a hit that reaches out of them
# measures the unanonymized surroundings, and a face hit on a pixelated plate measures a plate blob with a face
# measure (the plate's text is judged on its recorded box). On the eval build: 14 face hits on plate blobs and
# ellipse corners, none of them on a face.
SPOT_INSIDE = 0.9


@dataclass(frozen=True)
class ProductionDetector:
    """A detector rebuilt from the manifest (``config`` spec) for re-detection."""

    key: str  # "face_detector" or "plate_detector"
    spec: str
    detector: Any


def pin_threshold(spec: str, threshold: Any) -> str:
    """``spec`` with the recorded production threshold made explicit, so a later change of the library's
    default threshold cannot change what the audit re-runs."""
    from veilset.detectors.base import DetectorSpec

    parsed = DetectorSpec.parse(spec)
    if not isinstance(threshold, (int, float)) or any(k == "threshold" for k, _ in parsed.kwargs):
        return spec
    return str(DetectorSpec(parsed.name, parsed.kwargs + (("threshold", repr(float(threshold))),)))


def build_production_detectors(release: Release, threads: int = 0) -> tuple[list[ProductionDetector], list[str]]:
    """Rebuild the build's detectors from ``manifest.config``; returns (detectors, problems). ``threads``: inference
    threads of each (0: the runtime's default; not part of the spec they are named by)."""
    from veilset.detectors.registry import build_detector

    config = release.manifest.get("config") or {}
    models = release.manifest.get("models") or {}
    built, problems = [], []
    for key in ("face_detector", "plate_detector"):
        spec = config.get(key)
        if not spec or spec == "none":
            continue
        ident = models.get(key) or {}
        spec = pin_threshold(spec, ident.get("threshold"))
        try:
            det = build_detector(with_threads(spec, threads or None))
        except Exception as err:  # missing weights/package: the check cannot be done, say why
            problems.append(f"cannot rebuild the production {key} {spec!r}: {type(err).__name__}: {err}")
            continue
        if det is None:
            continue
        mine = det.identity()
        for field in ("name", "weights_sha256", "threshold"):
            if field in ident and ident.get(field) != mine.get(field):
                problems.append(f"production {key} {spec!r} rebuilt with {field}={mine.get(field)!r}, the "
                                f"manifest recorded {ident.get(field)!r}")
        built.append(ProductionDetector(key, spec, det))
    return built, problems


def _record_problems(rec: ImageRecord, manifest_models: dict[str, Any]) -> list[str]:
    anon = rec.anonymization
    if not isinstance(anon, dict):
        return ["no anonymization record"]
    problems = [f"anonymization record lacks {k!r}" for k in RECORD_KEYS if k not in anon]
    if rec.detections is None:
        return problems + ["no detections (boxes) recorded"]
    regions = anon.get("regions")
    if isinstance(regions, int) and not isinstance(regions, bool):
        if regions != len(rec.detections):
            problems.append(f"record says {regions} regions, {len(rec.detections)} boxes are recorded")
    elif isinstance(regions, list):
        problems += _region_problems(rec, regions)
    elif "regions" in anon:
        problems.append(f"regions {str(regions)[:60]!r} is neither a count nor a list of regions")
    detectors = anon.get("detectors") if isinstance(anon.get("detectors"), dict) else {}
    for key, ident in detectors.items():
        want = (manifest_models or {}).get(key)
        if ident is None or want is None:
            if (ident is None) != (want is None):
                problems.append(f"{key} is {ident!r} here but {'set' if want else 'absent'} in the manifest")
            continue
        for field in ("name", "weights_sha256", "threshold"):
            if field in want and ident.get(field) != want.get(field):
                problems.append(f"{key} {field} {ident.get(field)!r} differs from the manifest's "
                                f"{want.get(field)!r}")
    for n, d in enumerate(rec.detections):
        label = d.get("label")
        key = DETECTOR_KEYS.get(label)
        if key is None:
            problems.append(f"box {n} has unknown label {label!r}")
            continue
        ident = detectors.get(key)
        if not isinstance(ident, dict):
            problems.append(f"box {n} ({label}) but no {key} identity in the record")
            continue
        box = d.get("box_xyxy") or []
        if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
            problems.append(f"box {n} {box!r} is not a valid XYXY box")
        elif rec.width and rec.height and (min(box) < -BOX_SLACK_PX or box[2] > rec.width + BOX_SLACK_PX
                                           or box[3] > rec.height + BOX_SLACK_PX):
            problems.append(f"box {n} {[round(v, 1) for v in box]} lies outside the {rec.width}x{rec.height} image")
        threshold = ident.get("threshold")
        if isinstance(threshold, (int, float)) and float(d.get("score", -1)) < float(threshold) - 1e-9:
            problems.append(f"box {n} score {d.get('score')} is below the recorded threshold {threshold}")
    return problems


def _region_problems(rec: ImageRecord, regions: list[Any]) -> list[str]:
    """Each recorded box (clipped to the image) must lie inside an anonymized region of its label."""
    problems = []
    boxes = []
    for n, r in enumerate(regions):
        box = r.get("box_xyxy") if isinstance(r, dict) else None
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            problems.append(f"region {n} has no box_xyxy: {str(r)[:80]}")
            continue
        boxes.append((r.get("label"), [float(v) for v in box]))
    w, h = rec.width or 0, rec.height or 0
    for n, d in enumerate(rec.detections or ()):
        box = d.get("box_xyxy") or []
        if len(box) != 4:
            continue
        x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
        x1, y1 = (min(float(w), float(box[2])), min(float(h), float(box[3]))) if w and h else box[2:]
        if x1 <= x0 or y1 <= y0:
            continue  # entirely outside the image: nothing to anonymize
        if not any(label == d.get("label") and rb[0] - BOX_SLACK_PX <= x0 and rb[1] - BOX_SLACK_PX <= y0
                   and rb[2] + BOX_SLACK_PX >= x1 and rb[3] + BOX_SLACK_PX >= y1 for label, rb in boxes):
            problems.append(f"box {n} ({d.get('label')}) {[round(float(v), 1) for v in box]} is not inside any "
                            f"anonymized region")
    return problems


def region_boxes(rec: ImageRecord) -> list[list[float]]:
    """The anonymized areas of one image: the recorded regions when the record lists them, else the boxes."""
    regions = (rec.anonymization or {}).get("regions")
    if isinstance(regions, list):
        return [list(r["box_xyxy"]) for r in regions if isinstance(r, dict) and len(r.get("box_xyxy") or ()) == 4]
    return [list(d["box_xyxy"]) for d in rec.detections or () if len(d.get("box_xyxy") or ()) == 4]


def region_shapes(rec: ImageRecord) -> list[tuple[str, str, list[float]]]:
    """[(label, shape, box)] of one image's anonymized areas ("ellipse" inscribed in the box for faces, "box" for
    plates; records that only count their regions give the detection boxes)."""
    regions = (rec.anonymization or {}).get("regions")
    if isinstance(regions, list):
        return [(str(r.get("label")), str(r.get("shape") or "box"), list(r["box_xyxy"]))
                for r in regions if isinstance(r, dict) and len(r.get("box_xyxy") or ()) == 4]
    return [(str(d.get("label")), "box", list(d["box_xyxy"])) for d in rec.detections or ()
            if len(d.get("box_xyxy") or ()) == 4]


def anonymized_mask(shapes: Sequence[tuple[str, Sequence[float]]], width: int, height: int) -> np.ndarray:
    """The pixels the anonymizer replaced (the ellipse inscribed in the (clipped) box of a face region: the true
    ellipse of a face cut by the border is larger, so this errs on the inside)."""
    mask = np.zeros((height, width), dtype=bool)
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    for shape, (x0, y0, x1, y1) in shapes:
        if shape == "ellipse" and x1 > x0 and y1 > y0:
            r0, r1 = max(0, int(y0)), min(height, int(np.ceil(y1)))
            c0, c1 = max(0, int(x0)), min(width, int(np.ceil(x1)))
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            inside = ((xs[:, c0:c1] - cx) / rx) ** 2 + ((ys[r0:r1] - cy) / ry) ** 2 <= 1.0
            mask[r0:r1, c0:c1] |= inside
        else:
            mask |= region_mask([(x0, y0, x1, y1)], width, height)
    return mask


def image_areas(release: Release) -> dict[str, "ImageAreas"]:
    """image_id -> its anonymized areas as the first format that records them gives them (formats are compared
    elsewhere). One pass over the records, kept on ``release``: the anonymization and residual checks share it."""
    def read() -> dict[str, ImageAreas]:
        out: dict[str, ImageAreas] = {}
        for rec in release.iter_records():
            if rec.detections is not None and rec.image_id not in out:
                out[rec.image_id] = ImageAreas(tuple(region_boxes(rec)), tuple(rec.detections),
                                               tuple(region_shapes(rec)))
        return out

    return release.memo("image_areas", read)


def image_detections(release: Release) -> dict[str, list[dict[str, Any]]]:
    """image_id -> recorded detections (first format that records them)."""
    return {i: list(a.recorded) for i, a in image_areas(release).items()}


def image_regions(release: Release) -> dict[str, list[list[float]]]:
    """image_id -> anonymized boxes (first format that records them)."""
    return {i: list(a.regions) for i, a in image_areas(release).items()}


@dataclass(frozen=True)
class Redetection:
    """A production-detector hit inside the anonymized regions of a published image."""

    label: str
    box_xyxy: tuple[float, float, float, float]
    score: float
    coverage: float  # share of the box inside the regions
    original_score: float | None  # recorded score of the overlapping original detection (None: none overlaps)
    detector_key: str
    spec: str
    paired: str = "box"  # how original_score was found: "box" (IoU), "region" (the region holding it) or ""

    @property
    def retained(self) -> float:
        """Share of the original detection's score the detector still gives (1.0 when nothing overlaps)."""
        if not self.original_score:
            return 1.0
        return self.score / self.original_score

    @property
    def strong(self) -> bool:
        """Keeps at least ``RETAINED_FRACTION`` of the original score. Evidence shown in a finding, never a
        finding on its own: CenterFace fires on pixelated heads and the plate detectors on pixelated plates at
        up to 95 % of the original score although nothing identifying is left (see ``Judgement``)."""
        return self.retained >= RETAINED_FRACTION


def redetect(pixels: Any, regions_xyxy: Sequence[Sequence[float]], recorded: Sequence[dict[str, Any]],
             detectors: Sequence[ProductionDetector],
             shapes: Sequence[tuple[str, str, Sequence[float]]] = ()) -> list[Redetection]:
    """Production-detector hits (at the production threshold) inside the anonymized regions, each paired with
    the score the same detector gave the original pixels there (from the record).

    The detector sees only the regions' content: every pixel outside them is flat grey. With the context left
    in, CenterFace at 0.2 fires on the outline of a pixelated head (hair, shoulders, a skin-coloured blob) at
    up to 80 % of its original score although nothing identifying is left (eval release: 19 such hits); on the
    content alone it fires on the original faces (197 of 207 eval faces) but not on their anonymized versions.
    Only windows around the regions are searched (``imaging.region_windows``, ``detect_in_windows``): the grey
    rest of the image holds nothing to find, and searching it was most of the check's time. With ``shapes``
    ((label, shape, box) of the regions), each detector searches the regions of its own label only: a hit is
    judged only inside the anonymized pixels of its label (``judge_image``), so a face hit on a plate region was
    counted, never judged."""
    h, w = pixels.shape[:2]
    regions = region_mask(regions_xyxy, w, h)
    content_only = np.array(pixels, copy=True)
    content_only[~regions] = CONTEXT_FILL
    # the region each recorded detection was anonymized with (the record lists them in detection order)
    region_of = list(regions_xyxy) if len(regions_xyxy) == len(recorded) else [d.get("box_xyxy") for d in recorded]
    out = []
    for prod in detectors:
        label = getattr(prod.detector, "label", None)
        own = [box for lab, _, box in shapes if lab == label] if shapes else regions_xyxy
        for det in detect_in_windows(prod.detector, content_only, region_windows(own, w, h)):
            cov = coverage(det.box_xyxy, regions)
            if cov < INSIDE_COVERAGE:
                continue  # faces outside the regions are the residual scan's job (with a second detector)
            original, paired = _original_score(det, recorded, region_of, w, h)
            out.append(Redetection(det.label, tuple(det.box_xyxy), float(det.score), cov, original, prod.key,
                                   prod.spec, paired))
    return out


def detect_in_windows(detector: Any, pixels: np.ndarray, windows: Sequence[tuple[int, int, int, int]]) -> list[Any]:
    """``detector`` on each window of ``pixels`` as an image of its own, boxes in image pixels. A window is never
    larger than the image, so a detector that fits its input to a working size sees it at least at the scale it
    gives the whole image (CenterFace: long side to 1280 px, upscaled at most 2x; clp_det and the text lines: long
    side capped, never upscaled)."""
    out = []
    for x0, y0, x1, y1 in windows:
        for det in detector.detect(np.ascontiguousarray(pixels[y0:y1, x0:x1])):
            bx0, by0, bx1, by1 = det.box_xyxy
            out.append(dataclasses.replace(det, box_xyxy=(bx0 + x0, by0 + y0, bx1 + x0, by1 + y0)))
    return out


def _original_score(det: Any, recorded: Sequence[dict[str, Any]], region_of: Sequence[Any], width: int,
                    height: int) -> tuple[float | None, str]:
    """The score the build's detector gave the original pixels where ``det`` now fires: the recorded detection of
    the same label at IoU >= MATCH_IOU ("box"); else, for a fragment of an anonymized area (a small hit on the
    pixel blocks of a larger face), the detection whose region holds most of it ("region"; ties: the lower score,
    the stricter comparison); else None (nothing recorded there)."""
    same = [d for d in recorded if d.get("label") == det.label and len(d.get("box_xyxy") or ()) == 4]
    if same:
        ious = iou_matrix(np.array([det.box_xyxy], dtype=float), np.array([d["box_xyxy"] for d in same], dtype=float))[0]
        if ious.max() >= MATCH_IOU:
            return float(same[int(ious.argmax())].get("score") or 0.0) or None, "box"
    best: tuple[float, float] | None = None
    for d, region in zip(recorded, region_of):
        if d.get("label") != det.label or not region or len(region) != 4 or not d.get("score"):
            continue
        held = coverage(det.box_xyxy, region_mask([region], width, height))
        if held >= INSIDE_COVERAGE and (best is None or (held, -float(d["score"])) > (best[0], -best[1])):
            best = (held, float(d["score"]))
    return (best[1], "region") if best else (None, "")


# ---------------------------------------------------------------------------------------------- identifiability
@dataclass(frozen=True)
class Judgement:
    """Is one anonymized area still identifiable? Faces: facial detail (``identifiable.face_detail``) at or
    above ``FACE_MIN_DETAIL``; plates: text recognition reads a plate number (``identifiable.Reading.reads``).
    ``measure`` is the detail (faces; None: box too small to judge) or the number of confident letters/digits
    (plates); ``text`` what was read confidently (plates)."""

    label: str
    box_xyxy: tuple[float, float, float, float]
    origin: str  # "recorded" (a recorded detection's box) or "redetected" (a production hit nothing recorded)
    identifiable: bool
    measure: float | None
    text: str = ""
    redetection: Redetection | None = None


def judge(pixels: Any, label: str, box_xyxy: Sequence[float], reader: Any, origin: str = "recorded",
          redetection: Redetection | None = None) -> Judgement:
    from veilset.audit.identifiable import crop, face_detail, FACE_MIN_DETAIL

    box = tuple(float(v) for v in box_xyxy)
    if label == "face":
        detail = face_detail(pixels, box)
        return Judgement(label, box, origin, detail is not None and detail >= FACE_MIN_DETAIL,
                         None if detail is None else round(detail, 3), "", redetection)
    patch = crop(pixels, box)
    if patch.shape[0] < 2 or patch.shape[1] < 2:
        return Judgement(label, box, origin, False, 0.0, "", redetection)
    reading = reader.read(patch)
    chars = reading.confident()
    return Judgement(label, box, origin, reading.reads(), float(len(chars)), chars, redetection)


def judge_image(pixels: Any, recorded: Sequence[dict[str, Any]], hits: Sequence[Redetection], reader: Any,
                shapes: Sequence[tuple[str, str, Sequence[float]]] = ()) -> tuple[list[Judgement], int]:
    """Every recorded face/plate box of the image, and every production hit that matches no recorded box of its
    label and lies in the anonymized pixels of its label's regions (``SPOT_INSIDE`` of it; ``shapes``: (label,
    shape, box) of the regions): something there that was not recorded, judged on the published pixels. Returns (judgements, hits not judged because they reach out of
    the anonymized pixels)."""
    out = []
    boxes = [(d.get("label"), d.get("box_xyxy")) for d in recorded
             if d.get("label") in DETECTOR_KEYS and len(d.get("box_xyxy") or ()) == 4]
    used: set[int] = set()
    for label, box in boxes:
        match = None
        same = [(n, h) for n, h in enumerate(hits) if h.label == label]
        if same:
            ious = iou_matrix(np.array([box], dtype=float), np.array([h.box_xyxy for _, h in same], dtype=float))[0]
            if ious.max() >= MATCH_IOU:
                n, match = same[int(ious.argmax())]
                used.add(n)
        out.append(judge(pixels, label, box, reader, "recorded", match))
    h_, w_ = pixels.shape[:2]
    replaced = {label: anonymized_mask([(shape, box) for lab, shape, box in shapes if lab == label], w_, h_)
                for label in {h.label for h in hits}}
    outside = 0
    for n, h in enumerate(hits):
        if n in used or h.label not in DETECTOR_KEYS:
            continue
        same = [box for label, box in boxes if label == h.label]
        if same and iou_matrix(np.array([h.box_xyxy], dtype=float), np.array(same, dtype=float))[0].max() >= MATCH_IOU:
            continue  # the recorded box there is judged already
        if coverage(h.box_xyxy, replaced[h.label]) < SPOT_INSIDE:
            outside += 1
            continue
        out.append(judge(pixels, h.label, h.box_xyxy, reader, "redetected", h))
    return out, outside


def judgement_finding(image_id: str, file: str, pixels: Any, j: Judgement) -> Finding:
    from veilset.audit.identifiable import FACE_ANONYMIZED_MAX, FACE_MIN_DETAIL, PLATE_MIN_CHAR_PROB, PLATE_MIN_CHARS

    r = j.redetection
    if r is None:
        seen = "" if j.origin == "recorded" else " (found by re-detection)"
    elif r.original_score:
        seen = (f"; production {r.detector_key} {r.spec!r} still detects it at {r.score:.2f}, {r.retained:.0%} of "
                f"the original {r.original_score:.2f}")
    else:
        seen = f"; production {r.detector_key} {r.spec!r} detects it at {r.score:.2f}, no recorded detection there"
    where = "recorded box" if j.origin == "recorded" else "unrecorded spot"
    if j.label == "face":
        what = (f"face still identifiable inside an anonymized region ({where}): facial detail {j.measure:.1f} "
                f"grey levels >= {FACE_MIN_DETAIL} (the build's pixelation leaves at most "
                f"{FACE_ANONYMIZED_MAX} on the calibration photos)")
    else:
        what = (f"licence plate still readable inside an anonymized region ({where}): text recognition reads "
                f"{j.text!r} ({int(j.measure or 0)} letters/digits at >= {PLATE_MIN_CHAR_PROB:.0%}, "
                f"needed {PLATE_MIN_CHARS} with a digit)")
    return Finding(check=ANONYMIZATION, file=file, image_id=image_id, box_xyxy=j.box_xyxy,
                   score=j.measure if j.label == "face" else (r.score if r else None),
                   message=what + seen + ": the anonymization did not remove it",
                   thumbnail_png=anonymized_thumbnail(pixels, j.box_xyxy))


class AnonState:
    """What examining an image needs, built once per process: the production detectors and, loaded at the first
    plate area (a release without plate regions never loads it), the plate reader with ``threads`` inference threads
    (0: onnxruntime's default, every core: in each of N workers it oversubscribed the cores)."""

    def __init__(self, detectors: Sequence[ProductionDetector], reader: Any = None, threads: int = 0) -> None:
        self.detectors, self.reader, self.threads = tuple(detectors), reader, threads

    def plate_reader(self) -> Any:
        if self.reader is None:
            from veilset.audit.identifiable import PlateReader

            self.reader = PlateReader(threads=self.threads)
        return self.reader


def production_state(release_dir: str, threads: int) -> AnonState:
    """A worker's ``AnonState``: the build's detectors rebuilt from the manifest, and the plate reader, with
    ``threads`` inference threads (the main process reports the problems of rebuilding them)."""
    return AnonState(build_production_detectors(Release(release_dir), threads)[0], threads=threads)


@dataclass(frozen=True)
class ImageAreas:
    """An image's anonymized areas as recorded: region boxes, detections, (label, shape, box) of the regions."""

    regions: tuple[list[float], ...]
    recorded: tuple[dict[str, Any], ...]
    shapes: tuple[tuple[str, str, list[float]], ...]


@dataclass(frozen=True)
class CopyOutcome:
    """One published copy (one distinct set of pixels) examined: re-detection hits and the areas judged."""

    hits: int
    strong: int
    outside: int
    judgements: tuple[Judgement, ...]
    findings: tuple[Finding, ...]


def examine_image(state: AnonState, image_id: str, copies: Any, areas: ImageAreas) -> list[CopyOutcome]:
    """``parallel.map_images`` work: each distinct set of pixels among the image's copies re-detected and judged."""
    return [examine_copy(state, image_id, file, pixels, areas) for file, pixels in distinct_pixels(copies)]


def examine_copy(state: AnonState, image_id: str, file: str, pixels: Any, areas: ImageAreas) -> CopyOutcome:
    hits = redetect(pixels, areas.regions, areas.recorded, state.detectors, areas.shapes)
    labels = {d.get("label") for d in areas.recorded} | {h.label for h in hits}
    reader = state.plate_reader() if "license_plate" in labels else state.reader
    judgements, outside = judge_image(pixels, areas.recorded, hits, reader, areas.shapes)
    findings = tuple(judgement_finding(image_id, file, pixels, j) for j in judgements
                     if j.measure is not None and j.identifiable)
    return CopyOutcome(len(hits), sum(h.strong for h in hits), outside, tuple(judgements), findings)


class Tally:
    """The check's counters over every copy examined (``CopyOutcome``s in release order)."""

    def __init__(self) -> None:
        self.scanned = self.hits = self.outside = self.strong = self.too_small = self.chars_max = 0
        self.weak: list[float] = []
        self.judged = {"face": 0, "license_plate": 0}
        self.detail_max: float | None = None
        self.findings: list[Finding] = []

    def add(self, o: CopyOutcome) -> None:
        self.scanned, self.hits, self.strong = self.scanned + 1, self.hits + o.hits, self.strong + o.strong
        self.outside += o.outside
        self.findings.extend(o.findings)
        for j in o.judgements:
            if j.measure is None:
                self.too_small += 1
                continue
            self.judged[j.label] = self.judged.get(j.label, 0) + 1
            if j.identifiable:
                continue
            if j.label == "face":
                self.detail_max = j.measure if self.detail_max is None else max(self.detail_max, j.measure)
            else:
                self.chars_max = max(self.chars_max, int(j.measure))
            if j.redetection is not None:
                self.weak.append(round(j.redetection.retained, 3))


def _record_findings(release: Release, add: Any) -> int:
    """1. records: present, complete, consistent with the manifest and across formats; returns how many."""
    models = release.manifest.get("models") or {}
    first: dict[str, ImageRecord] = {}
    records = 0
    for rec in release.iter_records():
        if rec.file.startswith("index/"):
            continue
        records += 1
        for problem in _record_problems(rec, models):
            add(rec.file, rec.image_id, problem)
        ref = first.setdefault(rec.image_id, rec)
        if ref is not rec and (ref.detections != rec.detections or ref.anonymization != rec.anonymization):
            add(rec.file, rec.image_id, f"anonymization record/boxes differ from {ref.file}")
    for image_id in release.published_ids():
        if image_id not in first:
            add("", image_id, "published image has no anonymization record in any format")
    return records


def _areas(release: Release) -> Any:
    areas, none = image_areas(release), ImageAreas((), (), ())
    return lambda i: areas.get(i, none)


def check_anonymization(release: Release, sample: int | None = None,
                        production: Sequence[ProductionDetector] | None = None, reader: Any = None,
                        workers: int = 1) -> CheckResult:
    """The records (every format), then what the regions hold (2.: the production detectors re-run for unrecorded
    spots, each area judged), over ``workers`` processes; injected ``production``/``reader`` run here."""
    findings: list[Finding] = []

    def add(file: str, image_id: str, message: str) -> None:
        findings.append(Finding(check=ANONYMIZATION, file=file, image_id=image_id, message=message))

    records = _record_findings(release, add)
    detectors, problems = (production, []) if production is not None else build_production_detectors(release)
    for problem in problems:
        add("manifest.json", "", problem)
    chosen = deterministic_sample(release.published_ids(), sample)
    areas = _areas(release)
    with_regions = [i for i in chosen if areas(i).regions]  # nothing to judge in an image without any
    injected = production is not None or reader is not None
    tally = Tally()
    for _, outcomes in map_images(release, with_regions, examine_image, local=lambda: AnonState(detectors, reader),
                                  recipe=None if injected else Recipe(production_state,
                                                                      (release.root, threads_per_worker(workers))),
                                  extra=areas, workers=workers):
        for outcome in outcomes:
            tally.add(outcome)
    findings += tally.findings
    return _result(findings, records, len(chosen), detectors, tally)


def _result(findings: list[Finding], records: int, chosen: int, detectors: Sequence[ProductionDetector] | None,
            t: Tally) -> CheckResult:
    from veilset.audit.identifiable import CALIBRATION

    specs = ", ".join(f"{d.key}={d.spec}" for d in detectors or ()) or "none"
    return CheckResult.from_findings(
        ANONYMIZATION, findings,
        f"{records} records checked; {t.judged['face']} face and {t.judged['license_plate']} plate areas in "
        f"{t.scanned} distinct published copies of {chosen} images judged for identity (faces: facial detail, "
        f"plates: text recognition); production detectors ({specs}) re-run on the regions' content: {t.hits} hits, "
        f"{len(t.weak)} on areas that are no longer identifiable, {t.outside} reaching out of the anonymized "
        f"pixels (not failed)",
        {"records": records, "redetected_images": chosen, "redetected_copies": t.scanned, "detectors": specs,
         "redetections": t.hits, "strong_redetections": t.strong, "weak_redetections": len(t.weak),
         "spots_reaching_out": t.outside, "weak_retained_max": max(t.weak, default=None),
         "faces_judged": t.judged["face"], "plates_judged": t.judged["license_plate"],
         "faces_too_small": t.too_small, "face_detail_max_passed": t.detail_max,
         "plate_chars_max_passed": t.chars_max, "calibration": CALIBRATION})


SAMPLE_ARG = Arg("sample", "int", None, "re-detect on a deterministic sample of N published images (default: all)",
                 lo=1)
WORKERS_ARG = Arg("workers", "int", None, "worker processes for the per-image work of the anonymization and "
                  "residual checks (default: one per core)", lo=1)
PLUGIN = Plugin("audit check", ANONYMIZATION,
                lambda ctx: check_anonymization(ctx.release, ctx.sample, ctx.production, workers=ctx.workers),
                Args(SAMPLE_ARG, WORKERS_ARG),
                check=lambda: available("rebuilds the build's detectors from the manifest"),
                summary="every image carries its anonymization record; no anonymized region is still "
                        "identifiable (OCR reads no plate characters, no face detail above the anonymizer's)")
