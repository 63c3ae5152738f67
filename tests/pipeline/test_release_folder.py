"""Safe builds (issue §3): the output folder belongs to the build or the build refuses it; one writer at a time."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from veilset.cli import main
from veilset.release import layout
from veilset.release.lock import ReleaseLock, ReleaseLocked
from veilset.release.manifest import load_manifest

pytestmark = pytest.mark.slow

BARE = ["--workers", "1", "--masks", "none", "--plate-detector", "none", "--face-detector", "none"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(1)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40 + k, 60, 3), dtype=np.uint8)).save(folder / f"p{k}.png")
    return folder


def _tree(root) -> dict[str, bytes]:
    out = {}
    for folder, _dirs, files in os.walk(root):
        for f in files:
            out[os.path.relpath(os.path.join(folder, f), root)] = open(os.path.join(folder, f), "rb").read()
    return out


def test_a_user_file_inside_a_release_survives_a_rebuild(photos, tmp_path):
    out = tmp_path / "r"
    assert main(["build", str(photos), "--output", str(out), "--shards", "1", *BARE]) == 0
    assert (out / layout.MARKER_NAME).is_file()
    for rel in ("images/00000/my-notes.txt", "index/README", ".staging/keep.me", "parquet/mine.parquet"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("user")
    (out / "images/00000/sa_not-an-id.jpg").write_text("user")
    assert main(["build", str(photos), "--output", str(out), "--shards", "2", *BARE]) == 0
    for rel in ("images/00000/my-notes.txt", "index/README", ".staging/keep.me", "parquet/mine.parquet",
                "images/00000/sa_not-an-id.jpg"):
        assert (out / rel).read_text() == "user", rel
    m = load_manifest(str(out))
    assert not (out / "parquet/shard-00000-of-00001.parquet").exists()  # the old release's own files went
    assert {s["path"] for s in m["shards"]} <= set(_tree(out))
    assert not (out / layout.LOCK_NAME).exists()


def test_a_non_release_folder_is_refused_and_nothing_is_created(photos, tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.docx").write_text("precious")
    (home / "manifest.json").write_text('{"name": "my web app"}')  # a manifest.json is not a release
    assert main(["build", str(photos), "--output", str(home), *BARE]) == 2
    err = capsys.readouterr().err
    assert "not a veilset release" in err and "thesis.docx" in err and "manifest.json" in err
    assert _tree(home) == {"thesis.docx": b"precious", "manifest.json": b'{"name": "my web app"}'}


def test_a_second_writer_fails_at_once_with_exit_3(photos, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    with ReleaseLock(str(out), command="takedown apply"):
        t0 = time.monotonic()
        assert main(["build", str(photos), "--output", str(out), *BARE]) == 3
        assert time.monotonic() - t0 < 30
        err = capsys.readouterr().err
        assert "takedown apply" in err and str(os.getpid()) in err
        assert set(os.listdir(out)) == {layout.LOCK_NAME}  # the refused build wrote nothing
    assert os.listdir(out) == []


def test_two_concurrent_builds_one_fails_with_exit_3_and_leaves_no_debris(photos, tmp_path):
    out = tmp_path / "r"
    argv = [sys.executable, "-m", "veilset.cli", "build", str(photos), "--output", str(out), *BARE]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = sorted((p.wait(timeout=600), p.stderr.read().decode()) for p in procs)
    assert [rc for rc, _ in results] == [0, 3], results
    assert "one writer at a time" in results[1][1]
    files = set(_tree(out))
    assert not any(layout.LOCK_NAME in f or ".tmp-" in f or f.startswith(layout.STAGING) for f in files), files
    assert load_manifest(str(out))["counts"]["published"] == 3


def test_a_stale_lock_of_a_dead_process_is_taken_over(photos, tmp_path, caplog):
    out = tmp_path / "r"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / layout.LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                    "command": "build", "started": "2026-01-01T00:00:00Z"}))
    assert main(["build", str(photos), "--output", str(out), *BARE]) == 0
    assert "taking over the lock" in caplog.text and "not running" in caplog.text
    assert not (out / layout.LOCK_NAME).exists()


def test_a_folder_a_writer_is_just_starting_in_is_not_refused_as_foreign(tmp_path):
    """A second build checks the folder before it waits for the lock: the first one's lock and release marker, each
    maybe half written (their temporary names), are no content -- the second must fail on the lock (exit 3), not
    call the folder foreign (exit 2; CI saw it once in the concurrent-builds test above)."""
    from veilset.release import storage
    from veilset.release.housekeeping import check_output_dir

    folder = tmp_path / "starting"
    folder.mkdir()
    for name in (layout.LOCK_NAME, layout.MARKER_NAME):
        (folder / storage.temp_name(name)).write_bytes(b"{")
        check_output_dir(str(folder))
    (folder / layout.LOCK_NAME).write_text("{}")
    check_output_dir(str(folder))
    (folder / ".veilset-release.json.bak").write_text("{}")  # not a writer's temporary: foreign content
    with pytest.raises(ValueError, match="not a veilset release"):
        check_output_dir(str(folder))


def test_the_lock_names_its_holder_and_is_exclusive(tmp_path):
    with ReleaseLock(str(tmp_path), command="build"):
        with pytest.raises(ReleaseLocked, match="build"):
            with ReleaseLock(str(tmp_path)):
                pass
    with ReleaseLock(str(tmp_path)):
        pass


def test_a_rebuild_is_the_next_release_and_keeps_taken_down_images_out_without_the_ledger(photos, tmp_path):
    from veilset.release import ids
    from veilset.takedown.apply import apply_pending
    from veilset.takedown.ledger import Ledger, NewRequest

    out = tmp_path / "r"
    assert main(["build", str(photos), "--output", str(out), "--shards", "2", *BARE]) == 0
    victim = ids.image_id_for(ids.sha256_hex((photos / "p1.png").read_bytes()))
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    ledger.add_request(NewRequest(message_id="<r1@x>", sender="a@example.org", date_header="", source="t",
                                  state="received", image_ids=(victim,)))
    report = apply_pending(ledger, str(out), now="2026-12-02T06:00:00Z")
    assert report.removed == (victim,) and report.release_after == 2
    log = load_manifest(str(out))["log"]

    assert main(["build", str(photos), "--output", str(out), "--shards", "2", *BARE]) == 0  # no --ledger
    m = load_manifest(str(out))
    assert m["release"] == 3 and m["log"] == log
    assert m["counts"]["blocked"] == 1 and m["counts"]["published"] == 2
    for root, _dirs, files in os.walk(out):
        assert not any(victim in f for f in files)
    index_rows = [line for f in (out / "index").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert not any(victim in row for row in index_rows)
