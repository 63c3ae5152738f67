"""Run the scale-and-speed benchmarks in sequence and print one Markdown summary table.

    python benchmarks/run_all.py [--out /tmp/veilset-bench] [--quick] [--with-others]

Steps (each writes OUT/NAME.json and OUT/NAME.log): vs_deface with the library default face detector (int8, box
voting) and with the shipped fp32 weights and NMS (the previous default), throughput (--workers 1,2),
overhead, memory (1,000 vs 10,000 images). ``--with-others`` also runs benchmarks/takedown_apply.py and
benchmarks/amg.py (other issues' benchmarks) and adds the last JSON line of their output. ``--quick`` uses fewer
photos and repeats (a smoke run, not for publishing). The photos default to ../shared/eval; pass --images to
use another folder. The summary goes to OUT/summary.md and stdout; benchmarks/RESULTS.md is written by hand
from such summaries (with the load average of each run: the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks import common  # noqa: E402

INT8_SPEC = "centerface:precision=int8"  # the option compared with the default (fp32)


def steps(out: Path, images: list[str], quick: bool, others: bool) -> list[tuple[str, list[str]]]:
    py = [sys.executable]
    b = str(_HERE)
    limit = ["--limit", "40"] if quick else []
    rep = ["--repeat", "1"] if quick else ["--repeat", "3"]
    s = [
        ("vs_deface_default", py + [f"{b}/vs_deface.py", *images, *limit, *rep, "--json", str(out / "vs_deface_default.json")]),
        ("vs_deface_int8", py + [f"{b}/vs_deface.py", *images, *limit, *rep, "--face-detector", INT8_SPEC,
                                 "--json", str(out / "vs_deface_int8.json")]),
        ("throughput", py + [f"{b}/throughput.py", *images, *limit, "--repeat", "1" if quick else "2",
                             "--json", str(out / "throughput.json")]),
        ("overhead", py + [f"{b}/overhead.py", *images, *limit, "--repeat", "1" if quick else "2",
                           "--json", str(out / "overhead.json")]),
        ("memory", py + [f"{b}/memory.py", "--sizes", "200,1000" if quick else "1000,10000",
                         "--json", str(out / "memory.json")]),
    ]
    if others:
        s += [("takedown_apply", py + [f"{b}/takedown_apply.py", "--images", "1000" if quick else "5000"]),
              ("amg", py + [f"{b}/amg.py"])]
    return s


def _load(out: Path, name: str) -> dict[str, Any] | None:
    p = out / f"{name}.json"
    if p.is_file():
        return json.loads(p.read_text())
    log = out / f"{name}.log"
    if log.is_file():  # other benchmarks print a JSON object as their last line
        for line in reversed(log.read_text().splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    return None
    return None


def _loads(r: dict[str, Any], tool: str) -> list[float]:
    return [round(x, 1) for x in r.get(tool, {}).get("load_before", [])]


def render(out: Path) -> str:
    rows = ["| benchmark | result | notes |", "|---|---|---|"]
    for name in ("vs_deface_default", "vs_deface_int8"):
        r = _load(out, name)
        if not r:
            continue
        rec = r.get("recall", {})
        d, v = rec.get("deface", {}), rec.get("veilset", {})
        timing = (f"deface {r['deface']['median_wall_s']} s, veilset {r['veilset']['median_wall_s']} s on "
                  f"{r['photos']} photos: **{r['speedup_deface_over_veilset']}x**") if "deface" in r else "not timed"
        recall = (f"face recall deface {d.get('tp')}/{d.get('boxes')}, veilset {v.get('tp')}/{v.get('boxes')} "
                  f"(`{rec.get('veilset_spec')}`)") if rec else ""
        rows.append(f"| {name} | {timing}; {recall} | load before runs "
                    f"{_loads(r, 'deface')} / {_loads(r, 'veilset')} |")
    t = _load(out, "throughput")
    if t:
        cells = "; ".join(f"{x['workers']} worker(s): {x['images_per_s']} img/s (eff. {x['scaling_efficiency']})"
                          for x in t["runs"])
        rows.append(f"| throughput ({t['photos']} photos, masks none) | {cells} | load {t['runs'][0]['load_before']} |")
    o = _load(out, "overhead")
    if o:
        rows.append(f"| overhead (workers 1) | floors {o['floors']['sum_wall_ms_per_image']} ms/img, pipeline "
                    f"{o['pipeline_process_ms_per_image_runs']} ms/img: overhead {o['overhead_process']:.0%} "
                    f"(process), {o['overhead_build']:.0%} (build) | floors {o['floors']['wall_ms_per_image']} |")
    m = _load(out, "memory")
    if m:
        cells = "; ".join(f"{x['images']} images: {x['peak_tree_rss_mb']} MB" for x in m["runs"])
        rows.append(f"| memory (peak RSS, process tree, {m['workers']} workers) | {cells} | growth "
                    f"{m['growth_largest_vs_smallest']:.0%} |")
    for name in ("takedown_apply", "amg"):
        r = _load(out, name)
        if r:
            rows.append(f"| {name} | `{json.dumps(r, sort_keys=True)[:300]}` | |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/veilset-bench")
    ap.add_argument("--images", nargs="*", default=None, help="photos or folders (default: ../shared/eval)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--with-others", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="run only these steps (names as in the summary)")
    ap.add_argument("--render-only", action="store_true", help="just summarise the JSON already in --out")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        images = [str(Path(p).resolve()) for p in (args.images or common.default_photo_dirs())]
        for name, cmd in steps(out, images, args.quick, args.with_others):
            if args.only and name not in args.only:
                continue
            t0 = time.perf_counter()
            print(f"== {name}: {' '.join(cmd)}", flush=True)
            with open(out / f"{name}.log", "w") as log:
                rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(_HERE.parent),
                                     env=common.child_env())
            print(f"   exit {rc} after {time.perf_counter() - t0:.0f} s (log: {out / (name + '.log')})", flush=True)
    summary = render(out)
    (out / "summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
