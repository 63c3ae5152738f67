"""``veilset eval faces|plates``: measure a detector against COCO ground truth.

Matching (per image): detections sorted by score (ties: input order) are matched greedily to the unmatched
ground-truth box with the highest IoU >= ``--iou``. Ground-truth boxes with ``iscrowd: 1`` are ignored: they
are neither hits nor misses, and a detection whose best candidate is an ignored box is not a false positive.
Because the matching is greedy by score, the matching at any score threshold t is the prefix (score >= t) of
the full matching, so one pass gives the whole precision/recall-vs-threshold curve.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from veilset.detectors import ops
from veilset.detectors.base import FACE, LICENSE_PLATE, Detector

TASKS = {"faces": FACE, "plates": LICENSE_PLATE}
DEFAULT_IOU = 0.5
TP, FP, IGNORED = "tp", "fp", "ignored"


@dataclass(frozen=True)
class ImageMatch:
    """Result of matching one image: one outcome per detection (in the given order) and, per GT box, the
    index of the detection that hit it (-1: missed; crowd boxes are always -1 and never counted)."""

    det_outcomes: tuple[str, ...]
    gt_hit_by: tuple[int, ...]


def match_image(gt_boxes_xyxy: np.ndarray, gt_crowd: Sequence[bool], det_boxes_xyxy: np.ndarray,
                det_scores: Sequence[float], iou_threshold: float) -> ImageMatch:
    """Greedy by score matching for one image (see the module docstring)."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou threshold must be in (0, 1], got {iou_threshold}")
    gt = ops.as_boxes(gt_boxes_xyxy)
    det = ops.as_boxes(det_boxes_xyxy)
    crowd = np.asarray(gt_crowd, dtype=bool).reshape(-1)
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    if len(crowd) != len(gt) or len(scores) != len(det):
        raise ValueError("boxes and flags/scores differ in length")
    iou = ops.iou_matrix(det, gt)
    hit_by = np.full(len(gt), -1, dtype=np.int64)
    outcomes = [FP] * len(det)
    for d in np.argsort(-scores, kind="stable"):
        cand = np.where((hit_by < 0) & ~crowd, iou[d], -1.0)
        best = int(np.argmax(cand)) if len(gt) else -1
        if best >= 0 and cand[best] >= iou_threshold:
            hit_by[best] = d
            outcomes[d] = TP
        elif len(gt) and crowd.any() and iou[d][crowd].max() >= iou_threshold:
            outcomes[d] = IGNORED
    hit_by[crowd] = -1
    return ImageMatch(tuple(outcomes), tuple(int(v) for v in hit_by))


@dataclass
class Tally:
    """Accumulated results over images."""

    gt_total: int = 0
    images: int = 0
    det_scores: list[float] = field(default_factory=list)
    det_outcomes: list[str] = field(default_factory=list)
    # per group (folder of file_name, and "wider_<subset>"): [hits, boxes]
    groups: dict[str, list[int]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)

    def add(self, m: ImageMatch, scores: Sequence[float], gt_groups: Sequence[Sequence[str]],
            crowd: Sequence[bool], seconds: float) -> None:
        self.images += 1
        self.seconds.append(seconds)
        self.det_scores.extend(float(s) for s in scores)
        self.det_outcomes.extend(m.det_outcomes)
        for hit, groups, is_crowd in zip(m.gt_hit_by, gt_groups, crowd):
            if is_crowd:
                continue
            self.gt_total += 1
            for g in groups:
                entry = self.groups.setdefault(g, [0, 0])
                entry[0] += int(hit >= 0)
                entry[1] += 1

    def summary(self, threshold: float | None = None) -> dict[str, Any]:
        s = np.asarray(self.det_scores, dtype=np.float64)
        o = np.asarray(self.det_outcomes)
        sel = s >= threshold if threshold is not None else np.ones(len(s), bool)
        tp = int(((o == TP) & sel).sum())
        fp = int(((o == FP) & sel).sum())
        return {
            "recall": tp / self.gt_total if self.gt_total else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "tp": tp, "fp": fp, "detections": int(sel.sum()),
            "detections_per_image": float(sel.sum()) / self.images if self.images else None,
        }

    def curve(self) -> list[dict[str, float]]:
        """Precision/recall at every distinct score (as threshold), ascending threshold."""
        if not self.det_scores:
            return []
        s = np.asarray(self.det_scores, dtype=np.float64)
        o = np.asarray(self.det_outcomes)
        order = np.argsort(-s, kind="stable")
        s, o = s[order], o[order]
        tp = np.cumsum(o == TP)
        fp = np.cumsum(o == FP)
        n = np.arange(1, len(s) + 1)
        out = []
        last = np.r_[s[1:] != s[:-1], True]  # last index of each distinct score
        for i in np.nonzero(last)[0][::-1]:
            out.append({"threshold": float(s[i]), "recall": float(tp[i] / self.gt_total) if self.gt_total else 0.0,
                        "precision": float(tp[i] / max(tp[i] + fp[i], 1)),
                        "detections_per_image": float(n[i] / self.images)})
        return out


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=sorted(TASKS), help="faces or plates")
    parser.add_argument("--images", required=True, help="folder the COCO file_name paths are relative to")
    parser.add_argument("--annotations", required=True, help="COCO detection JSON (bbox XYWH, iscrowd, "
                        "optional wider_subsets)")
    parser.add_argument("--detector", default=None, help="NAME[:key=value,...]; default: the library default "
                        "for the task (centerface / plates)")
    parser.add_argument("--iou", type=float, default=None, help=f"IoU threshold for a hit (default {DEFAULT_IOU})")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--plot", default=None, metavar="PR.png", help="write a precision/recall-vs-threshold plot")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (by id)")


def _load_rgb(path: str, width: int | None, height: int | None) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        rgb = im.convert("RGB")
        if width and height and rgb.size != (width, height):
            turned = ImageOps.exif_transpose(im).convert("RGB")
            if turned.size == (width, height):
                rgb = turned
            else:
                raise ValueError(f"{path}: decoded size {rgb.size[0]}x{rgb.size[1]} != annotated {width}x{height}")
    return np.asarray(rgb, dtype=np.uint8)


def _group_of(file_name: str) -> str:
    parts = file_name.replace("\\", "/").split("/")
    return parts[0] if len(parts) > 1 else "all"


def evaluate(detector: Detector, images_dir: str, coco: dict[str, Any], iou: float = DEFAULT_IOU,
             limit: int | None = None) -> Tally:
    """Run ``detector`` on every image and match. When the file names a category after the detector's label
    ("face" / "license_plate"), only that category's boxes are ground truth; otherwise every box is."""
    named = {c.get("id"): c.get("name") for c in coco.get("categories", []) if isinstance(c, dict)}
    wanted = {cid for cid, name in named.items() if name == detector.label}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in coco.get("annotations", []):
        if wanted and ann.get("category_id") not in wanted:
            continue
        by_image.setdefault(ann["image_id"], []).append(ann)
    images = sorted(coco.get("images", []), key=lambda im: im["id"])
    if limit is not None:
        images = images[:limit]
    tally = Tally()
    warmed = False
    for im in images:
        path = os.path.join(images_dir, im["file_name"])
        if not os.path.isfile(path):
            raise ValueError(f"--images: {path} (file_name of image id {im['id']}) does not exist")
        rgb = _load_rgb(path, im.get("width"), im.get("height"))
        if not warmed:  # first call pays session start-up and allocator warm-up; not counted
            detector.detect(rgb)
            warmed = True
        t0 = time.perf_counter()
        dets = detector.detect(rgb)
        dt = time.perf_counter() - t0
        anns = by_image.get(im["id"], [])
        gt = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                       for a in anns], dtype=np.float64).reshape(-1, 4)
        crowd = [bool(a.get("iscrowd", 0)) for a in anns]
        group = _group_of(im["file_name"])
        groups = [[group] + ["wider_" + s for s in a.get("wider_subsets", [])] for a in anns]
        boxes = np.array([d.box_xyxy for d in dets], dtype=np.float64).reshape(-1, 4)
        scores = [d.score for d in dets]
        tally.add(match_image(gt, crowd, boxes, scores, iou), scores, groups, crowd, dt)
    return tally


def report(tally: Tally, task: str, spec: str, identity: dict[str, Any], iou: float) -> dict[str, Any]:
    summ = tally.summary()
    return {
        "task": task, "detector": spec, "iou": iou, "images": tally.images, "boxes": tally.gt_total,
        "recall": summ["recall"], "precision": summ["precision"], "tp": summ["tp"], "fp": summ["fp"],
        "detections_per_image": summ["detections_per_image"],
        "ms_per_image": 1000.0 * float(np.mean(tally.seconds)) if tally.seconds else None,
        "ms_per_image_median": 1000.0 * float(np.median(tally.seconds)) if tally.seconds else None,
        "recall_by_group": {g: {"recall": h / n, "hits": h, "boxes": n} for g, (h, n) in sorted(tally.groups.items())},
        "identity": identity,
    }


def plot_curve(tally: Tally, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = tally.curve()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if pts:
        t = [p["threshold"] for p in pts]
        ax.plot(t, [p["recall"] for p in pts], label="recall")
        ax.plot(t, [p["precision"] for p in pts], label="precision")
        ax2 = ax.twinx()
        ax2.plot(t, [p["detections_per_image"] for p in pts], color="gray", linestyle=":", label="boxes/img")
        ax2.set_ylabel("detections per image")
    ax.set_xlabel("score threshold")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    from veilset.detectors.base import DetectorSpec
    from veilset.detectors.registry import DEFAULT_FACE, DEFAULT_PLATE, build_detector

    iou = DEFAULT_IOU if args.iou is None else args.iou
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"--iou must be in (0, 1], got {args.iou}")
    if not os.path.isdir(args.images):
        raise ValueError(f"--images: not a folder: {args.images!r}")
    if not os.path.isfile(args.annotations):
        raise ValueError(f"--annotations: no such file: {args.annotations!r}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.plot is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
        raise ValueError(f"--plot: folder of {args.plot!r} does not exist")
    try:
        with open(args.annotations, encoding="utf-8") as fh:
            coco = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--annotations: cannot read {args.annotations!r}: {err}") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"--annotations: {args.annotations!r} is not a COCO detection file (no 'images' list)")
    spec_text = args.detector or (DEFAULT_FACE if args.task == "faces" else DEFAULT_PLATE)
    spec = DetectorSpec.parse(spec_text)
    detector = build_detector(spec)
    if detector is None:
        raise ValueError(f"--detector: {spec_text!r} builds no detector")
    if detector.label != TASKS[args.task]:
        raise ValueError(f"--detector: {spec.name!r} detects {detector.label}, not {TASKS[args.task]} "
                         f"(task {args.task!r})")
    tally = evaluate(detector, args.images, coco, iou, args.limit)
    out = report(tally, args.task, str(spec), detector.identity(), iou)
    if args.plot:
        plot_curve(tally, args.plot, f"{args.task}: {spec} (IoU {iou}, {tally.images} images)")
        out["plot"] = args.plot
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        _print_table(out)
    return 0


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def _print_table(out: dict[str, Any]) -> None:
    w = sys.stdout.write
    w(f"veilset eval {out['task']}  detector={out['detector']}  iou={out['iou']}\n")
    for key in ("images", "boxes", "recall", "precision", "tp", "fp", "detections_per_image", "ms_per_image",
                "ms_per_image_median"):
        w(f"  {key:<22} {_fmt(out[key])}\n")
    for g, r in out["recall_by_group"].items():
        w(f"  recall[{g}]{'':<{max(0, 14 - len(g))}} {r['recall']:.4f}  ({r['hits']}/{r['boxes']})\n")
    if out.get("plot"):
        w(f"  plot                   {out['plot']}\n")
