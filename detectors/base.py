"""Detector interface, detection record, spec grammar and the helpers the backends share.

A detector is a plain Python object (no Beam): ``detect(image_rgb) -> list[Detection]`` on an
H x W x 3 uint8 RGB array, boxes in that array's pixel coordinates. ``pipeline`` wraps detectors in a
Beam ``ModelHandler`` (``detectors.handler``) so that each worker process loads one model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from veilset import plugins
from veilset.detectors import tiling
from veilset.detectors.tiling import FACES as FACE_TILING, Tiling
from veilset.plugins import Arg, Availability, MissingExtraError

FACE = "face"
LICENSE_PLATE = "license_plate"
LABELS = (FACE, LICENSE_PLATE)


@dataclass(frozen=True)
class Detection:
    """One detected region. ``box_xyxy`` is (x0, y0, x1, y1) in pixels, x1/y1 exclusive-ish floats."""

    label: str
    box_xyxy: tuple[float, float, float, float]
    score: float
    detector: str

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        if len(self.box_xyxy) != 4:
            raise ValueError(f"box_xyxy needs 4 numbers, got {self.box_xyxy!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "box_xyxy": [float(v) for v in self.box_xyxy],
                "score": float(self.score), "detector": self.detector}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Detection":
        return cls(label=d["label"], box_xyxy=tuple(float(v) for v in d["box_xyxy"]),
                   score=float(d["score"]), detector=d["detector"])


class Detector(Protocol):
    name: str  # registry name, e.g. "centerface"
    label: str  # FACE or LICENSE_PLATE

    def identity(self) -> dict[str, Any]:
        """What produced the boxes: name, version, weights file + sha256, thresholds, presets.

        Recorded in the manifest and per image; must be JSON-serialisable and deterministic.
        """

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        ...

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[Detection]]:
        ...


@dataclass(frozen=True)
class DetectorSpec:
    """A parsed ``NAME[:key=value,...]`` string, e.g. ``centerface:threshold=0.3``."""

    name: str
    kwargs: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, text: str) -> "DetectorSpec":
        if not text or not isinstance(text, str):
            raise ValueError(f"empty detector spec: {text!r}")
        name, _, rest = text.partition(":")
        pairs = []
        if rest:
            for item in rest.split(","):
                key, eq, value = item.partition("=")
                if not eq or not key:
                    raise ValueError(f"bad detector argument {item!r} in {text!r}; expected key=value")
                pairs.append((key.strip(), value.strip()))
        return cls(name=name.strip(), kwargs=tuple(pairs))

    def __str__(self) -> str:
        if not self.kwargs:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared by the backends: option parsing (values arrive as strings from "name:k=v"; the backends declare
# their options as ``veilset.plugins.Args``, whose conversions these are), weights identity, one onnxruntime
# session per process, and a common multi-pass detect() with the recall helpers.


def option_float(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    """``value`` (str or number) as a float in [lo, hi]; the bad value is in the message."""
    return plugins.parse_float(name, value, lo, hi)


def option_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    return plugins.parse_int(name, value, lo, hi)


def option_bool(name: str, value: Any) -> bool:
    return plugins.parse_bool(name, value)


def option_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    return plugins.parse_choice(name, value, choices)


def option_path(name: str, value: Any) -> str:
    return plugins.parse_path(name, value)


def device_option(value: Any, who: str = "") -> str:
    """A torch device name: cpu, cuda or cuda:N."""
    text = str(value).strip().lower()
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ValueError(f"{who + ': ' if who else ''}device must be cpu, cuda or cuda:N, got {value!r}")


# The options most backends share (same names, ranges and meaning everywhere).
def threshold_arg(default: float | None, help: str = "score threshold: lower finds more (recall first)") -> Arg:
    return Arg("threshold", "float", default, help, lo=0.0, hi=1.0)


MARGIN_ARG = Arg("margin", "float", 0.0, "enlarge each box by this fraction of its size on every side",
                 lo=0.0, hi=1.0)
NMS_ARG_HELP = "IoU above which overlapping boxes are merged (NMS)"
MIN_SIZE_ARG = Arg("min_size", "float", 0, "drop boxes whose short side is below this many pixels", lo=0.0,
                   hi=10000.0)
THREADS_ARG = Arg("threads", "int", 0, "inference threads (0: the runtime's default)", lo=0, hi=256)
MODEL_ARG_HELP = "weights file to use instead of the shipped one"


def weights_file_check(path_of: Callable[[], str], *modules: str, hint: str = "") -> Availability:
    """Available when ``modules`` are installed and ``path_of()`` finds the weights (its ImportError says why)."""
    needs = plugins.needs_modules(*modules, hint=hint)
    if not needs.ok:
        return needs
    try:
        path_of()
    except ImportError as err:
        return plugins.unavailable(str(err))
    return plugins.available()


_SHA_CACHE: dict[str, str] = {}


def file_sha256(path: str) -> str:
    import hashlib

    if path not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[path] = h.hexdigest()
    return _SHA_CACHE[path]


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write a local file so that ``path`` is either absent/old or complete, never partial (caches)."""
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def package_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def require_module(module: str, hint: str) -> None:
    """Raise ImportError with an install hint if ``module`` cannot be imported."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{module} is required ({err}); install it with: {hint}") from err


# CPU features that decide which kernels onnxruntime (MLAS) runs: int8 GEMM/conv via AVX2 vpmaddubsw (saturating
# 16-bit pair sums), AVX-512BW, AVX-512 VNNI / AVX-VNNI vpdpbusd (32-bit), AMX; on ARM dot-product / i8mm.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_identity() -> dict[str, Any]:
    """The machine and the CPU flags that choose onnxruntime's kernels (for the manifest: what actually ran)."""
    import platform

    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
                    break
    except OSError:  # not Linux: the architecture alone
        pass
    return {"machine": platform.machine(), "kernel_flags": [f for f in KERNEL_FLAGS if f in flags]}


_SESSIONS: dict[tuple, Any] = {}


def ort_session(key: tuple, model_bytes_or_path: Any, threads: int = 0) -> Any:
    """One onnxruntime ``InferenceSession`` per (key, threads) per process, CPUExecutionProvider only.

    ``threads`` 0 = onnxruntime's default; 1 = one core (intra_op_num_threads=1)."""
    require_module("onnxruntime", "pip install onnxruntime")
    import onnxruntime as ort

    full_key = (key, threads)
    if full_key not in _SESSIONS:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        source = model_bytes_or_path() if callable(model_bytes_or_path) else model_bytes_or_path
        _SESSIONS[full_key] = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    return _SESSIONS[full_key]


@dataclass(frozen=True)
class Pass:
    """One inference pass: the whole image (``grid`` 1) or ``grid`` x ``grid`` overlapping tiles, each resized
    so that its long side is at most ``max_side`` (None: native) after scaling by ``scale`` (and, with
    ``max_upscale`` > 1, enlarged towards ``max_side`` by at most that factor).

    ``tiling``: the resolution policy (``detectors.tiling``): an image that this resize would shrink below the
    scale an ordinary photo gets (a panorama, a tall scan, a large picture) is searched in tiles at that scale
    plus coarser levels instead; None: the whole image always, whatever its shape (the behaviour before)."""

    grid: int = 1
    max_side: int | None = None
    scale: float = 1.0
    max_upscale: float = 1.0  # > 1: smaller images are upscaled towards max_side by at most this factor
    tiling: Tiling | None = FACE_TILING

    def to_dict(self) -> dict[str, Any]:
        out = {"grid": self.grid, "max_side": self.max_side, "scale": self.scale, "max_upscale": self.max_upscale}
        if self.tiling is not None and self.max_side is not None:  # (native-size passes never tile)
            out["tiling"] = self.tiling.to_dict()
        return out


class MultiPassDetector:
    """Common ``detect`` for single-network backends: passes (whole image / tiles) -> merge (NMS or voting) -> score
    threshold -> box margin -> clip -> ``Detection``. Subclasses set ``name``, ``label``, ``passes``,
    ``threshold``, ``margin``, ``merge_iou``, ``min_size`` and implement ``_infer(rgb, mapping)`` returning
    (boxes in network pixels, scores) for an RGB array resized to ``mapping``."""

    name: str = ""
    label: str = FACE
    multiple: int = 32
    passes: tuple[Pass, ...] = (Pass(),)
    threshold: float = 0.5
    margin: float = 0.0
    merge_iou: float = 0.4
    merge: str = "nms"  # how overlapping boxes of all passes are de-duplicated: "nms" or "vote" (ops.merge)
    min_size: float = 0.0

    def _infer(self, image_rgb: np.ndarray, mapping: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _run_one(self, image_rgb: np.ndarray, p: Pass) -> tuple[np.ndarray, np.ndarray]:
        from veilset.detectors import ops

        h, w = image_rgb.shape[:2]
        mapping = ops.fit_size(w, h, p.max_side, self.multiple, p.scale, p.max_upscale)
        boxes, scores = self._infer(ops.resize_to(image_rgb, mapping), mapping)
        return mapping.to_source(boxes), scores

    def pass_scale(self, width: int, height: int, p: Pass) -> float:
        """The resize factor that ``_run_one`` applies to a ``width`` x ``height`` image in pass ``p``. A backend
        whose ``_run_one`` resizes differently (ignoring ``p.max_side``/``p.scale``) overrides it, or its passes
        carry ``tiling=None``."""
        from veilset.detectors import ops

        return ops.fit_scale(width, height, p.max_side, p.scale, p.max_upscale)

    def windows(self, width: int, height: int, p: Pass) -> list[tiling.Window] | None:
        """The resolution policy's windows for pass ``p`` on this image size; None: one ``_run_one`` as ever."""
        if p.tiling is None:
            return None
        working = tiling.working_scale(lambda w, h: self.pass_scale(w, h, p), p.tiling)
        return tiling.plan(width, height, self.pass_scale(width, height, p), working, p.max_side, p.tiling)

    def _run_pass(self, image_rgb: np.ndarray, p: Pass) -> tuple[np.ndarray, np.ndarray]:
        """Pass ``p`` on the image under the resolution policy: (boxes in source pixels, scores), not merged."""
        from veilset.detectors import ops

        h, w = image_rgb.shape[:2]
        plan = self.windows(w, h, p)
        if plan is None:
            return self._run_one(image_rgb, p)
        boxes, scores = [], []
        for win in plan:
            crop = image_rgb[win.y0:win.y1, win.x0:win.x1]
            b, s = self._run_one(crop, Pass(grid=1, max_side=None, scale=win.scale, tiling=None))
            b, s = ops.as_boxes(b), np.asarray(s, dtype=np.float64).reshape(-1)
            left, top, right, bottom = win.inner
            cut = np.zeros(len(b), dtype=bool)
            if left:
                cut |= b[:, 0] < win.cut
            if top:
                cut |= b[:, 1] < win.cut
            if right:
                cut |= b[:, 2] > win.width - win.cut
            if bottom:
                cut |= b[:, 3] > win.height - win.cut
            if win.min_box:
                cut |= np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) < win.min_box
            boxes.append(b[~cut] + np.array([win.x0, win.y0, win.x0, win.y0], dtype=np.float64))
            scores.append(s[~cut])
        return np.concatenate(boxes, axis=0), np.concatenate(scores, axis=0)

    def pass_input(self, width: int, height: int, p: Pass) -> Any:
        """What a whole-image pass ``p`` feeds the network on a ``width`` x ``height`` image: its tiles or its one
        resize. Two passes with equal inputs give equal boxes (a 640-px photo is upscaled 2x to 1280 by a 1280-px
        pass and by a 1600-px one alike), so ``boxes_scores`` runs one of them. A backend with its own ``_run_one``
        answers ``p`` itself (only an identical pass is skipped)."""
        from veilset.detectors import ops

        if type(self)._run_one is not MultiPassDetector._run_one:
            return p
        plan = self.windows(width, height, p)
        if plan is not None:
            return ("tiles", tuple(plan))
        return ("whole", ops.fit_size(width, height, p.max_side, self.multiple, p.scale, p.max_upscale))

    def boxes_scores(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Merged (boxes, scores) in source pixels, before threshold and margin (with box voting, only the groups led
        by a box at or above the threshold are formed: the others would be dropped by the threshold anyway). A
        whole-image pass whose input equals an earlier pass's (``pass_input``) is not run again: its boxes would be
        exact copies, which the merge drops (NMS keeps the first of equal boxes; a vote's weighted mean is the same)."""
        from veilset.detectors import ops

        check_image(image_rgb)
        h, w = image_rgb.shape[:2]
        results, inputs = [], set()
        for p in self.passes:
            if p.grid == 1:
                key = self.pass_input(w, h, p)
                if key in inputs:
                    continue
                inputs.add(key)
                results.append(self._run_pass(image_rgb, p))
            else:
                results.extend(ops.tiled_passes(image_rgb, lambda crop, p=p: self._run_pass(crop, p), p.grid))
        floor = self.threshold if self.merge == "vote" else 0.0
        return ops.merge_passes(results, self.merge_iou, self.merge, floor)

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        from veilset.detectors import ops

        boxes, scores = self.boxes_scores(image_rgb)
        keep = scores >= self.threshold
        boxes, scores = ops.drop_small(boxes[keep], scores[keep], self.min_size)
        h, w = image_rgb.shape[:2]
        boxes = ops.expand_boxes(boxes, self.margin, w, h)
        return to_detections(boxes, scores, self.label, self.name)

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(img) for img in images_rgb]


def check_image(image_rgb: Any) -> None:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3 \
            or image_rgb.dtype != np.uint8 or 0 in image_rgb.shape:
        desc = (f"{image_rgb.dtype} array of shape {image_rgb.shape}" if isinstance(image_rgb, np.ndarray)
                else type(image_rgb).__name__)
        raise ValueError(f"detectors take an H x W x 3 uint8 RGB array, got {desc}")


def to_detections(boxes: np.ndarray, scores: np.ndarray, label: str, detector: str) -> list[Detection]:
    order = np.argsort(-np.asarray(scores), kind="stable")
    return [Detection(label=label, box_xyxy=tuple(round(float(v), 2) for v in boxes[i]),
                      score=round(float(scores[i]), 5), detector=detector) for i in order]
