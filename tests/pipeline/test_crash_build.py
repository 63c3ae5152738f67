"""kill -9 at 20+ points of a rebuild: the folder always holds the previous release whole or the new one (audited
each time), the same command rerun completes, and gives the release an uninterrupted rebuild gives. A rerun
resumes: what the killed run staged is not decoded, detected or encoded again."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from veilset.cli import main
from veilset.release import index, layout
from veilset.release.manifest import load_manifest
from tests import crash
from tests.imagegen import make_pattern

FLAGS = ["--workers", "1", "--shards", "3", "--formats", "parquet,coco,sa1b", "--face-detector", "none",
         "--plate-detector", "none", "--masks", "none"]


def _photos(folder, seeds) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        Image.fromarray(make_pattern(40 + seed, 56, seed=seed)).save(folder / f"p{seed}.png")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Release 1 built from photos 0-5; the rebuild to interrupt: photos 2-8 into the same folder (release 2)."""
    tmp = tmp_path_factory.mktemp("crash-build")
    _photos(tmp / "in1", range(6))
    _photos(tmp / "in2", range(2, 9))
    base = str(tmp / "base")
    assert main(["build", str(tmp / "in1"), "--output", base, *FLAGS]) == 0
    reference = crash.fresh_copy(base, str(tmp / "reference"))
    assert main(["build", str(tmp / "in2"), "--output", reference, *FLAGS]) == 0
    work = str(tmp / "work")
    argv = [crash.PYTHON, "-m", "veilset", "build", str(tmp / "in2"), "--output", work, *FLAGS]
    crash.fresh_copy(base, work)
    points = crash.change_points(argv, str(tmp / "points.log"))
    return {"tmp": tmp, "base": base, "reference": reference, "work": work, "argv": argv, "points": points}


def test_an_uninterrupted_rebuild_is_the_next_release_under_new_names(scene):
    old, new = load_manifest(scene["base"]), load_manifest(scene["reference"])
    assert (old["release"], new["release"]) == (1, 2)
    assert all(".r000001." in e["path"] for e in old["shards"] + old["index"])
    assert all(".r000002." in e["path"] for e in new["shards"] + new["index"]) and new["rejects"] == "rejects.r000002.jsonl"
    per_image = {row["file_name"] for e in new["index"] for row in index.read(scene["reference"], e["path"])}
    assert per_image and all(".r000002/" in name for name in per_image)
    # exactly release 2's files: nothing of release 1, no staging, journal or lock left
    assert set(crash.tree(scene["reference"])) == {
        *{e["path"] for e in new["shards"] + new["index"]}, "manifest.json", new["rejects"], layout.MARKER_NAME,
        *per_image}
    assert crash.check_interrupted(scene["reference"]) == []


def test_kill_at_twenty_points_of_a_rebuild_then_rerun(scene):
    points = crash.spread(len(scene["points"]), 22)
    assert len(points) >= 20, scene["points"]
    old_state, new_state = crash.manifest_state(scene["base"]), crash.manifest_state(scene["reference"])
    reference = crash.tree(scene["reference"])
    seen = set()
    for point in points:
        work = crash.fresh_copy(scene["base"], scene["work"])
        crash.kill_at(scene["argv"], point)
        state = crash.manifest_state(work)
        assert state in (old_state, new_state), f"killed at {point} ({scene['points'][point - 1]}): mixed manifest"
        seen.add("old" if state == old_state else "new")
        crash.check_interrupted(work)
        finished = not os.path.exists(os.path.join(work, layout.BUILD_JOURNAL)) and state == new_state
        assert main(["build", str(scene["tmp"] / "in2"), "--output", work, *FLAGS]) == 0
        if finished:  # killed after its last step but the lock's removal: the rerun is a build of its own
            assert load_manifest(work)["release"] == 3 and _ids(work) == _ids(scene["reference"])
        else:
            assert crash.tree(work) == reference, f"killed at {point} ({scene['points'][point - 1]}): rerun differs"
        assert crash.check_interrupted(work) == []
    assert seen == {"old", "new"}  # points before and after the commit were both hit


def _ids(root: str) -> set[str]:
    m = load_manifest(root)
    return {row["image_id"] for e in m["index"] for row in index.read(root, e["path"])}


def test_a_rerun_resumes_from_what_the_killed_run_staged(scene, monkeypatch):
    staged_at = [k for k, p in enumerate(scene["points"], 1) if p.startswith("rename-temp") and p.endswith(".pkl")]
    assert len(staged_at) == 7  # one staged record per published photo
    work = crash.fresh_copy(scene["base"], scene["work"])
    crash.kill_at(scene["argv"], staged_at[4] + 1)  # 5 of the 7 staged, then killed
    staged = [f for _, _, files in os.walk(os.path.join(work, layout.STAGING)) for f in files if f.endswith(".pkl")]
    assert len(staged) == 5
    log = str(scene["tmp"] / "rerun.log")
    points = crash.change_points(scene["argv"], log)
    restaged = [p for p in points if p.startswith("write") and p.endswith(".pkl")]
    assert len(restaged) == 2  # only the 2 photos the killed run had not reached
    assert crash.tree(work) == crash.tree(scene["reference"])
