"""Parquet shards (``parquet/shard-SSSSS-of-NNNNN.parquet``): one row per image, JPEG bytes inside, loadable as a
Hugging Face ``datasets`` Image feature."""
from __future__ import annotations

import io
import json
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from veilset.detectors.base import Detection
from veilset.release import layout
from veilset.release.canonical import loads_object
from veilset.release.format import Fetch, FormatError, ShardFormat, ShardKey
from veilset.release.ids import annotation_id
from veilset.release.records import ImageCopy, ImageRecord, PublishedImage
from veilset.segmentation.base import MaskAnnotation

_RLE = pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())])
SCHEMA = pa.schema(
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
        ("pdq", pa.string()),  # the published pixels' PDQ hash, 64 hex digits (``release.fingerprint``)
        ("pixels_sha256", pa.string()),  # sha256 of the published pixels (exact copies)
        ("near_duplicate_of", pa.string()),  # the image this one is a near-copy of (--near-duplicates publish-all)
    ]
)
RECORD_COLUMNS = ["image_id", "width", "height", "sha256", "content_sha256", "detections", "anonymization", "masks"]
ROW_GROUP_SIZE = 64  # images per row group: keeps readers' memory bounded


def _hf_feature(t: pa.DataType) -> Any:
    """Hugging Face ``datasets`` feature JSON for an Arrow type (datasets >= 4 spelling)."""
    if pa.types.is_struct(t):
        return {t.field(i).name: _hf_feature(t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_list(t):
        return {"feature": _hf_feature(t.value_type), "_type": "List"}
    return {"dtype": {"binary": "binary", "string": "string"}.get(str(t), str(t)), "_type": "Value"}


def _schema_with_hf_metadata() -> pa.Schema:
    features = {f.name: _hf_feature(f.type) for f in SCHEMA}
    features["image"] = {"_type": "Image"}
    return SCHEMA.with_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})


_SCHEMA = _schema_with_hf_metadata()


def _row(im: PublishedImage) -> dict[str, Any]:
    return {
        "image_id": im.image_id,
        "image": {"bytes": im.jpeg, "path": layout.jpeg_name(im.image_id)},
        "width": im.width,
        "height": im.height,
        "sha256": im.sha256,
        "content_sha256": im.content_sha256,
        "detections": [d.to_dict() for d in im.detections],
        "anonymization": json.dumps(im.anonymization, sort_keys=True),
        "masks": [m.to_sa1b(annotation_id(im.image_id, k)) for k, m in enumerate(im.masks)],
        "pdq": im.pdq or None,
        "pixels_sha256": im.pixels_sha256 or None,
        "near_duplicate_of": im.near_duplicate_of or None,
    }


def parquet_bytes(images: Sequence[PublishedImage]) -> bytes:
    table = pa.Table.from_pylist([_row(im) for im in images], schema=_SCHEMA)
    sink = io.BytesIO()
    # no statistics on the image bytes
    pq.write_table(table, sink, row_group_size=ROW_GROUP_SIZE, compression="zstd",
                   write_statistics=["image_id", "sha256"])
    return sink.getvalue()


def _published(row: dict[str, Any]) -> PublishedImage:
    return PublishedImage(
        image_id=row["image_id"], content_sha256=row["content_sha256"], width=int(row["width"]),
        height=int(row["height"]), jpeg=row["image"]["bytes"], sha256=row["sha256"],
        detections=tuple(Detection.from_dict(d) for d in row["detections"]),
        anonymization=json.loads(row["anonymization"]),
        masks=tuple(MaskAnnotation.from_sa1b(m) for m in row["masks"]),
        pdq=row.get("pdq") or "", pixels_sha256=row.get("pixels_sha256") or "",
        near_duplicate_of=row.get("near_duplicate_of") or "",
    )


def read_rows(data: bytes, columns: list[str] | None = None,
              image_ids: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a Parquet shard; ``columns`` limits what is decoded, ``image_ids`` which rows are kept."""
    try:
        # ParquetFile reads in this thread and lets go of ``data`` here. pq.read_table goes through Arrow's dataset
        # scanner, whose background threads may drop the last reference to a Python file object at interpreter
        # exit, and then block on the GIL: "terminate called without an active exception", exit code 134, seen on
        # `veilset audit` after its report was printed (tests/release/test_parquet_exit.py).
        table = pq.ParquetFile(pa.BufferReader(data)).read(columns=columns)
        if image_ids is not None:
            wanted = pa.array(sorted(image_ids), pa.string())
            table = table.filter(pc.is_in(table["image_id"], value_set=wanted))
        return table.to_pylist()
    except Exception as err:  # pyarrow raises several types for damaged files
        raise FormatError(f"not a readable Parquet file: {err}") from None


class ParquetFormat(ShardFormat):
    name = "parquet"
    holds_jpegs = True
    directory = "parquet"
    suffix = ".parquet"

    def write(self, key: ShardKey, images: Sequence[PublishedImage]) -> dict[str, bytes]:
        return {self.path(key): parquet_bytes(images)}

    def read(self, key: ShardKey, fetch: Fetch) -> list[PublishedImage]:
        return [_published(r) for r in read_rows(fetch(self.path(key)))]

    def count(self, data: bytes) -> int:
        return len(read_rows(data, columns=["image_id"]))  # every page must decode, not just the footer

    def records(self, rel: str, data: bytes) -> Iterator[ImageRecord]:
        for row in read_rows(data, columns=RECORD_COLUMNS):
            yield ImageRecord(row.get("image_id"), rel, row.get("width"), row.get("height"), row.get("sha256"),
                              row.get("content_sha256"), tuple(row.get("detections") or ()),
                              loads_object(row.get("anonymization")), tuple(row.get("masks") or ()))

    def copies(self, rel: str, data: bytes, image_ids: frozenset[str] | None = None) -> Iterator[ImageCopy]:
        for row in read_rows(data, columns=["image_id", "image"], image_ids=image_ids):
            jpeg = (row.get("image") or {}).get("bytes")
            if jpeg is not None:
                yield ImageCopy(row.get("image_id") or "", rel, jpeg)


FORMAT = ParquetFormat()
