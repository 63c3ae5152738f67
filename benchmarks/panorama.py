"""Detection by resolution (detectors/tiling.py): recall on panoramas and tall images, and cost per megapixel.

    python benchmarks/panorama.py                       # ../shared/eval faces + plates, default detectors, 1 thread
    python benchmarks/panorama.py --plates-limit 60 --json
    python benchmarks/panorama.py --task plates --shapes 2:1 --skip-cost   # one canvas shape, recall only
    python benchmarks/panorama.py --skip-recall                            # cost only

Recall: the evaluation photos (faces: dlib + WIDER; plates: us/eu/br) are packed, each once, into canvases of
10:1 (8000 x 800), 1:6 (1333 x 8000) and 2:1 (8000 x 4000) on a grey background (a photo larger than the canvas
allows is scaled down to fit), boxes mapped. Each canvas goes through the build's resize (short side capped at
1500 px: the 2:1 canvas is published at 3000 x 1500) and the default detector, as in a build. References: the
photos themselves (each alone, as published: a photo smaller than the detector's resolution is searched at a finer
scale than any large image), and "same pixels in an ordinary photo": each photo's pixels cut out of the published
canvas (resampled twice, as the canvas was: into it, then by the build's resize) and pasted alone on a grey 3:2
photo of the detector's reference size (1500 px faces, 1280 px plates: detectors/tiling.py), i.e. searched exactly
as an ordinary photo of that size. Counted: faces whose short side is >= 24 px and
plates >= 16 px tall in the published pixels (the policy's promise), and all boxes; IoU 0.5 faces, 0.3 plates
(``veilset eval``'s matcher; WIDER's iscrowd boxes ignored). The same boxes are also counted **anonymized** when
>= 50 % (the audit's "inside") / >= 90 % of their pixels lie inside the regions a build draws for the detections
(ellipses for faces, boxes for plates, with the build's margin): whether they are published clear, where the IoU
match asks for a well placed box. "before" = the same detector with the policy off
(one pass on the whole image, long side brought to max_side; the plates union keeps one text line per image).
``--shift DX,DY`` moves the canvas content and each "same pixels" photo by that many published pixels (grey added at
the left/top): the detectors' output moves with the sub-pixel phase of the stride-4 grid, and a face whose best box
is near IoU 0.5 is counted or not with it (a few shifts show the spread of a single-phase figure).

Cost: CPU ms per megapixel of published pixels (one onnxruntime thread, process CPU time: robust on a shared
machine) for the default face and plate detectors, on the street photos that fill one 12000 x 1500 panorama: as
published (their own sizes, mostly 1280 x 720), brought to a 1500 px long side (the cheapest ordinary photos per
pixel), and as that panorama; the minimum of --repeat interleaved rounds.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Iterator

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from benchmarks.common import EVAL  # noqa: E402
from veilset.audit.anonymization import INSIDE_COVERAGE  # noqa: E402

SHAPES = (("10:1", 8000, 800), ("1:6", 1333, 8000), ("2:1", 8000, 4000))
MIN_SIDE = {"faces": 24.0, "plates": 16.0}  # face short side / plate height, published px
IOU = {"faces": 0.5, "plates": 0.3}
GAP = 24
GREY = 114
REFERENCE = {"faces": 1500, "plates": 1280}  # detectors.tiling.FACES / PLATES reference_side


@dataclasses.dataclass
class Photo:
    name: str
    rgb: np.ndarray
    boxes: np.ndarray  # (N, 4) xyxy
    crowd: np.ndarray  # (N,) bool


def load_set(task: str, limit: int | None) -> list[Photo]:
    from veilset.detectors.evaluate import _load_rgb

    root = EVAL / task
    coco = json.loads((root / "annotations.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for im in sorted(coco["images"], key=lambda i: i["id"])[:limit]:
        anns = by_image.get(im["id"], [])
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], np.float64).reshape(-1, 4)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
        rgb = _load_rgb(str(root / "images" / im["file_name"]), im.get("width"), im.get("height"))
        out.append(Photo(im["file_name"], rgb, boxes, crowd))
    return out


@dataclasses.dataclass
class Placement:
    photo: int
    scale: float  # photo -> canvas
    x: int
    y: int


def pack(photos: list[Photo], width: int, height: int) -> list[list[Placement]]:
    """Shelf packing, each photo once (scaled down only to fit the canvas): a list of canvases."""
    canvases: list[list[Placement]] = [[]]
    x = y = GAP
    shelf = 0
    for i, ph in enumerate(photos):
        h, w = ph.rgb.shape[:2]
        f = min(1.0, (width - 2 * GAP) / w, (height - 2 * GAP) / h)
        pw, ph_ = int(w * f), int(h * f)
        if x + pw > width - GAP:  # next shelf
            x, y, shelf = GAP, y + shelf + GAP, 0
        if y + ph_ > height - GAP:  # next canvas
            canvases.append([])
            x, y, shelf = GAP, GAP, 0
        canvases[-1].append(Placement(i, f, x, y))
        x += pw + GAP
        shelf = max(shelf, ph_)
    return [c for c in canvases if c]


def _resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if (w, h) == (rgb.shape[1], rgb.shape[0]):
        return rgb
    return np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA))


def render(photos: list[Photo], placements: list[Placement], width: int, height: int):
    """(published canvas, boxes, crowd, published scale) after the build's resize."""
    from veilset.pipeline.decode import resize_shortest_side

    canvas = np.full((height, width, 3), GREY, np.uint8)
    boxes, crowd = [], []
    for p in placements:
        ph = photos[p.photo]
        h, w = ph.rgb.shape[:2]
        pw, ph_ = int(w * p.scale), int(h * p.scale)
        canvas[p.y:p.y + ph_, p.x:p.x + pw] = _resize(ph.rgb, pw, ph_)
        boxes.append(ph.boxes * [pw / w, ph_ / h, pw / w, ph_ / h] + [p.x, p.y, p.x, p.y])
        crowd.append(ph.crowd)
    published = resize_shortest_side(canvas, 1500)
    r = published.shape[1] / width
    return published, np.concatenate(boxes) * ([r, published.shape[0] / height] * 2), np.concatenate(crowd), r


# a box counts as anonymized when this fraction of its pixels lies inside the build's regions: the audit's "inside"
# and a strict one
COVERED = (INSIDE_COVERAGE, 0.9)


def count(task: str, det: Any, image: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Per ground-truth box: 1 hit, 0 miss, -1 ignored (crowd) -- plus timing is the caller's."""
    return _found(task, det.detect(image), gt, crowd)


def _found(task: str, dets: list[Any], gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    from veilset.detectors.evaluate import match_image

    boxes = np.array([d.box_xyxy for d in dets], np.float64).reshape(-1, 4)
    m = match_image(gt, crowd, boxes, [d.score for d in dets], IOU[task])
    return np.where(crowd, -1, np.asarray(m.gt_hit_by) >= 0).astype(int)


def judge(task: str, det: Any, image: np.ndarray, gt: np.ndarray,
          crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per ground-truth box, from one ``detect``: ``count``'s answer, and the fraction of the box inside the regions a
    build draws for these detections (pipeline.anonymize.regions_for: ellipses for faces, boxes for plates, with the
    build's margin), measured as the audit measures it (audit.imaging.coverage); -1 for an ignored (crowd) box."""
    from veilset.audit.imaging import coverage
    from veilset.pipeline.anonymize import region_mask, regions_for

    dets = det.detect(image)
    h, w = image.shape[:2]
    mask = region_mask(regions_for(dets, w, h), h, w)
    covered = np.array([coverage(box, mask) for box in gt])
    return _found(task, dets, gt, crowd), np.where(crowd, -1.0, covered)


def big_enough(task: str, gt: np.ndarray) -> np.ndarray:
    w, h = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    return (np.minimum(w, h) if task == "faces" else h) >= MIN_SIDE[task]


@contextlib.contextmanager
def policy_off(det: Any) -> Iterator[None]:
    """The detector as before detectors/tiling.py: passes without tiling, the union's text quota per image."""
    from veilset.detectors import tiling

    parts = [det.clp, det.text] if hasattr(det, "clp") else [det]
    saved = [d.passes for d in parts]
    side = tiling.ORDINARY_SIDE
    for d in parts:
        d.passes = tuple(dataclasses.replace(p, tiling=None) for p in d.passes)
    tiling.ORDINARY_SIDE = 10 ** 9
    try:
        yield
    finally:
        for d, passes in zip(parts, saved):
            d.passes = passes
        tiling.ORDINARY_SIDE = side


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image content moved right/down by (dx, dy) px on grey, the size kept (the far edges are grey anyway)."""
    if not (dx or dy):
        return image
    out = np.full_like(image, GREY)
    out[dy:, dx:] = image[:image.shape[0] - dy, :image.shape[1] - dx]
    return out


def same_pixels(task: str, image: np.ndarray, ph: Photo, p: Placement, r: float,
                shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(a grey ordinary photo holding the placement's published pixels, at the same offset ``shift``; its boxes)."""
    h, w = ph.rgb.shape[:2]
    sx, sy = int(w * p.scale) / w, int(h * p.scale) / h  # photo -> canvas, as render() placed it
    x0, y0 = int(p.x * r), int(p.y * r)
    x1, y1 = int(math.ceil((p.x + int(w * p.scale)) * r)), int(math.ceil((p.y + int(h * p.scale)) * r))
    dx, dy = shift
    cut = image[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
    ref = REFERENCE[task]
    rw, rh = (ref, ref * 2 // 3) if w >= h else (ref * 2 // 3, ref)
    padded = np.full((max(rh, cut.shape[0] + dy), max(rw, cut.shape[1] + dx), 3), GREY, np.uint8)
    padded[dy:dy + cut.shape[0], dx:dx + cut.shape[1]] = cut
    boxes = (ph.boxes * [sx, sy, sx, sy] + [p.x, p.y, p.x, p.y]) * r - [x0 - dx, y0 - dy, x0 - dx, y0 - dy]
    return padded, boxes


def recall_rows(task: str, det: Any, photos: list[Photo], log: Any, shift: tuple[int, int] = (0, 0),
                shapes: tuple[str, ...] = tuple(s[0] for s in SHAPES)) -> list[dict[str, Any]]:
    from veilset.pipeline.decode import resize_shortest_side

    themselves: dict[int, np.ndarray] = {}  # photo -> hits on the photo as published alone (computed once)
    rows = []
    for shape, width, height in (s for s in SHAPES if s[0] in shapes):
        tallies: dict[str, list[np.ndarray]] = {"photos": [], "same_scale": [], "canvas": [], "before": []}
        anonymized: dict[str, list[np.ndarray]] = {"photos": [], "same_scale": [], "canvas": []}  # covered fractions
        sizes: list[np.ndarray] = []
        published_size = None
        for placements in pack(photos, width, height):
            image, gt, crowd, r = render(photos, placements, width, height)
            dx, dy = shift
            image, gt = shifted(image, dx, dy), gt + [dx, dy, dx, dy]
            published_size = f"{image.shape[1]}x{image.shape[0]}"
            sizes.append(big_enough(task, gt))
            found, covered = judge(task, det, image, gt, crowd)
            tallies["canvas"].append(found)
            anonymized["canvas"].append(covered)
            with policy_off(det):
                tallies["before"].append(count(task, det, image, gt, crowd))
            for p in placements:
                ph = photos[p.photo]
                h, w = ph.rgb.shape[:2]
                if p.photo not in themselves:
                    alone = resize_shortest_side(ph.rgb, 1500)
                    f = alone.shape[1] / w
                    themselves[p.photo] = judge(task, det, alone, ph.boxes * f, ph.crowd)
                tallies["photos"].append(themselves[p.photo][0])
                anonymized["photos"].append(themselves[p.photo][1])
                # the photo's own pixels in the published canvas, cut out and put alone on a grey ordinary photo
                # of the reference size (3:2, the long side the detector's working scale is defined by): the same
                # pixels, searched as an ordinary photo of that size would be
                padded, boxes = same_pixels(task, image, ph, p, r, shift)
                found, covered = judge(task, det, padded, boxes, ph.crowd)
                tallies["same_scale"].append(found)
                anonymized["same_scale"].append(covered)
            log(f"{task} {shape}: canvas {published_size} with {len(placements)} photos")
        big = np.concatenate(sizes)
        row: dict[str, Any] = {"task": task, "shape": shape, "published": published_size, "photos": len(photos)}
        for key, parts in tallies.items():
            hits = np.concatenate(parts)
            counted = hits >= 0
            row[key] = {"big": [int(hits[counted & big].sum()), int((counted & big).sum())],
                        "all": [int(hits[counted].sum()), int(counted.sum())]}
            if key in anonymized:
                fraction = np.concatenate(anonymized[key])[counted & big]
                row[key]["anonymized"] = {str(c): [int((fraction >= c).sum()), len(fraction)] for c in COVERED}
        rows.append(row)
    return rows


def cpu_seconds(det: Any, images: list[np.ndarray]) -> float:
    c0 = time.process_time()
    for im in images:
        det.detect(im)
    return time.process_time() - c0


def cost_rows(face: Any, plate: Any, plate_photos: list[Photo], repeat: int, log: Any) -> list[dict[str, Any]]:
    """The same street photos three ways: as published (their own sizes), brought to a 1500 px long side, and
    packed into one 12000 x 1500 panorama."""
    from veilset.pipeline.decode import resize_shortest_side

    [placements, *_] = pack(plate_photos, 12000, 1500)
    panorama = render(plate_photos, placements, 12000, 1500)[0]
    used = [plate_photos[p.photo].rgb for p in placements]
    as_published = [resize_shortest_side(im, 1500) for im in used]
    at_1500 = []
    for im in as_published:
        f = 1500 / max(im.shape[:2])
        at_1500.append(_resize(im, round(im.shape[1] * f), round(im.shape[0] * f)))
    for d in (face, plate):  # warm-up (session start, allocator)
        d.detect(at_1500[0])
        d.detect(panorama)
    sets = (("photos as published", as_published), ("same, at 1500 px long side", at_1500),
            ("same, as one 12000x1500 panorama", [panorama]))
    seconds: dict[tuple[str, str], list[float]] = {}
    for k in range(repeat):  # rounds interleaved, minimum kept: the least disturbed by other processes
        for name, images in sets:
            for key, det in (("faces", face), ("plates", plate)):
                seconds.setdefault((name, key), []).append(cpu_seconds(det, images))
        log(f"cost: round {k + 1} of {repeat}")
    out = []
    for name, images in sets:
        mp = sum(i.shape[0] * i.shape[1] for i in images) / 1e6
        row: dict[str, Any] = {"images": name, "count": len(images), "mp_per_image": mp / len(images)}
        for key in ("faces", "plates"):
            row[key] = 1000 * min(seconds[(name, key)]) / mp
        row["both"] = row["faces"] + row["plates"]
        out.append(row)
    return out


def _pct(pair: list[int]) -> str:
    return f"{pair[0]}/{pair[1]} = {pair[0] / pair[1]:.3f}" if pair[1] else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces-limit", type=int, default=None, help="first N face photos (default: all)")
    ap.add_argument("--plates-limit", type=int, default=None, help="first N plate photos (default: all)")
    ap.add_argument("--repeat", type=int, default=5, help="timing rounds (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads per detector (default 1)")
    ap.add_argument("--skip-cost", action="store_true", help="recall only")
    ap.add_argument("--skip-recall", action="store_true", help="cost only")
    ap.add_argument("--shapes", default=",".join(s[0] for s in SHAPES),
                    help="the canvases whose recall is measured, comma-separated (default: %(default)s)")
    ap.add_argument("--task", choices=("faces", "plates", "both"), default="both", help="recall on which set")
    ap.add_argument("--shift", default="0,0", help="DX,DY: canvas content and same-pixels photos moved by that "
                    "many px (the sub-pixel phase; default 0,0)")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = ap.parse_args(argv)
    shift = tuple(int(v) for v in args.shift.split(","))
    if len(shift) != 2 or min(shift) < 0 or max(shift) > 8:
        raise SystemExit("--shift DX,DY: two integers in 0..8")
    shapes = tuple(args.shapes.split(","))
    if not set(shapes) <= {s[0] for s in SHAPES}:
        raise SystemExit(f"--shapes: a comma-separated list of {', '.join(s[0] for s in SHAPES)}")
    if not (EVAL / "faces").is_dir():
        raise SystemExit(f"benchmarks/panorama.py needs the evaluation photos in {EVAL}")
    from veilset.detectors.registry import DEFAULT_FACE, DEFAULT_PLATE, build_detector

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    face = build_detector(f"{DEFAULT_FACE}:threads={args.threads}")
    plate = build_detector(f"{DEFAULT_PLATE}:threads={args.threads}")
    faces, plates = load_set("faces", args.faces_limit), load_set("plates", args.plates_limit)
    tasks = () if args.skip_recall else ("faces", "plates") if args.task == "both" else (args.task,)
    recall = [row for task, photos in (("faces", faces), ("plates", plates)) if task in tasks
              for row in recall_rows(task, face if task == "faces" else plate, photos, log, shift, shapes)]
    cost = [] if args.skip_cost else cost_rows(face, plate, plates, args.repeat, log)
    if args.json:
        print(json.dumps({"recall": recall, "cost": cost}))
        return 0
    print(f"recall of the boxes that measure >= {MIN_SIDE['faces']:.0f} px (faces, short side) / "
          f">= {MIN_SIDE['plates']:.0f} px (plates, height) in the published canvas")
    print(f"{'set':6} {'canvas':5} {'published':>9} | {'photos themselves':>17} | {'in ordinary photo':>17} | "
          f"{'canvas (policy)':>17} | {'canvas (before)':>17}")
    for r in recall:
        print(f"{r['task']:6} {r['shape']:5} {r['published']:>9} | {_pct(r['photos']['big']):>17} | "
              f"{_pct(r['same_scale']['big']):>17} | {_pct(r['canvas']['big']):>17} | {_pct(r['before']['big']):>17}")
    for c in COVERED:
        print(f"anonymized (>= {c:.0%} of the box inside the build's regions), the same boxes, themselves / ordinary "
              "photo / canvas: " + "; ".join(f"{r['task']} {r['shape']} " + " / ".join(
                  _pct(r[k]["anonymized"][str(c)]) for k in ("photos", "same_scale", "canvas")) for r in recall))
    print("all boxes, any size: " + "; ".join(
        f"{r['task']} {r['shape']} {r['photos']['all'][0]}/{r['same_scale']['all'][0]}/{r['canvas']['all'][0]}/"
        f"{r['before']['all'][0]} of {r['photos']['all'][1]}" for r in recall))
    if cost:
        print(f"\nCPU ms per published megapixel, {args.threads} onnxruntime thread(s), best of {args.repeat} rounds")
        print(f"{'images':34} {'n':>3} {'MP/img':>7} {'faces':>7} {'plates':>7} {'both':>7}")
        for r in cost:
            print(f"{r['images']:34} {r['count']:>3} {r['mp_per_image']:>7.2f} {r['faces']:>7.0f} {r['plates']:>7.0f} "
                  f"{r['both']:>7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
