"""End to end through the CLI: a real Beam build on small real photos and hostile files."""
from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools.coco import COCO

from veilset.cli import main
from veilset.release import ids, jpeg
from veilset.pipeline.decode import decode_image
from veilset.release.manifest import load_manifest
from veilset.release.shards import read_shard

pytestmark = pytest.mark.slow

# publish-all: rotated.jpg is the astronaut turned (EXIF 6), a near-copy of astronaut.png that these tests want
# published too (its face found upright); grouping is tests/pipeline/test_input_near_duplicates.py's subject
FAST = ["--masks", "none", "--plate-detector", "none", "--near-duplicates", "publish-all"]


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _face_box_astronaut() -> tuple[int, int, int, int]:
    # Eileen Collins' face in skimage's astronaut (512x512), generously: x0, y0, x1, y1
    return 165, 40, 265, 160


def _write_inputs(folder) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    astro = _astronaut()
    Image.fromarray(astro).save(folder / "astronaut.png")
    # Same face stored sideways with EXIF orientation 6 and identifying metadata that must never be published.
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "CameraMaker"
    exif[0xA431] = "SERIAL-12345"  # BodySerialNumber
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    Image.fromarray(astro).transpose(Image.Transpose.ROTATE_90).save(
        folder / "rotated.jpg", "JPEG", quality=95, exif=exif.tobytes(), comment=b"secret comment")
    shutil.copyfile(folder / "astronaut.png", folder / "dup of astronaut (1).png")  # odd name, duplicate
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(folder / "noise.webp")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).convert("P").save(folder / "palette.gif")
    yy, xx = np.mgrid[0:120, 0:160]
    gradient = np.stack([xx * 1.5, yy * 2, (xx + yy) * 0.9], axis=-1).astype(np.uint8)
    Image.fromarray(gradient).save(folder / "clean_landscape.jpg", "JPEG", quality=88, comment=b"owner: someone")
    (folder / "notes.jpg").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(astro).save(buf, "JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return {"astronaut": str(folder / "astronaut.png"), "rotated": str(folder / "rotated.jpg")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs") / "photos"
    _write_inputs(folder)
    return folder


@pytest.fixture(scope="module")
def release(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "r"
    assert main(["build", str(inputs), "--output", str(out), "--workers", "1", "--shards", "3",
                 "--formats", "parquet,coco,sa1b", *FAST]) == 0
    return out


def _id_of(path: str) -> str:
    with open(path, "rb") as fh:
        return ids.image_id_for(ids.sha256_hex(fh.read()))


def test_counts_are_conserved_and_rejects_explained(release):
    m = load_manifest(str(release))
    c = m["counts"]
    assert c == {"input": 9, "published": 5, "rejected": 3, "duplicates": 1, "blocked": 0}
    assert c["input"] == c["published"] + c["rejected"] + c["duplicates"] + c["blocked"]
    rejects = [json.loads(line) for line in (release / m["rejects"]).read_text().splitlines()]
    by_name = {os.path.basename(r["source"]): r for r in rejects}
    assert set(by_name) == {"notes.jpg", "empty.png", "truncated.jpg"}
    assert all(r["stage"] == "decode" and r["reason"] for r in rejects)
    assert sum(m["rejects_by_reason"].values()) == 3


def test_manifest_lists_every_file_with_its_hash(release):
    m = load_manifest(str(release))
    assert m["release"] == 1 and m["num_shards"] == 3
    for entry in m["shards"] + m["index"]:
        data = (release / entry["path"]).read_bytes()
        assert ids.sha256_hex(data) == entry["sha256"]
    assert sum(e["images"] for e in m["index"]) == 5
    assert m["models"]["face_detector"]["name"] == "centerface"
    assert m["models"]["plate_detector"] is None and m["models"]["masks"] is None
    assert not list(release.rglob("*.tmp-*")) and not (release / ".staging").exists()


def test_face_is_anonymized_upright_and_no_metadata_survives(release, inputs):
    m = load_manifest(str(release))
    x0, y0, x1, y1 = _face_box_astronaut()
    astro = _astronaut().astype(np.int16)
    for name in ("astronaut.png", "rotated.jpg"):
        image_id = _id_of(str(inputs / name))
        shard = ids.shard_of(image_id, m["num_shards"])
        [im] = [i for i in read_shard(str(release), shard, m["num_shards"], m["formats"]) if i.image_id == image_id]
        assert jpeg.metadata_segments(im.jpeg) == []
        assert b"SERIAL-12345" not in im.jpeg and b"secret comment" not in im.jpeg
        assert Image.open(io.BytesIO(im.jpeg)).getexif() == {}
        faces = [d for d in im.detections if d.label == "face"]
        assert faces, f"{name}: no face found"
        fx0, fy0, fx1, fy1 = faces[0].box_xyxy
        # found upright: the box lies on the face in the *published* (upright) orientation
        assert fx0 < x1 and fx1 > x0 and fy0 < y1 and fy1 > y0, faces[0]
        published = decode_image(im.jpeg).astype(np.int16)
        assert published.shape == astro.shape
        face_diff = np.abs(published[y0 + 20 : y1 - 20, x0 + 20 : x1 - 20] - astro[y0 + 20 : y1 - 20, x0 + 20 : x1 - 20]).mean()
        far_diff = np.abs(published[400:, 400:] - astro[400:, 400:]).mean()
        assert face_diff > 25 > far_diff * 3, (face_diff, far_diff)


def test_outputs_load_in_real_clients(release):
    m = load_manifest(str(release))
    coco_files = [e for e in m["shards"] if e["format"] == "coco"]
    n = 0
    for entry in coco_files:
        coco = COCO(str(release / entry["path"]))
        for img in coco.loadImgs(coco.getImgIds()):
            assert (release / img["file_name"]).is_file()
            assert img["id"] == ids.int_id(img["image_id"]) < 2**53  # exact in JavaScript and every JSON tool
            n += 1
    assert n == 5
    rows = sum(pq.read_table(release / e["path"]).num_rows for e in m["shards"] if e["format"] == "parquet")
    assert rows == 5


def test_rerun_gives_identical_shards(release, inputs, tmp_path):
    again = tmp_path / "again"
    assert main(["build", str(inputs), "--output", str(again), "--workers", "1", "--shards", "3",
                 "--formats", "parquet,coco,sa1b", *FAST]) == 0
    a, b = load_manifest(str(release)), load_manifest(str(again))
    assert a["shards"] == b["shards"] and a["index"] == b["index"] and a["counts"] == b["counts"]


def test_multiprocessing_gives_the_same_release(release, inputs, tmp_path):
    out = tmp_path / "mp"
    assert main(["build", str(inputs), "--output", str(out), "--workers", "2", "--shards", "3",
                 "--formats", "parquet,coco,sa1b", *FAST]) == 0
    a, b = load_manifest(str(release)), load_manifest(str(out))
    assert a["shards"] == b["shards"] and a["index"] == b["index"]


def test_rebuild_in_place_replaces_the_release_and_removes_stale_shards(inputs, tmp_path):
    out = tmp_path / "inplace"
    assert main(["build", str(inputs), "--output", str(out), "--workers", "1", "--shards", "4", *FAST]) == 0
    assert main(["build", str(inputs), "--output", str(out), "--workers", "1", "--shards", "1", *FAST]) == 0
    m = load_manifest(str(out))
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    listed = {e["path"] for e in m["shards"] + m["index"]} | {"manifest.json", m["rejects"], ".veilset-release.json"}
    images = {p for p in on_disk if p.startswith("images/")}
    assert on_disk - images == listed
    assert len(images) == 5


def test_refuses_to_write_into_a_foreign_folder(inputs, tmp_path, capsys):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    assert main(["build", str(inputs), "--output", str(foreign), *FAST]) == 2
    assert "refusing" in capsys.readouterr().err
    assert os.listdir(foreign) == ["thesis.docx"]
    assert (foreign / "thesis.docx").read_text() == "precious"


@pytest.mark.parametrize("argv, needle", [
    (["--workers", "0"], "--workers"),
    (["--formats", "parquet,tiff"], "tiff"),
    (["--face-detector", "nosuch"], "nosuch"),
    (["--masks", "nosuch"], "nosuch"),
    (["--margin", "9"], "--margin"),
])
def test_bad_options_name_the_bad_value(inputs, tmp_path, capsys, argv, needle):
    assert main(["build", str(inputs), "--output", str(tmp_path / "x"), *argv]) == 2
    assert needle in capsys.readouterr().err


def test_missing_input_is_an_error(tmp_path, capsys):
    assert main(["build", str(tmp_path / "nope"), "--output", str(tmp_path / "x")]) == 2
    assert "nope" in capsys.readouterr().err


def _shard_of(release, m: dict, image_id: str) -> list:
    """Every image of the shard that holds ``image_id``."""
    return read_shard(str(release), ids.shard_of(image_id, m["num_shards"]), m["num_shards"], m["formats"])


def test_clean_jpeg_with_nothing_to_anonymize_is_published_losslessly(release, inputs):
    m = load_manifest(str(release))
    source = (inputs / "clean_landscape.jpg").read_bytes()
    image_id = _id_of(str(inputs / "clean_landscape.jpg"))
    [im] = [i for i in _shard_of(release, m, image_id) if i.image_id == image_id]
    assert im.anonymization["encoding"] == "lossless_strip" and im.detections == ()
    assert jpeg.metadata_segments(im.jpeg) == [] and b"owner: someone" not in im.jpeg
    assert np.array_equal(decode_image(im.jpeg), decode_image(source))
    astro_id = _id_of(str(inputs / "astronaut.png"))
    [astro] = [i for i in _shard_of(release, m, astro_id) if i.image_id == astro_id]
    assert astro.anonymization["encoding"] == "reencoded"


class _ExplodingFaceDetector:
    """Fails on very bright images (a model error in production): those must be rejected, never published."""

    name, label = "test_exploding_faces", "face"

    def identity(self):
        return {"name": self.name, "threshold": 0.5}

    def detect(self, image_rgb):
        if image_rgb.mean() > 200:
            raise RuntimeError("simulated model failure")
        return []

    def detect_batch(self, images_rgb):
        return [self.detect(im) for im in images_rgb]


def test_a_failing_detector_rejects_its_images_and_counts_still_add_up(tmp_path, request):
    from veilset.detectors.registry import DETECTORS
    from veilset.plugins import Plugin

    DETECTORS.add(Plugin("detector", _ExplodingFaceDetector.name, _ExplodingFaceDetector, tags=("face",)))
    request.addfinalizer(lambda: DETECTORS.remove(_ExplodingFaceDetector.name))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 60, 3), 250, np.uint8)).save(photos / "bright.png")
    Image.fromarray(np.full((40, 60, 3), 20, np.uint8)).save(photos / "dark.png")
    out = tmp_path / "r"
    assert main(["build", str(photos), "--output", str(out), "--workers", "1", "--masks", "none",
                 "--plate-detector", "none", "--face-detector", _ExplodingFaceDetector.name]) == 0
    m = load_manifest(str(out))
    c = m["counts"]
    assert c["input"] == 2 == c["published"] + c["rejected"] and c["rejected"] >= 1
    rejects = [json.loads(line) for line in (out / m["rejects"]).read_text().splitlines()]
    bright = [r for r in rejects if r["source"].endswith("bright.png")]
    assert bright and bright[0]["stage"] == "detect_faces" and bright[0]["reason"] == "model_error"
    assert "simulated model failure" in bright[0]["detail"]
    published = {r["image_id"] for e in m["index"] for r in map(json.loads, (out / e["path"]).read_text().splitlines())}
    assert _id_of(str(photos / "bright.png")) not in published
