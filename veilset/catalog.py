"""``veilset detectors``: what is registered (detectors, mask generators, audit checks), each one's options with
their defaults, and whether it can run here (and if not, why). Plugins of other installed distributions are
listed too, as are those that failed to load."""
from __future__ import annotations

import argparse
import json
from typing import Any

from veilset.audit.checks import CHECKS
from veilset.detectors.registry import DETECTORS
from veilset.plugins import Arg, Plugin, Registry
from veilset.segmentation.registry import MASKS

# (registry, JSON key, heading: where the names are used). Audit checks take no spec: their options are flags.
SECTIONS: tuple[tuple[Registry, str, str], ...] = (
    (DETECTORS, "detectors", "veilset build --face-detector / --plate-detector NAME[:key=value,...]"),
    (MASKS, "mask_generators", "veilset build --masks NAME[:POSITIONAL][:key=value,...]"),
    (CHECKS, "audit_checks", "veilset audit; their options are its flags"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the catalog as JSON")


def _value(value: Any) -> Any:
    """A default as the spec string would spell it."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def arg_dict(arg: Arg) -> dict[str, Any]:
    return {"name": arg.name, "type": arg.describe(), "default": arg.default if arg.default is None
            or isinstance(arg.default, (bool, int, float, str)) else list(arg.default), "help": arg.help}


def plugin_dict(plugin: Plugin, flags: bool = False) -> dict[str, Any]:
    """``flags``: the options are command-line flags (``--sample``), not ``key=value`` items of a spec."""
    state = plugin.availability()
    args = [dict(arg_dict(a), name="--" + a.name.replace("_", "-")) if flags else arg_dict(a) for a in plugin.args]
    return {"name": plugin.name, "usage": plugin.name if flags else plugin.usage(), "tags": list(plugin.tags),
            "summary": plugin.summary, "available": state.ok, "reason": state.reason, "args": args}


def catalog() -> dict[str, Any]:
    out: dict[str, Any] = {key: [plugin_dict(p, flags=registry is CHECKS) for p in registry.plugins()]
                           for registry, key, _ in SECTIONS}
    out["problems"] = {f"{registry.kind} {name}": why for registry, _, _ in SECTIONS
                       for name, why in registry.problems().items()}
    return out


def format_plugin(plugin: dict[str, Any]) -> list[str]:
    tags = f" [{', '.join(plugin['tags'])}]" if plugin["tags"] else ""
    state = "available" if plugin["available"] else "NOT available"
    lines = [f"  {plugin['usage']}{tags}: {state}" + (f" ({plugin['reason']})" if plugin["reason"] else "")]
    if plugin["summary"]:
        lines.append(f"      {plugin['summary']}")
    for arg in plugin["args"]:
        sep = " " if arg["name"].startswith("--") else "="
        lines.append(f"      {arg['name'] + sep + str(_value(arg['default'])):<32} {arg['type']:<22} {arg['help']}")
    return lines


def format_catalog(cat: dict[str, Any]) -> str:
    lines: list[str] = []
    for registry, key, heading in SECTIONS:
        lines.append(f"{registry.kind}s ({heading}):")
        for plugin in cat[key]:
            lines += format_plugin(plugin)
        lines.append("")
    if cat["problems"]:
        lines.append("not loaded:")
        lines += [f"  {what}: {why}" for what, why in cat["problems"].items()]
    return "\n".join(lines).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    cat = catalog()
    print(json.dumps(cat, indent=1) if args.json else format_catalog(cat), end="\n" if args.json else "")
    return 0
