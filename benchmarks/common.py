"""Shared helpers for the benchmark scripts: input folders, timed child processes with process-tree RSS,
machine facts, JSON results. Linux (reads /proc). No Beam import here.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval"  # ../shared/eval next to the checkout, when present
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
PAGE = os.sysconf("SC_PAGE_SIZE")


def default_photo_dirs() -> list[str]:
    """The real photos of ../shared/eval (faces + plates), when present."""
    dirs = [EVAL / "faces" / "images", EVAL / "plates" / "images"]
    return [str(d) for d in dirs if d.is_dir()]


def collect_images(paths: Sequence[str], limit: int | None = None) -> list[Path]:
    """Image files under ``paths`` (files or folders, recursive), sorted, at most ``limit``."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
        elif p.is_file():
            found.append(p)
        else:
            raise SystemExit(f"benchmark: input {str(p)!r} does not exist")
    found = sorted({f.resolve() for f in found})
    if not found:
        raise SystemExit(f"benchmark: no images under {list(paths)}")
    return found[:limit] if limit else found


def flat_copy(files: Sequence[Path], dest: Path) -> Path:
    """Copy ``files`` into one flat folder (deface reads one folder level), names made unique."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, dest / f"{i:06d}_{f.name}")
    return dest


def veilset_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "veilset", *args]


def child_env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("latin-1")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


TICKS = os.sysconf("SC_CLK_TCK")


def tree_stats(root_pid: int) -> dict[int, tuple[int, float]]:
    """pid -> (RSS bytes, user + sys CPU seconds) for ``root_pid`` and all its live descendants."""
    kids = _children_map()
    todo, out = [root_pid], {}
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as fh:
                rss = int(fh.read().split()[1]) * PAGE
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read().decode("latin-1")
            fields = stat[stat.rindex(")") + 2 :].split()
            out[pid] = (rss, (int(fields[11]) + int(fields[12])) / TICKS)  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
        todo += kids.get(pid, [])
    return out


class TreeSampler:
    """Peaks of a process tree: summed RSS, largest single process, number of processes; and its CPU seconds
    (the last sampled user + sys time of every process that appeared, so up to one sampling interval is missed
    per process)."""

    def __init__(self) -> None:
        self.peak_total = self.peak_single = self.peak_processes = 0
        self._cpu: dict[int, float] = {}

    def sample(self, root_pid: int) -> None:
        stats = tree_stats(root_pid)
        rss = [r for r, _ in stats.values()]
        self.peak_total = max(self.peak_total, sum(rss))
        self.peak_single = max(self.peak_single, max(rss, default=0))
        self.peak_processes = max(self.peak_processes, len(rss))
        for pid, (_, cpu) in stats.items():
            self._cpu[pid] = max(cpu, self._cpu.get(pid, 0.0))

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu.values())


@dataclass
class Timed:
    cmd: list[str]
    returncode: int
    wall_s: float
    peak_tree_rss_mb: float  # peak of the summed RSS of the process tree (sampled)
    peak_processes: int
    cpu_s: float  # user + sys of the child and its waited-for descendants (os.times)
    tree_cpu_s: float  # user + sys summed over every process of the tree (sampled from /proc)
    load_before: float  # 1-minute load average before the run (noise indicator on a shared machine)
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")

    def check(self) -> "Timed":
        if self.returncode != 0:
            raise SystemExit(f"benchmark: {' '.join(self.cmd)} failed ({self.returncode}):\n"
                             f"{self.stdout[-2000:]}\n{self.stderr[-4000:]}")
        return self

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("stdout"), d.pop("stderr")
        d["cmd"] = " ".join(self.cmd)
        return d


def run_timed(cmd: Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None,
              sample_s: float = 0.1, sampler: TreeSampler | None = None) -> Timed:
    """Run ``cmd`` (in the repository root unless ``cwd``); wall time, CPU time and the peak RSS of its whole process tree (sampled every ``sample_s``)."""
    before = os.times()
    load = os.getloadavg()[0]
    sampler = sampler or TreeSampler()
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd or str(REPO), env=env or child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            sampler.sample(proc.pid)
            done.wait(sample_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    thread.join()
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return Timed(list(cmd), proc.returncode, wall, sampler.peak_total / 2**20, sampler.peak_processes, cpu,
                 sampler.cpu_s, load, out, err)


def build_seconds(stdout: str) -> float | None:
    """The build's own time from the ``veilset build`` summary line ``time 12.3 s, ...``."""
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("time ") and " s," in line:
            return float(line.split()[1])
    return None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "git_commit": commit,
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def write_json(path: str | None, result: dict[str, Any]) -> None:
    text = json.dumps(result, indent=1, sort_keys=True)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    print(text if not path else f"results: {path}")
