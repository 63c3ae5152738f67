"""Beam's portable runner (the path Flink, Spark and Dataflow use) against a local job service and an
external SDK worker pool, both started here on 127.0.0.1; the release must equal the DirectRunner's.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PortableEndpoints:
    job_endpoint: str  # host:port of the job service
    worker_pool: str  # host:port of the external SDK worker pool

    def beam_args(self) -> list[str]:
        return ["--runner", "PortableRunner", "--job_endpoint", self.job_endpoint,
                "--environment_type", "EXTERNAL", "--environment_config", self.worker_pool]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{proc.args!r} not listening on port {port} after {READY_TIMEOUT_S}s:\n"
                       f"{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Kill the whole process group (the worker pool forks one SDK harness per worker)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def portable_endpoints(tmp_path_factory) -> PortableEndpoints:
    """Job service + external worker pool on free ports, this interpreter's bin dir first on PATH."""
    logs = tmp_path_factory.mktemp("portable-logs")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    job_port, pool_port = _free_port(), _free_port()
    while pool_port == job_port:
        pool_port = _free_port()
    commands = {
        "job_service": ([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                         "--port", str(job_port)], job_port),
        "worker_pool": ([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                         "--service_port", str(pool_port)], pool_port),
    }
    procs: list[subprocess.Popen] = []
    try:
        for name, (cmd, port) in commands.items():
            log = logs / f"{name}.log"
            fh = open(log, "wb")
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, cwd=str(logs))
            fh.close()
            procs.append(proc)
            _wait_listening(port, proc, log)
        yield PortableEndpoints(job_endpoint=f"localhost:{job_port}", worker_pool=f"localhost:{pool_port}")
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_harness_runs_a_pipeline_on_the_external_worker_pool(portable_endpoints, tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    out = tmp_path / "out"
    opts = PipelineOptions(portable_endpoints.beam_args())
    with beam.Pipeline(options=opts) as p:
        _ = (p | beam.Create(range(200)) | beam.Map(lambda x: (x % 7, os.getpid()))
             | beam.GroupByKey() | beam.MapTuple(lambda k, v: json.dumps([k, len(list(v)), list(set(v))]))
             | beam.io.WriteToText(str(out)))
    lines = [json.loads(line) for f in sorted(tmp_path.glob("out*")) for line in f.read_text().splitlines()]
    assert sorted((k, n) for k, n, _ in lines) == [(k, len(range(k, 200, 7))) for k in range(7)]
    worker_pids = {pid for _, _, pids in lines for pid in pids}
    assert os.getpid() not in worker_pids  # the elements really ran in the external SDK harness


# ------------------------------------------------------------------------------------------------ the build
def _write_inputs(folder: Path) -> None:
    """Small real photos (a face among them), a duplicate and a broken file: every output kind is exercised."""
    import io

    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True)
    astro = data.astronaut()
    Image.fromarray(astro[::2, ::2]).save(folder / "astronaut.png")
    Image.fromarray(astro[::2, ::2]).save(folder / "astronaut copy.png")  # byte-identical duplicate
    Image.fromarray(data.coffee()[::2, ::2]).save(folder / "coffee.jpg", quality=90)
    Image.fromarray(data.chelsea()[::2, ::2]).save(folder / "chelsea.webp")
    buf = io.BytesIO()
    Image.fromarray(astro).save(buf, "JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _build(cwd: Path, output: str, beam_args: list[str]) -> None:
    cmd = [sys.executable, "-m", "veilset", "build", "photos", "--output", output, "--workers", "1",
           "--shards", "2", "--formats", "parquet,coco,sa1b", "--plate-detector", "none"]
    if beam_args:
        cmd += ["--", *beam_args]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _tree(release: Path) -> dict[str, str]:
    return {p.relative_to(release).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(release.rglob("*")) if p.is_file()}


def test_portable_build_equals_the_direct_runner_build(portable_endpoints, tmp_path):
    import pyarrow.parquet as pq

    _write_inputs(tmp_path / "photos")
    # Relative paths on purpose: the SDK workers run in another process with another working directory.
    _build(tmp_path, "direct", [])
    _build(tmp_path, "portable", portable_endpoints.beam_args())
    direct, portable = tmp_path / "direct", tmp_path / "portable"

    a, b = _tree(direct), _tree(portable)
    assert sorted(a) == sorted(b)
    differing = sorted(k for k in a if a[k] != b[k])
    assert differing == [".veilset-release.json", "manifest.json"]  # only their identity / "created" may differ
    ma, mb = (json.loads((r / "manifest.json").read_text()) for r in (direct, portable))
    assert {k: v for k, v in ma.items() if k != "created"} == {k: v for k, v in mb.items() if k != "created"}

    # Spelled out, so a failure says what diverged: IDs, published bytes, detections and masks.
    assert ma["counts"] == {"input": 5, "published": 3, "rejected": 1, "duplicates": 1, "blocked": 0}
    rows = {}
    for release in (direct, portable):
        table = pq.read_table(sorted((release / "parquet").glob("*.parquet")),
                              columns=["image_id", "sha256", "detections", "masks"]).to_pylist()
        rows[release.name] = sorted(table, key=lambda r: r["image_id"])
    assert [r["image_id"] for r in rows["direct"]] == [r["image_id"] for r in rows["portable"]]
    assert rows["direct"] == rows["portable"]
    assert any(d["label"] == "face" for r in rows["direct"] for d in r["detections"])  # the detector really ran
    assert all(r["masks"] for r in rows["direct"])  # and the mask generator
