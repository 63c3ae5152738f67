"""A build's progress: counters under OUTPUT/.staging/progress/ summed by the driver, log lines that end at
N/N, no Beam start-up warnings on a default build's stderr, no progress files left behind."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from veilset.pipeline import progress as pp
from veilset.release import housekeeping, layout


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.closed = False

    def update(self, done: int, note: str = "") -> None:
        self.seen.append(done)

    def close(self) -> None:
        self.closed = True


def test_counters_are_written_at_most_twice_a_second_and_at_flush(tmp_path):
    clock = FakeClock()
    a, b = pp.Counter(str(tmp_path), clock), pp.Counter(str(tmp_path), clock)
    a.add()
    a.add()
    assert pp.read_total(str(tmp_path)) == 0  # not yet: written at most every WRITE_EVERY seconds
    clock.now += pp.WRITE_EVERY
    a.add()
    b.add()
    assert pp.read_total(str(tmp_path)) == 4
    b.add()
    b.flush()
    assert pp.read_total(str(tmp_path)) == 5
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(a.path), os.path.basename(b.path)])
    assert pp.read_total(str(tmp_path / "absent")) == 0


def test_folder_progress_ends_at_the_sum_and_removes_only_its_files(tmp_path):
    folder = pp.progress_dir(str(tmp_path))
    rec = Recorder()
    watcher = pp.FolderProgress(folder, rec, every=0.01)
    for n in (3, 4):
        counter = pp.Counter(folder)
        counter.add(n)
        counter.flush()
    with open(os.path.join(folder, "notes.txt"), "w") as fh:  # not ours: stays
        fh.write("x")
    watcher.close()
    assert rec.seen[-1] == 7 and rec.closed and rec.seen == sorted(rec.seen)
    assert os.listdir(folder) == ["notes.txt"]
    os.unlink(os.path.join(folder, "notes.txt"))
    pp.remove_counters(folder)
    assert not os.path.exists(folder)


def test_housekeeping_removes_a_crashed_builds_counters(tmp_path):
    folder = pp.progress_dir(str(tmp_path))
    counter = pp.Counter(folder)
    os.makedirs(folder)
    counter.add()
    counter.flush()
    leftover_tmp = f"{counter.path}.{'0' * 32}.tmp"
    open(leftover_tmp, "w").close()
    removed = housekeeping._remove_own_scratch(str(tmp_path))
    assert sorted(removed) == sorted(f"{layout.PROGRESS_DIR}/{os.path.basename(p)}" for p in (counter.path, leftover_tmp))
    assert os.listdir(tmp_path) == []  # .staging/progress/ and .staging/ went with them
    os.makedirs(folder)
    open(os.path.join(folder, "mine.count"), "w").close()  # not a name a build writes: stays
    assert housekeeping._remove_own_scratch(str(tmp_path)) == []
    assert os.listdir(folder) == ["mine.count"]


# --------------------------------------------------------------------------------------- a real build, CLI
def _photos(folder) -> int:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(folder / f"p{i}.jpg")
    shutil.copyfile(folder / "p0.jpg", folder / "p0 copy.jpg")  # a duplicate
    (folder / "broken.jpg").write_bytes(b"not an image")  # a reject
    return 5


def _build(inputs, out, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "veilset", *extra, "build", str(inputs), "--output", str(out), "--workers", "2",
           "--masks", "none", "--plate-detector", "none"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_build_logs_progress_to_the_total_without_beam_warnings(tmp_path):
    n = _photos(tmp_path / "in")
    proc = _build(tmp_path / "in", tmp_path / "out")  # stderr is a pipe: auto = log lines
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "progress: " in line]
    assert lines and re.search(rf"progress: {n}/{n} images \(100%\), [0-9.]+ images/s$", lines[-1]), proc.stderr
    assert "WARNING" not in proc.stderr and "apache_beam" not in proc.stderr, proc.stderr
    assert "apitools" not in proc.stderr and "semi_persistent" not in proc.stderr
    assert "this worker published" not in proc.stderr + proc.stdout  # the old per-worker lines are gone
    assert f"input {n}  published 3  rejected 1  duplicates 1  blocked 0" in proc.stdout  # the summary stays
    assert not os.path.exists(tmp_path / "out" / layout.STAGING)  # no progress files left behind


def test_a_counter_never_fails_the_build(tmp_path):
    counter = pp.Counter(str(tmp_path / "gone"))
    counter.add()
    counter.flush()  # the folder does not exist: nothing written, no error
    assert pp.read_total(str(tmp_path / "gone")) == 0


def test_worker_start_up_notices_are_dropped_and_errors_pass(capfd):
    from veilset.pipeline.cli import quiet_workers

    worker = ("import sys; sys.stderr.write('WARNING:root:apitools not found\\n"
              "INFO:__main__:Logging handler created.\\n"
              "WARNING:apache_beam.options.pipeline_options:Discarding unparseable args\\n"
              "ERROR:apache_beam.runners.worker.sdk_worker:boom\\n"
              "Traceback (most recent call last):\\n"
              "WARNING:veilset.detectors:a veilset warning\\n')")
    with quiet_workers() as terminal:
        subprocess.run([sys.executable, "-c", worker], check=True)  # a worker shares this process's stderr
        terminal.write("a bar\n")
    err = capfd.readouterr().err
    assert "apitools" not in err and "Logging handler" not in err and "Discarding" not in err
    assert "ERROR:apache_beam.runners.worker.sdk_worker:boom" in err and "Traceback" in err
    assert "WARNING:veilset.detectors:a veilset warning" in err and "a bar" in err
    with quiet_workers(enabled=False) as terminal:  # -v: everything as it is
        assert terminal is None
        subprocess.run([sys.executable, "-c", worker], check=True)
    assert "apitools" in capfd.readouterr().err
