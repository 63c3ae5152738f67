"""One real release per test session, built through ``veilset build`` on small photos that ship in packages
(scikit-image, matplotlib), with a takedown ledger that blocks one of them. Tests copy it before corrupting."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from veilset.cli import main
from veilset.release import ids, registry, shards

ASTRONAUT_FACE_XYXY = (165, 40, 265, 160)  # Eileen Collins' face in skimage's astronaut (512x512), generously


@dataclass(frozen=True)
class Built:
    root: str  # the good release (never modify: use ``copy_release``)
    ledger: str
    inputs: dict  # name -> source path
    image_ids: dict  # name -> image ID
    removed_id: str  # blocked by the ledger, so not published


def _package_file(package: str, *parts: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(package)
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def _file_id(path: str) -> tuple[str, str]:
    with open(path, "rb") as fh:
        csha = hashlib.sha256(fh.read()).hexdigest()
    return ids.image_id_for(csha), csha


def make_ledger(path: str, removed_id: str, content_sha256: str) -> str:
    from veilset.takedown.ledger import ApplyOutcome, Ledger, NewRequest, RemovedImage

    ledger = Ledger(path)
    rid, _ = ledger.add_request(NewRequest(message_id="<takedown-1@example.org>", sender="alice@example.org",
                                           date_header="Wed, 25 Nov 2026 10:00:00 +0000", source="test",
                                           state="received", image_ids=(removed_id,)))
    published = hashlib.sha256(b"published bytes of the removed image").hexdigest()
    ledger.record_applied(1, [ApplyOutcome(rid, (RemovedImage(removed_id, content_sha256, published),), (), ())])
    ledger.close()
    return path


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    folder = tmp_path_factory.mktemp("audit-inputs")
    inputs = {
        "astronaut": _package_file("skimage", "data", "astronaut.png"),
        "hopper": _package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"),
        "coffee": _package_file("skimage", "data", "coffee.png"),
        "chelsea": _package_file("skimage", "data", "chelsea.png"),
    }
    photos = folder / "photos"
    photos.mkdir()
    local = {}
    for name, src in inputs.items():
        dst = photos / (name + os.path.splitext(src)[1])
        shutil.copyfile(src, dst)
        local[name] = str(dst)
    image_ids = {name: _file_id(path)[0] for name, path in local.items()}
    removed_id, removed_sha = _file_id(local["chelsea"])
    ledger = make_ledger(str(folder / "ledger.sqlite"), removed_id, removed_sha)
    out = folder / "release"
    rc = main(["build", str(photos), "--output", str(out), "--workers", "1", "--shards", "2",
               "--formats", "parquet,coco,sa1b", "--plate-detector", "none", "--masks", "felzenszwalb",
               "--ledger", ledger])
    assert rc == 0, "veilset build failed"
    return Built(str(out), ledger, local, image_ids, removed_id)


@pytest.fixture
def copy_release(built, tmp_path):
    """A fresh copy of the good release for one test to corrupt."""
    def make() -> str:
        dst = tmp_path / f"release-{len(os.listdir(tmp_path))}"
        shutil.copytree(built.root, dst)
        return str(dst)

    return make


@pytest.fixture(scope="session")
def production(built):
    from veilset.audit.anonymization import build_production_detectors
    from veilset.audit.release import Release

    detectors, problems = build_production_detectors(Release(built.root))
    assert not problems, problems
    return detectors


@pytest.fixture(scope="session")
def residual():
    from veilset.audit.residual import build_residual_detector

    return build_residual_detector()


@pytest.fixture(scope="session")
def good_report(built, production, residual):
    from veilset.api import audit

    return audit(built.root, ledger=built.ledger, production=production, residual=residual)


# ---------------------------------------------------------------------------------------------- tamper helpers
def index_rows(root: str) -> list[dict]:
    rows = []
    for name in sorted(os.listdir(os.path.join(root, "index"))):
        with open(os.path.join(root, "index", name)) as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def row_of(root: str, image_id: str) -> dict:
    return next(r for r in index_rows(root) if r["image_id"] == image_id)


def coco_path(root: str, image_id: str) -> str:
    shard = row_of(root, image_id)["shard"]
    return os.path.join(root, registry.shard_path("coco", shard, _num_shards(root), shards.listed_generation(root, shard)))


def _num_shards(root: str) -> int:
    with open(os.path.join(root, "manifest.json")) as fh:
        return json.load(fh)["num_shards"]


def load_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def save_json(path: str, doc: dict) -> None:
    with open(path, "w") as fh:
        json.dump(doc, fh)


def published_pixels(root: str, image_id: str) -> np.ndarray:
    return np.asarray(Image.open(os.path.join(root, row_of(root, image_id)["file_name"])).convert("RGB"))


def findings_of(result, **match) -> list:
    return [f for f in result.findings if all(getattr(f, k) == v for k, v in match.items())]


@dataclass(frozen=True)
class TakenDown:
    root: str  # release 2: the good release after a real e-mailed takedown (never modify)
    before: str  # release 1, a copy taken before the takedown
    ledger: str
    removed_id: str


@pytest.fixture(scope="session")
def taken_down(built, tmp_path_factory) -> TakenDown:
    """Grace Hopper's image removed through ``veilset takedown ingest`` + ``apply`` (a real e-mail, a new
    ledger that also holds the build-time block)."""
    from email.message import EmailMessage

    folder = tmp_path_factory.mktemp("audit-takedown")
    before, root = folder / "release-1", folder / "release-2"
    shutil.copytree(built.root, before)
    shutil.copytree(built.root, root)
    ledger = str(folder / "ledger.sqlite")
    shutil.copyfile(built.ledger, ledger)
    removed = built.image_ids["hopper"]
    msg = EmailMessage()
    msg["From"] = "Bob Example <bob@example.net>"
    msg["To"] = "takedown@veilset.example"
    msg["Subject"] = "Please remove my photo"
    msg["Date"] = "Wed, 25 Nov 2026 11:00:00 +0000"
    msg["Message-ID"] = "<takedown-2@example.net>"
    msg.set_content(f"Hello,\nplease remove {removed}\nThanks")
    eml = folder / "request.eml"
    eml.write_bytes(msg.as_bytes())
    assert main(["takedown", "ingest", "--ledger", ledger, "--eml", str(eml), "--release", str(root)]) == 0
    assert main(["takedown", "apply", "--ledger", ledger, "--release", str(root)]) == 0
    return TakenDown(str(root), str(before), ledger, removed)


@dataclass(frozen=True)
class PlateBuilt:
    root: str  # a default-plate-detector release of one synthetic car photo (never modify: copy it)
    source: str  # the photo
    image_id: str
    plate_text: str


@pytest.fixture(scope="session")
def plate_built(tmp_path_factory) -> PlateBuilt:
    """One synthetic street photo with a readable plate, built with the default plate detector (so the release
    holds an anonymized plate region)."""
    from tests.audit.tamper import car_with_plate

    folder = tmp_path_factory.mktemp("audit-plates")
    photos = folder / "photos"
    photos.mkdir()
    src = photos / "car.png"
    Image.fromarray(car_with_plate("KX 4827")).save(src)
    out = folder / "release"
    rc = main(["build", str(photos), "--output", str(out), "--workers", "1", "--shards", "1",
               "--formats", "parquet,coco", "--masks", "none"])
    assert rc == 0, "veilset build failed"
    return PlateBuilt(str(out), str(src), _file_id(str(src))[0], "KX 4827")


@pytest.fixture
def copy_plate_release(plate_built, tmp_path):
    def make() -> str:
        dst = tmp_path / f"plate-release-{len(os.listdir(tmp_path))}"
        shutil.copytree(plate_built.root, dst)
        return str(dst)

    return make
