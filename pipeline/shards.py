"""Shard writers and readers: Parquet, COCO (+ per-image JPEGs), SA-1B tars and the per-shard index.

One shard = the images whose ``ids.shard_of(image_id, num_shards)`` is that shard. ``write_shard`` writes every
requested format for one shard atomically and deterministically (rows sorted by image ID, no timestamps), so a
rerun gives byte-identical files and a takedown rewrites exactly one shard. ``read_shard`` reads a shard back into
``PublishedImage`` records (the takedown's apply reads, filters and rewrites).

No Beam here: the graph calls these from a thin DoFn.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from veilset.detectors.base import Detection
from veilset.pipeline import ids
from veilset.pipeline.manifest import atomic_write_bytes, delete, dumps_compact, exists, join, list_files, read_bytes
from veilset.pipeline.records import PublishedImage, ShardFile
from veilset.segmentation.base import MaskAnnotation

FORMATS = ("parquet", "coco", "sa1b")
DEFAULT_FORMATS = ("parquet", "coco")
INDEX = "index"
COCO_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}
ANNOTATIONS_PER_IMAGE_LIMIT = 10_000  # annotation ids are image_int_id * 10000 + k

_RLE = pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())])
PARQUET_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
        ("content_sha256", pa.string()),
        ("detections", pa.list_(pa.struct([("label", pa.string()), ("box_xyxy", pa.list_(pa.float64())),
                                           ("score", pa.float64()), ("detector", pa.string())]))),
        ("anonymization", pa.string()),
        ("masks", pa.list_(pa.struct([("id", pa.int64()), ("segmentation", _RLE), ("bbox", pa.list_(pa.float64())),
                                      ("area", pa.int64()), ("predicted_iou", pa.float64()),
                                      ("stability_score", pa.float64()),
                                      ("point_coords", pa.list_(pa.list_(pa.float64()))),
                                      ("crop_box", pa.list_(pa.float64()))]))),
    ]
)


def _hf_feature(t: pa.DataType) -> Any:
    """Hugging Face ``datasets`` feature JSON for an Arrow type (datasets >= 4 spelling)."""
    if pa.types.is_struct(t):
        return {t.field(i).name: _hf_feature(t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_list(t):
        return {"feature": _hf_feature(t.value_type), "_type": "List"}
    return {"dtype": {"binary": "binary", "string": "string"}.get(str(t), str(t)), "_type": "Value"}


def _schema_with_hf_metadata() -> pa.Schema:
    features = {f.name: _hf_feature(f.type) for f in PARQUET_SCHEMA}
    features["image"] = {"_type": "Image"}
    return PARQUET_SCHEMA.with_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})


_SCHEMA = _schema_with_hf_metadata()


# ---------------------------------------------------------------------------------------------------- encoders
def coco_image_int_id(image_id: str) -> int:
    return int(image_id[len(ids.ID_PREFIX) : len(ids.ID_PREFIX) + 12], 16)


def annotation_id(image_id: str, k: int) -> int:
    if k >= ANNOTATIONS_PER_IMAGE_LIMIT:
        raise ValueError(f"{image_id}: more than {ANNOTATIONS_PER_IMAGE_LIMIT} masks")
    return coco_image_int_id(image_id) * ANNOTATIONS_PER_IMAGE_LIMIT + k


def _sorted(images: Iterable[PublishedImage]) -> list[PublishedImage]:
    out = sorted(images, key=lambda im: im.image_id)
    for a, b in zip(out, out[1:]):
        if a.image_id == b.image_id:
            raise ValueError(f"image {a.image_id} twice in one shard")
    return out


def _jpeg_name(image_id: str) -> str:
    return f"{image_id}.jpg"


def parquet_bytes(images: Sequence[PublishedImage]) -> bytes:
    rows = []
    for im in images:
        rows.append({
            "image_id": im.image_id,
            "image": {"bytes": im.jpeg, "path": _jpeg_name(im.image_id)},
            "width": im.width,
            "height": im.height,
            "sha256": im.sha256,
            "content_sha256": im.content_sha256,
            "detections": [d.to_dict() for d in im.detections],
            "anonymization": json.dumps(im.anonymization, sort_keys=True),
            "masks": [m.to_sa1b(annotation_id(im.image_id, k)) for k, m in enumerate(im.masks)],
        })
    table = pa.Table.from_pylist(rows, schema=_SCHEMA)
    sink = io.BytesIO()
    # Row groups of ~64 images keep readers' memory bounded; no statistics on the image bytes.
    pq.write_table(table, sink, row_group_size=64, compression="zstd", write_statistics=["image_id", "sha256"])
    return sink.getvalue()


def coco_dict(images: Sequence[PublishedImage], shard: int) -> dict[str, Any]:
    coco_images, annotations = [], []
    for im in images:
        int_id = coco_image_int_id(im.image_id)
        coco_images.append({
            "id": int_id, "image_id": im.image_id, "file_name": ids.image_path(im.image_id, shard),
            "width": im.width, "height": im.height, "sha256": im.sha256,
            "detections": [d.to_dict() for d in im.detections], "anonymization": im.anonymization,
        })
        for k, m in enumerate(im.masks):
            ann = m.to_sa1b(annotation_id(im.image_id, k))
            ann.update({"image_id": int_id, "category_id": COCO_CATEGORY["id"], "iscrowd": 0})
            annotations.append(ann)
    return {
        "info": {"description": "veilset release shard", "shard": shard, "version": "1.0"},
        "licenses": [],
        "categories": [COCO_CATEGORY],
        "images": coco_images,
        "annotations": annotations,
    }


def sa1b_json(im: PublishedImage) -> dict[str, Any]:
    return {
        "image": {"image_id": im.image_id, "width": im.width, "height": im.height, "file_name": _jpeg_name(im.image_id)},
        "annotations": [m.to_sa1b(annotation_id(im.image_id, k)) for k, m in enumerate(im.masks)],
        "detections": [d.to_dict() for d in im.detections],
        "anonymization": im.anonymization,
        "sha256": im.sha256,
        "content_sha256": im.content_sha256,
    }


def tar_bytes(images: Sequence[PublishedImage]) -> bytes:
    """SA-1B style tar (``sa_<id>.jpg`` + ``sa_<id>.json`` per image), deterministic headers for webdataset."""
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for im in images:
            for name, data in ((_jpeg_name(im.image_id), im.jpeg),
                               (f"{im.image_id}.json", dumps_compact(sa1b_json(im)))):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return sink.getvalue()


def index_lines(images: Sequence[PublishedImage], shard: int, formats: Sequence[str]) -> bytes:
    out = []
    for im in images:
        out.append(json.dumps({
            "image_id": im.image_id, "shard": shard, "sha256": im.sha256, "content_sha256": im.content_sha256,
            "width": im.width, "height": im.height,
            "file_name": ids.image_path(im.image_id, shard) if "coco" in formats else None,
            "num_faces": sum(d.label == "face" for d in im.detections),
            "num_plates": sum(d.label == "license_plate" for d in im.detections),
            "num_masks": len(im.masks),
        }, sort_keys=True))
    return ("\n".join(out) + "\n").encode() if out else b""


# ---------------------------------------------------------------------------------------------------- write
def _sha(data: bytes) -> str:
    return ids.sha256_hex(data)


def validate_formats(formats: Sequence[str]) -> tuple[str, ...]:
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"--formats: unknown or empty {list(formats)!r}; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in formats)  # canonical order, no duplicates


def _image_dir(release_dir: str, shard: int) -> str:
    return join(release_dir, f"images/{shard:05d}")


def _sync_image_files(release_dir: str, shard: int, images: Sequence[PublishedImage]) -> None:
    """Make ``images/SSSSS/`` hold exactly these images' JPEGs (stale ones, e.g. taken down, are deleted)."""
    wanted = {_jpeg_name(im.image_id): im for im in images}
    folder = _image_dir(release_dir, shard)
    for name, im in wanted.items():
        path = join(release_dir, ids.image_path(im.image_id, shard))
        if not (exists(path) and _sha(read_bytes(path)) == im.sha256):
            atomic_write_bytes(path, im.jpeg)
    for name in list_files(folder):
        if name not in wanted:
            delete(join(folder, name))
    if "://" not in folder and os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)


def shard_payloads(shard: int, num_shards: int, formats: Sequence[str],
                   images: Sequence[PublishedImage]) -> dict[str, bytes]:
    """The bytes of every shard file (relative path -> content), without writing anything."""
    images = _sorted(images)
    out = {ids.shard_path(INDEX, shard, num_shards): index_lines(images, shard, formats)}
    if "parquet" in formats:
        out[ids.shard_path("parquet", shard, num_shards)] = parquet_bytes(images)
    if "coco" in formats:
        out[ids.shard_path("coco", shard, num_shards)] = dumps_compact(coco_dict(images, shard))
    if "sa1b" in formats:
        out[ids.shard_path("sa1b", shard, num_shards)] = tar_bytes(images)
    return out


def write_shard(release_dir: str, shard: int, num_shards: int, formats: Sequence[str],
                images: Sequence[PublishedImage]) -> list[ShardFile]:
    """Write all files of one shard atomically; returns them (index first). No images -> nothing written."""
    formats = validate_formats(formats)
    if not images:
        return []
    images = _sorted(images)
    written = []
    for rel, data in shard_payloads(shard, num_shards, formats, images).items():
        atomic_write_bytes(join(release_dir, rel), data)
        fmt = next(f for f in (INDEX, *FORMATS) if rel.startswith(ids.FORMAT_DIRS[f] + "/"))
        written.append(ShardFile(format=fmt, shard=shard, path=rel, sha256=_sha(data), images=len(images)))
    if "coco" in formats:
        _sync_image_files(release_dir, shard, images)
    return written


def delete_shard(release_dir: str, shard: int, num_shards: int) -> None:
    """Remove every file of a shard (all formats, per-image JPEGs): used when a takedown empties a shard."""
    for fmt in (INDEX, *FORMATS):
        delete(join(release_dir, ids.shard_path(fmt, shard, num_shards)))
    _sync_image_files(release_dir, shard, [])


# ---------------------------------------------------------------------------------------------------- read
def _published_from_parquet_row(row: dict[str, Any]) -> PublishedImage:
    return PublishedImage(
        image_id=row["image_id"], content_sha256=row["content_sha256"], width=int(row["width"]),
        height=int(row["height"]), jpeg=row["image"]["bytes"], sha256=row["sha256"],
        detections=tuple(Detection.from_dict(d) for d in row["detections"]),
        anonymization=json.loads(row["anonymization"]),
        masks=tuple(MaskAnnotation.from_sa1b(m) for m in row["masks"]),
    )


def read_parquet_shard(data: bytes) -> list[PublishedImage]:
    table = pq.read_table(io.BytesIO(data))
    return [_published_from_parquet_row(r) for r in table.to_pylist()]


def read_tar_shard(data: bytes) -> list[PublishedImage]:
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for info in tar:
            stem, _, ext = info.name.rpartition(".")
            fh = tar.extractfile(info)
            if fh is not None:
                members.setdefault(stem, {})[ext] = fh.read()
    out = []
    for stem in sorted(members):
        meta = json.loads(members[stem]["json"])
        out.append(PublishedImage(
            image_id=meta["image"]["image_id"], content_sha256=meta["content_sha256"],
            width=meta["image"]["width"], height=meta["image"]["height"], jpeg=members[stem]["jpg"],
            sha256=meta["sha256"], detections=tuple(Detection.from_dict(d) for d in meta["detections"]),
            anonymization=meta["anonymization"],
            masks=tuple(MaskAnnotation.from_sa1b(a) for a in meta["annotations"])))
    return out


def read_coco_shard(release_dir: str, data: bytes, index_rows: Sequence[dict[str, Any]]) -> list[PublishedImage]:
    coco = json.loads(data)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    content = {r["image_id"]: r["content_sha256"] for r in index_rows}
    out = []
    for img in coco["images"]:
        anns = sorted(by_image.get(img["id"], []), key=lambda a: a["id"])
        out.append(PublishedImage(
            image_id=img["image_id"], content_sha256=content[img["image_id"]], width=img["width"],
            height=img["height"], jpeg=read_bytes(join(release_dir, img["file_name"])), sha256=img["sha256"],
            detections=tuple(Detection.from_dict(d) for d in img["detections"]),
            anonymization=img["anonymization"], masks=tuple(MaskAnnotation.from_sa1b(a) for a in anns)))
    return out


def read_index(release_dir: str, rel_path: str) -> list[dict[str, Any]]:
    data = read_bytes(join(release_dir, rel_path))
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def read_shard(release_dir: str, manifest: dict[str, Any], shard: int) -> list[PublishedImage]:
    """Every image of one shard, reconstructed from the richest format the release has."""
    num_shards = int(manifest["num_shards"])
    formats = manifest["formats"]
    if "parquet" in formats:
        return read_parquet_shard(read_bytes(join(release_dir, ids.shard_path("parquet", shard, num_shards))))
    if "sa1b" in formats:
        return read_tar_shard(read_bytes(join(release_dir, ids.shard_path("sa1b", shard, num_shards))))
    index_rows = read_index(release_dir, ids.shard_path(INDEX, shard, num_shards))
    return read_coco_shard(release_dir, read_bytes(join(release_dir, ids.shard_path("coco", shard, num_shards))),
                           index_rows)
