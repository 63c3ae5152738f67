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
