"""Our automatic mask generator for SAM: the same masks as ``segment_anything.SamAutomaticMaskGenerator``, faster.

Pure torch/numpy (no Beam). Same model calls, same prompt batches, same filters, same NMS calls on the same
tensors in the same order, so the output is the stock generator's (verified in
``tests/segmentation/test_amg.py``). What is different is only where the stock code does needless work:

* **predicted-IoU filter before upscaling.** The stock code upsamples all 3 x points_per_batch low-res logits
  to the full crop resolution (two bilinear resizes, H x W floats each) and only then drops the masks below
  ``pred_iou_thresh``; the filter only reads ``iou_preds``, so we drop first and upscale the survivors only.
* **Provably empty masks skipped.** Bilinear upsampling is a convex combination of low-res logits; if every
  low-res logit is below ``mask_threshold - stability_score_offset - 1e-3`` the upscaled mask has no pixel
  above the low cutoff, its stability score is 0/0 (NaN) and the stock filter drops it. We skip its upscaling
  (only when ``stability_score_thresh > 0``, where that filter runs; the 1e-3 margin covers float rounding).
* **Chunked upscaling, no full-image tensors per candidate.** The stock code pads every crop mask to the full
  image, encodes *every* candidate to RLE (a Python loop + full-image XOR) and only then runs NMS. We keep
  the low-res logits (256 x 256) of candidates, run the NMS on boxes, and rebuild + RLE-encode (pycocotools, C)
  only the masks that survive, inside their crop.
* **Small-region cleanup on a window.** ``min_mask_region_area`` is applied with OpenCV on the mask's
  bounding box plus a one-pixel ring instead of the full image (exact: the ring component's size is corrected
  by the pixels outside the window; a fall back to the full image covers the case where that outside
  component itself would be removed).
* **The image is not copied per prompt in the decoder** (``decode_shared_image``): the first two-way block's
  image-side projections are computed once per batch instead of once per prompt; bit-identical outputs.
* The image encoder runs once per crop (as stock): SAM resizes each crop to 1024 px, so the embedding of the
  full image cannot be reused for crops without changing the masks.

On GPU, ``autocast_dtype=torch.bfloat16`` runs the image encoder under autocast (faster, no longer identical
to the fp32 stock output) and ``compile=True`` wraps the image encoder in ``torch.compile``; both refused on
CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np
import torch
from torchvision.ops.boxes import batched_nms, box_area

from veilset.segmentation.rle import encode_rle_window


@dataclass(frozen=True)
class _CropCandidates:
    """Survivors of one crop, in stock order (batch, point, multimask index)."""

    low_res: torch.Tensor  # (N, h, w) float logits from the decoder
    iou_preds: torch.Tensor  # (N,)
    stability: torch.Tensor  # (N,)
    points: torch.Tensor  # (N, 2) float64, crop coordinates
    boxes: torch.Tensor  # (N, 4) int64 xyxy (inclusive max), crop coordinates


def _empty_like_crop(h: int, w: int, device: torch.device) -> _CropCandidates:
    return _CropCandidates(torch.zeros((0, h, w), device=device), torch.zeros(0, device=device),
                           torch.zeros(0, device=device), torch.zeros((0, 2), dtype=torch.float64),
                           torch.zeros((0, 4), dtype=torch.int64, device=device))


def _mask_box_xyxy(mask: torch.Tensor) -> torch.Tensor:
    """Same result as ``segment_anything.utils.amg.batched_mask_to_box`` for (N, H, W) bool masks."""
    n, h, w = mask.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64, device=mask.device)
    rows = mask.any(dim=2)  # (N, H)
    cols = mask.any(dim=1)  # (N, W)
    ar_h = torch.arange(h, device=mask.device)
    ar_w = torch.arange(w, device=mask.device)
    bottom = torch.where(rows, ar_h, -1).amax(dim=1)
    top = torch.where(rows, ar_h, h).amin(dim=1)
    right = torch.where(cols, ar_w, -1).amax(dim=1)
    left = torch.where(cols, ar_w, w).amin(dim=1)
    empty = ~rows.any(dim=1)
    out = torch.stack([left, top, right, bottom], dim=1)
    return torch.where(empty[:, None], torch.zeros_like(out), out)


def _window_stats(up: torch.Tensor, windows: list, mask_threshold: float, offset: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``calculate_stability_score`` and ``batched_mask_to_box(up > mask_threshold)``, looking only inside each
    mask's window (every pixel outside it is below all three cutoffs). Exact: integer counts, same float32
    division of int32 tensors as the library."""
    inter, union, boxes = [], [], []
    # numpy on the CPU tensor's memory (no copy): float32 compared with the thresholds as float32, like torch
    up_np = up.numpy()
    hi, lo, thr = (np.float32(mask_threshold + offset), np.float32(mask_threshold - offset),
                   np.float32(mask_threshold))
    for j, win in enumerate(windows):
        if win is None:
            inter.append(0)
            union.append(0)
            boxes.append((0, 0, 0, 0))
            continue
        y0, y1, x0, x1 = win
        sub = up_np[j, y0:y1, x0:x1]
        inter.append(int(np.count_nonzero(sub > hi)))
        union.append(int(np.count_nonzero(sub > lo)))
        binary = sub > thr
        rows = np.flatnonzero(binary.any(axis=1))
        if len(rows) == 0:
            boxes.append((0, 0, 0, 0))
            continue
        cols = np.flatnonzero(binary[rows[0]:rows[-1] + 1].any(axis=0))
        boxes.append((x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]), y0 + int(rows[-1])))
    stab = torch.tensor(inter, dtype=torch.int32) / torch.tensor(union, dtype=torch.int32)
    return stab, torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)


def _np_box_xyxy(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


def _remove_small_regions_window(window: np.ndarray, area_thresh: float, mode: str,
                                 outside_by_edge: dict[str, int]) -> tuple[np.ndarray, bool, bool]:
    """``segment_anything.utils.amg.remove_small_regions`` on a window of a larger mask.

    ``window`` covers the mask's box plus a one-pixel ring of zeros on every side that is not the image edge;
    ``outside_by_edge`` gives, for each ring side present ("top", "bottom", "left", "right"), the number of
    image pixels beyond it. Returns (mask, changed, exact); exact is False when the result would differ from
    the full-image computation (then the caller recomputes on the full image).
    """
    import cv2

    correct_holes = mode == "holes"
    working = (correct_holes ^ window).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(working, 8)
    sizes = stats[:, -1][1:].astype(np.int64).copy()
    if correct_holes and outside_by_edge:
        h, w = window.shape
        edge_pixel = {"top": (0, w // 2), "bottom": (h - 1, w // 2), "left": (h // 2, 0), "right": (h // 2, w - 1)}
        extra: dict[int, int] = {}
        for side, count in outside_by_edge.items():
            label = int(regions[edge_pixel[side]])
            assert label > 0, "ring pixels are background of the mask"
            extra[label] = extra.get(label, 0) + count
        for label, count in extra.items():
            sizes[label - 1] += count
            if sizes[label - 1] < area_thresh:  # stock would fill the outside as well: not windowable
                return window, False, False
    small_regions = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if len(small_regions) == 0:
        return window, False, True
    fill_labels = [0] + small_regions
    if not correct_holes:
        fill_labels = [i for i in range(n_labels) if i not in fill_labels]
        if len(fill_labels) == 0:
            if int((sizes == sizes.max()).sum()) > 1:
                # "keep the largest" with a tie: the library keeps the first label of OpenCV's numbering of
                # the *full* image, which is not guaranteed to be raster order (parallel labelling)
                return window, False, False
            fill_labels = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill_labels), True, True


def mask_records(masks: list[tuple[int, int, np.ndarray]], order: list[int], boxes_np: np.ndarray,
                 iou_preds: torch.Tensor, stability: torch.Tensor, points: torch.Tensor, crop_boxes: torch.Tensor,
                 image_hw: tuple[int, int]) -> list[dict[str, Any]]:
    """The stock generator's ``coco_rle`` dicts: mask ``j`` (a (y0, x0, window) in image pixels, box
    ``boxes_np[j]``) is candidate ``order[j]`` of the score tensors."""
    iou_np, stab_np = iou_preds.cpu().numpy(), stability.cpu().numpy()
    points_np, crop_np = points.cpu().numpy(), crop_boxes.cpu().numpy()
    out = []
    for j, i in enumerate(order):
        y0, x0, window = masks[j]
        box, cb = boxes_np[j], crop_np[i]
        out.append({
            "segmentation": encode_rle_window(window, y0, x0, *image_hw),
            "area": int(window.sum()),
            "bbox": [int(box[0]), int(box[1]), int(box[2] - box[0]), int(box[3] - box[1])],
            "predicted_iou": iou_np[i].item(),
            "point_coords": [points_np[i].tolist()],
            "stability_score": stab_np[i].item(),
            "crop_box": [int(cb[0]), int(cb[1]), int(cb[2] - cb[0]), int(cb[3] - cb[1])],
        })
    return out


class FastSamAutomaticMaskGenerator:
    """Drop-in for ``SamAutomaticMaskGenerator(..., output_mode="coco_rle")`` (same arguments, same output)."""

    def __init__(
        self,
        model: Any,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[list[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        upscale_chunk: int = 16,
        autocast_dtype: Optional[torch.dtype] = None,
        compile: bool = False,
    ) -> None:
        from segment_anything import SamPredictor
        from segment_anything.utils.amg import build_all_layer_point_grids

        if (points_per_side is None) == (point_grids is None):
            raise ValueError("exactly one of points_per_side or point_grids must be given")
        if points_per_side is not None:
            self.point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers,
                                                           crop_n_points_downscale_factor)
        else:
            self.point_grids = point_grids
        if points_per_batch < 1 or upscale_chunk < 1:
            raise ValueError(f"points_per_batch and upscale_chunk must be >= 1, got {points_per_batch}, "
                             f"{upscale_chunk}")
        device = next(model.parameters()).device
        if (autocast_dtype is not None or compile) and device.type != "cuda":
            raise ValueError(f"autocast/compile are GPU-only (model is on {device})")
        self.predictor = SamPredictor(model)
        self.model = model
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.upscale_chunk = upscale_chunk
        self.autocast_dtype = autocast_dtype
        if compile:
            model.image_encoder = torch.compile(model.image_encoder)

    # ------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        from segment_anything.utils.amg import generate_crop_boxes

        orig_h, orig_w = image.shape[:2]
        if orig_h == 0 or orig_w == 0:
            return []
        crop_boxes, layer_idxs = generate_crop_boxes((orig_h, orig_w), self.crop_n_layers,
                                                     self.crop_overlap_ratio)
        per_crop = []
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
            if crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]:
                # generate_crop_boxes gives empty windows for images of a few pixels (the stock generator
                # then fails in set_image); an empty window has no masks
                continue
            per_crop.append(self._process_crop(image, crop_box, layer_idx, (orig_h, orig_w)))

        # concatenate in stock order (crop by crop)
        crop_of = torch.cat([torch.full((len(c["iou_preds"]),), i, dtype=torch.int64)
                             for i, c in enumerate(per_crop)])
        index_in_crop = torch.cat([torch.arange(len(c["iou_preds"])) for c in per_crop])
        boxes = torch.cat([c["boxes"] for c in per_crop])
        iou_preds = torch.cat([c["iou_preds"] for c in per_crop])
        stability = torch.cat([c["stability"] for c in per_crop])
        points = torch.cat([c["points"] for c in per_crop])
        crop_box_t = torch.cat([torch.tensor([c["crop_box"] for _ in range(len(c["iou_preds"]))],
                                             dtype=torch.int64).reshape(-1, 4) for c in per_crop])
        if len(crop_boxes) > 1:
            scores = 1 / box_area(crop_box_t)
            scores = scores.to(boxes.device)
            keep = batched_nms(boxes.float(), scores, torch.zeros(len(boxes)), iou_threshold=self.crop_nms_thresh)
            crop_of, index_in_crop, boxes = crop_of[keep], index_in_crop[keep], boxes[keep]
            iou_preds, stability, points, crop_box_t = iou_preds[keep], stability[keep], points[keep], crop_box_t[keep]

        masks = self._rebuild_masks(per_crop, crop_of, index_in_crop, orig_h, orig_w)
        boxes_np = boxes.cpu().numpy()
        if self.min_mask_region_area > 0 and masks:
            order, masks, boxes_np = self._postprocess_small_regions(masks, boxes_np, orig_h, orig_w)
        else:
            order = list(range(len(masks)))
        return mask_records(masks, order, boxes_np, iou_preds, stability, points, crop_box_t, (orig_h, orig_w))

    # ------------------------------------------------------------------------------------------------------
    def _set_image(self, cropped: np.ndarray) -> None:
        if self.autocast_dtype is not None:
            with torch.autocast("cuda", dtype=self.autocast_dtype):
                self.predictor.set_image(cropped)
            self.predictor.features = self.predictor.features.float()
        else:
            self.predictor.set_image(cropped)

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer_idx: int,
                      orig_size: tuple[int, int]) -> dict[str, Any]:
        """One crop: embed it, decode the prompt grid batch by batch, keep the survivors, NMS within the crop."""
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        self._set_image(cropped)
        input_size, original_size = self.predictor.input_size, self.predictor.original_size
        points_for_image = self.point_grids[layer_idx] * np.array(cropped.shape[:2])[None, ::-1]
        dense_pe = self.model.prompt_encoder.get_dense_pe()
        kept: list[_CropCandidates] = []
        for start in range(0, len(points_for_image), self.points_per_batch):
            points = points_for_image[start:start + self.points_per_batch]
            low_res, iou_preds = self._decode_points(points, cropped.shape[:2], dense_pe)
            pts = torch.as_tensor(points.repeat(3, axis=0))
            idx = self._prefilter(low_res, iou_preds)
            for c in range(0, len(idx), self.upscale_chunk):
                found = self._survivors(low_res, iou_preds, pts, idx[c:c + self.upscale_chunk], crop_box, orig_size)
                if found is not None:
                    kept.append(found)
        self.predictor.reset_image()
        return self._crop_result(kept, crop_box, input_size, original_size)

    def _decode_points(self, points: np.ndarray, im_size: tuple[int, int], dense_pe: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res mask logits (3 per point, flattened: (3B, h, w)) and predicted IoUs (3B,) of one prompt batch
        on the image set in the predictor."""
        predictor, model = self.predictor, self.model
        in_points = torch.as_tensor(predictor.transform.apply_coords(points, im_size), device=predictor.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=predictor.device)
        sparse, dense = model.prompt_encoder(points=(in_points[:, None, :], in_labels[:, None]), boxes=None,
                                             masks=None)
        low_res, iou_preds = decode_shared_image(model.mask_decoder, predictor.features, dense_pe, sparse, dense)
        return low_res.flatten(0, 1), iou_preds.flatten(0, 1)

    def _prefilter(self, low_res: torch.Tensor, iou_preds: torch.Tensor) -> torch.Tensor:
        """Indices of the candidates that can still pass: predicted IoU above the threshold, and (when stability is
        filtered) some low-res logit above the lowest cutoff (else the upscaled mask is provably empty)."""
        keep = torch.ones_like(iou_preds, dtype=torch.bool)
        if self.pred_iou_thresh > 0.0:
            keep &= iou_preds > self.pred_iou_thresh
        if self.stability_score_thresh > 0.0:
            low_cut = self.model.mask_threshold - self.stability_score_offset - 1e-3
            keep &= low_res.flatten(1).amax(dim=1) >= low_cut
        return torch.nonzero(keep).flatten()

    def _survivors(self, low_res: torch.Tensor, iou_preds: torch.Tensor, pts: torch.Tensor, sel: torch.Tensor,
                   crop_box: list[int], orig_size: tuple[int, int]) -> Optional[_CropCandidates]:
        """The candidates ``sel`` upscaled: those stable enough and not at the crop's inner edge (None: none)."""
        from segment_anything.utils.amg import calculate_stability_score, is_box_near_crop_edge

        model, thr, offset = self.model, self.model.mask_threshold, self.stability_score_offset
        input_size, original_size = self.predictor.input_size, self.predictor.original_size
        up = model.postprocess_masks(low_res[sel][:, None], input_size, original_size)[:, 0]
        windows = self._windows(low_res[sel], input_size, original_size)
        if windows is None:  # GPU: vectorised over the whole crop, as the library does
            stab = calculate_stability_score(up, thr, offset)
        else:
            stab, boxes_all = _window_stats(up, windows, thr, offset)
        ok = stab >= self.stability_score_thresh if self.stability_score_thresh > 0.0 else \
            torch.ones_like(stab, dtype=torch.bool)
        if not bool(ok.any()):
            return None
        boxes = _mask_box_xyxy(up[ok] > thr) if windows is None else boxes_all[ok]
        near = is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_size[1], orig_size[0]])
        ok_idx = torch.nonzero(ok).flatten()[~near]
        keep_sel = sel[ok_idx.to(sel.device)]
        return _CropCandidates(low_res[keep_sel], iou_preds[keep_sel], stab[ok_idx], pts[keep_sel.cpu()],
                               boxes[~near])

    def _crop_result(self, kept: list[_CropCandidates], crop_box: list[int], input_size: tuple[int, int],
                     original_size: tuple[int, int]) -> dict[str, Any]:
        """The crop's survivors after box NMS, points and boxes moved to image coordinates."""
        if kept:
            c = _CropCandidates(*(torch.cat([getattr(k, f.name) for k in kept]) for f in fields(_CropCandidates)))
        else:
            c = _empty_like_crop(*self.model.prompt_encoder.mask_input_size, self.predictor.device)
        keep = batched_nms(c.boxes.float(), c.iou_preds, torch.zeros(len(c.boxes)), iou_threshold=self.box_nms_thresh)
        x0, y0 = crop_box[0], crop_box[1]
        offset_box = torch.tensor([[x0, y0, x0, y0]], device=c.boxes.device)
        offset_pt = torch.tensor([[x0, y0]])
        return {
            "low_res": c.low_res[keep], "iou_preds": c.iou_preds[keep], "stability": c.stability[keep],
            "points": c.points[keep.cpu()] + offset_pt, "boxes": c.boxes[keep] + offset_box,
            "crop_box": list(crop_box), "input_size": input_size, "original_size": original_size,
        }

    def _windows(self, low: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]):
        """Per mask, the (y0, y1, x0, x1) part of the upscaled crop outside which every upscaled logit is
        <= mask_threshold - stability_score_offset (so it is in no thresholded mask); None for a mask with
        no such pixel. Bilinear interpolation is local (each output pixel is a convex combination of the 2 x 2
        nearest inputs, in both resizes), so the window is the low-res support (logits >= that cut - 1e-3,
        the margin covering float rounding) mapped through both resizes with 2 pixels of slack per resize.
        Returns None (no windows) on GPU or with a negative offset, where the library's full-crop path runs."""
        import math

        if low.device.type != "cpu" or self.stability_score_offset < 0:
            return None
        cut = self.model.mask_threshold - self.stability_score_offset - 1e-3
        above = low >= cut
        rows = above.any(dim=2).numpy()
        cols = above.any(dim=1).numpy()
        n, lh, lw = low.shape
        img = self.model.image_encoder.img_size
        (ih, iw), (hc, wc) = input_size, original_size
        fy, fx = (img / lh) * (hc / ih), (img / lw) * (wc / iw)
        my, mx = math.ceil(2 * hc / ih) + 2, math.ceil(2 * wc / iw) + 2
        out: list[Optional[tuple[int, int, int, int]]] = []
        for r, c in zip(rows, cols):
            ry, cx = np.nonzero(r)[0], np.nonzero(c)[0]
            if len(ry) == 0:
                out.append(None)
                continue
            out.append((max(0, math.floor((ry[0] - 2) * fy) - my), min(hc, math.ceil((ry[-1] + 3) * fy) + my),
                        max(0, math.floor((cx[0] - 2) * fx) - mx), min(wc, math.ceil((cx[-1] + 3) * fx) + mx)))
        return out

    def _rebuild_masks(self, per_crop: list[dict[str, Any]], crop_of: torch.Tensor, index_in_crop: torch.Tensor,
                       orig_h: int, orig_w: int) -> list[tuple[int, int, np.ndarray]]:
        """Full-resolution binary masks of the kept candidates, each as (y0, x0, window) in image pixels."""
        out: list[Optional[tuple[int, int, np.ndarray]]] = [None] * len(crop_of)
        crop_of_l, index_l = crop_of.tolist(), index_in_crop.tolist()
        for ci, crop in enumerate(per_crop):
            positions = [k for k, c in enumerate(crop_of_l) if c == ci]
            x0, y0 = crop["crop_box"][0], crop["crop_box"][1]
            for c in range(0, len(positions), self.upscale_chunk):
                pos = positions[c:c + self.upscale_chunk]
                sel = torch.tensor([index_l[k] for k in pos], device=crop["low_res"].device)
                low = crop["low_res"][sel]
                up = self.model.postprocess_masks(low[:, None], crop["input_size"], crop["original_size"])[:, 0]
                windows = self._windows(low, crop["input_size"], crop["original_size"])
                for j, k in enumerate(pos):
                    wy0, wy1, wx0, wx1 = windows[j] if windows is not None and windows[j] is not None else \
                        (0, up.shape[1], 0, up.shape[2])
                    m = (up[j, wy0:wy1, wx0:wx1] > self.model.mask_threshold).cpu().numpy()
                    bx0, by0, bx1, by1 = _np_box_xyxy(m)
                    if not m.any():
                        out[k] = (y0, x0, np.zeros((0, 0), dtype=bool))
                        continue
                    out[k] = (y0 + wy0 + by0, x0 + wx0 + bx0, np.ascontiguousarray(m[by0:by1 + 1, bx0:bx1 + 1]))
        return out  # type: ignore[return-value]

    def _postprocess_small_regions(self, masks, boxes_np, orig_h, orig_w):
        """Stock ``postprocess_small_regions`` on windows: fill holes, drop islands, NMS by box, same order."""
        from segment_anything.utils.amg import remove_small_regions

        area = self.min_mask_region_area
        new_masks, scores, new_boxes = [], [], []
        for y0, x0, win in masks:
            h, w = win.shape
            # one-pixel ring where the image continues
            top, left = int(y0 > 0), int(x0 > 0)
            bottom, right = int(y0 + h < orig_h), int(x0 + w < orig_w)
            padded = np.pad(win, ((top, bottom), (left, right)))
            py0, px0 = y0 - top, x0 - left
            ph, pw = padded.shape
            outside = {}
            if top:
                outside["top"] = py0 * orig_w
            if bottom:
                outside["bottom"] = (orig_h - py0 - ph) * orig_w
            if left:
                outside["left"] = ph * px0
            if right:
                outside["right"] = ph * (orig_w - px0 - pw)
            m, ch1, exact = _remove_small_regions_window(padded, area, "holes", outside)
            if exact:
                m, ch2, exact = _remove_small_regions_window(m, area, "islands", {})
            if exact:
                bx0, by0, bx1, by1 = _np_box_xyxy(m)
                if bx1 >= bx0 and m.any():
                    new = (py0 + by0, px0 + bx0, np.ascontiguousarray(m[by0:by1 + 1, bx0:bx1 + 1]))
                else:
                    new = (py0, px0, m[:0, :0])
            else:  # rare: do exactly what the stock code does on the full image
                full = np.zeros((orig_h, orig_w), dtype=bool)
                full[y0:y0 + h, x0:x0 + w] = win
                full, ch1 = remove_small_regions(full, area, mode="holes")
                full, ch2 = remove_small_regions(full, area, mode="islands")
                bx0, by0, bx1, by1 = _np_box_xyxy(full)
                new = (by0, bx0, np.ascontiguousarray(full[by0:by1 + 1, bx0:bx1 + 1]))
            ny0, nx0, nwin = new
            if nwin.size and nwin.any():
                bx0, by0, bx1, by1 = _np_box_xyxy(nwin)
                new_boxes.append([nx0 + bx0, ny0 + by0, nx0 + bx1, ny0 + by1])
            else:
                new_boxes.append([0, 0, 0, 0])
            new_masks.append(new)
            scores.append(float(not (ch1 or ch2)))
        boxes_t = torch.as_tensor(np.array(new_boxes, dtype=np.int64).reshape(-1, 4))
        keep = batched_nms(boxes_t.float(), torch.as_tensor(scores), torch.zeros(len(boxes_t)),
                           iou_threshold=max(self.box_nms_thresh, self.crop_nms_thresh)).tolist()
        out_masks, out_boxes = [], boxes_np.copy()
        for i in keep:
            if scores[i] == 0.0:
                out_boxes[i] = new_boxes[i]
                out_masks.append(new_masks[i])
            else:
                out_masks.append(masks[i])
        return keep, out_masks, out_boxes[keep] if keep else out_boxes[:0]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    bb, n, cc = x.shape
    return x.reshape(bb, n, heads, cc // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    bb, nh, nt, cp = x.shape
    return x.transpose(1, 2).reshape(bb, nt, nh * cp)


def _attend(attn_mod: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Attention.forward`` on already projected q, k, v (k/v may have batch 1: broadcast)."""
    import math

    heads = attn_mod.num_heads
    q, k, v = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    if k.size(0) != q.size(0):
        k = k.expand(q.size(0), -1, -1, -1)
        v = v.expand(q.size(0), -1, -1, -1)
    c_per_head = q.shape[-1]
    attn = q @ k.permute(0, 1, 3, 2)
    attn = attn / math.sqrt(c_per_head)
    attn = torch.softmax(attn, dim=-1)
    return attn_mod.out_proj(_merge_heads(attn @ v))


def two_way_block(layer: Any, queries: torch.Tensor, keys: torch.Tensor, point_embedding: torch.Tensor,
                  key_pe: torch.Tensor, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayAttentionBlock.forward``. ``shared``: ``keys``/``key_pe`` have batch 1 (one image for every prompt);
    the image-side projections run once and are broadcast, and the keys come out with the prompts' batch."""
    b = queries.size(0)
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + point_embedding
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)

    mod = layer.cross_attn_token_to_image
    q = queries + point_embedding
    k = keys + key_pe
    attn_out = _attend(mod, mod.q_proj(q), mod.k_proj(k), mod.v_proj(keys)) if shared else mod(q=q, k=k, v=keys)
    queries = layer.norm2(queries + attn_out)
    queries = layer.norm3(queries + layer.mlp(queries))

    mod = layer.cross_attn_image_to_token
    q = queries + point_embedding
    k = keys + key_pe
    if shared:
        attn_out = _attend(mod, mod.q_proj(k).expand(b, -1, -1), mod.k_proj(q), mod.v_proj(queries))
        keys = keys.expand(b, -1, -1)
    else:
        attn_out = mod(q=k, k=q, v=queries)
    return queries, layer.norm4(keys + attn_out)


def mask_head(decoder: Any, hs: torch.Tensor, src: torch.Tensor, shape: tuple[int, int, int, int]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.predict_masks`` after the transformer, ``multimask_output=True``: (masks, iou_pred) of the
    three multimask outputs. ``shape``: (B, C, h, w) of the image embedding."""
    b, c, h, w = shape
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1:(1 + decoder.num_mask_tokens), :]
    src = src.transpose(1, 2).view(b, c, h, w)
    upscaled = decoder.output_upscaling(src)
    hyper_in = torch.stack([decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                            for i in range(decoder.num_mask_tokens)], dim=1)
    bb, cc, hh, ww = upscaled.shape
    masks = (hyper_in @ upscaled.view(bb, cc, hh * ww)).view(bb, -1, hh, ww)
    iou_pred = decoder.iou_prediction_head(iou_token_out)
    return masks[:, 1:, :, :], iou_pred[:, 1:]


def decode_shared_image(decoder: Any, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                        sparse: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.forward(..., multimask_output=True)`` for B point prompts on one image, without B copies.

    The stock decoder repeats the image embedding B times and runs the first two-way block's image-side
    projections (token-to-image keys/values, image-to-token queries) on B identical copies. Here those are
    computed once and broadcast (``two_way_block(shared=True)``); every other operation is the library's, in the
    library's order, so the outputs are the same numbers (checked bit for bit in tests/segmentation/test_amg.py).
    Only valid when the dense prompt embedding is the same for all prompts (point prompts without mask input, as
    in the AMG).
    """
    transformer = decoder.transformer
    b = sparse.size(0)
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
    src1 = image_embeddings + dense[:1]  # (1, C, h, w): the same for every prompt
    _, c, h, w = src1.shape
    keys = src1.flatten(2).permute(0, 2, 1)  # (1, N, C)
    pe1 = image_pe.flatten(2).permute(0, 2, 1)  # (1, N, C)
    queries = tokens
    for i, layer in enumerate(transformer.layers):
        queries, keys = two_way_block(layer, queries, keys, tokens, pe1, shared=i == 0)
    q = queries + tokens
    k = keys + pe1
    queries = transformer.norm_final_attn(queries + transformer.final_attn_token_to_image(q=q, k=k, v=keys))
    return mask_head(decoder, queries, keys, (b, c, h, w))
