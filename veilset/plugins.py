"""One plugin mechanism for veilset's named parts: detectors, mask generators and audit checks.

A leaf module: it imports no other veilset module, so every room can use it (``tests/test_house.py``).

    Arg           one option: name, kind, default, range or choices, help; ``parse`` converts and validates it
    Args          a plugin's options in order; ``parse`` fills defaults, rejects unknown names
    Availability  can the plugin run here, and if not, why (``ok``, ``reason``)
    Plugin        kind, name, builder, args, availability check, summary (+ positional usage, tags)
    Registry      one per kind: the built-in plugins (``module:attr`` references, imported on first use) plus
                  those other distributions declare under the registry's entry-point group

A third-party distribution adds one with an entry point whose value is a ``Plugin``::

    [project.entry-points."veilset.detectors"]     # or veilset.masks, veilset.audit_checks
    my_faces = "my_package.faces:PLUGIN"

Option values arrive as strings (``centerface:threshold=0.3``) or as Python values (a direct constructor call);
``Arg.parse`` accepts both and is idempotent, so a plugin's constructor may parse again what the registry
parsed. Every error is a ``ValueError`` that names the option and the bad value.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Iterator, Mapping

KINDS = ("float", "int", "bool", "choice", "path", "text", "floats")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")



class MissingFileError(FileNotFoundError, ValueError):
    """A file the user named (weights, checkpoint) is not there: a ``FileNotFoundError`` to callers, and a
    ``ValueError`` (a user mistake: one line, exit 2) to the command line."""


class MissingExtraError(ImportError, ValueError):
    """A plugin's package is not installed (an extra: ``pip install 'veilset[sam]'``): an ``ImportError`` to
    callers, and a ``ValueError`` (a user mistake: one line naming the install command, exit 2) to the CLI."""

# ------------------------------------------------------------------------------------------ conversion
def _range_text(lo: float | None, hi: float | None, gt: float | None) -> str:
    if gt is not None:
        return f"in ({gt}, {hi}]" if hi is not None else f"> {gt}"
    if lo is not None and hi is not None:
        return f"in [{lo}, {hi}]"
    return f">= {lo}" if lo is not None else (f"<= {hi}" if hi is not None else "finite")


def _outside(out: float, lo: float | None, hi: float | None, gt: float | None) -> bool:
    return ((lo is not None and out < lo) or (hi is not None and out > hi)
            or (gt is not None and out <= gt))


def parse_float(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                gt: float | None = None) -> float:
    """``value`` (str or number) as a finite float in the range; the bad value is in the message."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out) or _outside(out, lo, hi, gt):
        rng = _range_text(lo, hi, gt)
        raise ValueError(f"{name} must be {'a ' + rng + ' number' if rng == 'finite' else rng}, got {value!r}")
    return out


def parse_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    try:
        out = int(str(value).strip()) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or _outside(out, lo, hi, None):
        raise ValueError(f"{name} must be an integer {_range_text(lo, hi, None)}, got {value!r}")
    return out


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be true/false, got {value!r}")


def parse_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    text = str(value).strip()
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return text


def parse_path(name: str, value: Any) -> str:
    """An existing local file (``~`` expanded)."""
    path = os.path.expanduser(str(value))
    if not os.path.isfile(path):
        raise ValueError(f"{name}: no such file {value!r}")
    return path


def parse_floats(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                 gt: float | None = None) -> tuple[float, ...]:
    """A comma-separated list (or a sequence) of numbers, each in the range."""
    items = [v for v in value.replace(";", ",").split(",") if v.strip()] if isinstance(value, str) else list(value)
    if not items:
        raise ValueError(f"{name} must be a comma-separated list of numbers, got {value!r}")
    return tuple(parse_float(name, v, lo, hi, gt) for v in items)


# ------------------------------------------------------------------------------------------ arguments
@dataclass(frozen=True)
class Arg:
    """One option of a plugin. ``default`` None means "not set" (the plugin decides, e.g. from a preset);
    ``convert(value)`` replaces the kind's own conversion where a rule is more than a range (device names)."""

    name: str
    kind: str
    default: Any = None
    help: str = ""
    lo: float | None = None
    hi: float | None = None
    gt: float | None = None  # exclusive lower bound
    choices: tuple[str, ...] = ()
    convert: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"option name must match {_NAME.pattern}, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"option {self.name}: a choice needs choices")

    def parse(self, value: Any) -> Any:
        """``value`` converted and checked; None stays None (unset)."""
        if value is None:
            return None
        if self.convert is not None:
            return self.convert(value)
        if self.kind == "float":
            return parse_float(self.name, value, self.lo, self.hi, self.gt)
        if self.kind == "int":
            return parse_int(self.name, value, self.lo, self.hi)
        if self.kind == "bool":
            return parse_bool(self.name, value)
        if self.kind == "choice":
            return parse_choice(self.name, value, self.choices)
        if self.kind == "path":
            return parse_path(self.name, value)
        if self.kind == "floats":
            return parse_floats(self.name, value, self.lo, self.hi, self.gt)
        return str(value).strip()

    def describe(self) -> str:
        """``float in [0, 1]``, ``one of default, crowd``, ``path``: the type and what it accepts."""
        if self.kind == "choice":
            return "one of " + "|".join(self.choices)
        if self.kind in ("float", "int", "floats") and (self.lo, self.hi, self.gt) != (None, None, None):
            return f"{self.kind} {_range_text(self.lo, self.hi, self.gt)}"
        return self.kind


class Args:
    """A plugin's options, in the order they are listed."""

    def __init__(self, *items: Arg) -> None:
        names = [a.name for a in items]
        if len(set(names)) != len(names):
            raise ValueError(f"options listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        self._items = tuple(items)
        self._by_name = {a.name: a for a in items}

    def __iter__(self) -> Iterator[Arg]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> Arg:
        return self._by_name[name]

    def __repr__(self) -> str:
        return f"Args({', '.join(self.names)})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def check_names(self, options: Mapping[str, Any], who: str) -> None:
        unknown = sorted(set(options) - set(self._by_name))
        if unknown:
            accepted = ", ".join(self.names) or "none"
            raise ValueError(f"{who}: unknown option(s) {', '.join(unknown)}; accepted: {accepted}")

    def parse_given(self, options: Mapping[str, Any], who: str) -> dict[str, Any]:
        """Only the options given, converted (unknown names are an error)."""
        self.check_names(options, who)
        return {k: self._by_name[k].parse(v) for k, v in options.items()}

    def parse(self, options: Mapping[str, Any], who: str) -> dict[str, Any]:
        """Every option: the given ones converted, the others at their (converted) default."""
        given = self.parse_given(options, who)
        return {a.name: given[a.name] if a.name in given else a.parse(a.default) for a in self._items}


# ------------------------------------------------------------------------------------------ availability
@dataclass(frozen=True)
class Availability:
    """``ok``: the plugin can run here; ``reason``: why not, or (when ok) what it still needs from the user."""

    ok: bool
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return "available" + (f" ({self.reason})" if self.reason else "")
        return f"NOT available: {self.reason}"


def available(note: str = "") -> Availability:
    return Availability(True, note)


def unavailable(reason: str) -> Availability:
    return Availability(False, reason)


def missing_modules(*modules: str) -> list[str]:
    """Top-level modules in ``modules`` that cannot be imported here (looked up, not imported)."""
    out = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(module)
    return out


def needs_modules(*modules: str, hint: str = "", note: str = "") -> Availability:
    """Available when every module is installed; else which are missing and how to install them."""
    missing = missing_modules(*modules)
    if missing:
        return unavailable(f"{', '.join(missing)} not installed" + (f" (install: {hint})" if hint else ""))
    return available(note)


# ------------------------------------------------------------------------------------------ plugins
def _always() -> Availability:
    return available()


@dataclass(frozen=True)
class Plugin:
    """One named part. ``builder(**options)`` (after ``positional`` when the plugin declares one) makes it;
    ``check()`` says whether it can run here. ``tags`` classify it (a detector's label)."""

    kind: str
    name: str
    builder: Callable[..., Any] = field(compare=False, repr=False)
    args: Args = field(default_factory=Args, compare=False)
    check: Callable[[], Availability] = field(default=_always, compare=False, repr=False)
    summary: str = ""
    positional: str = ""  # usage of a positional part (``MODEL_TYPE:CHECKPOINT``); "" = none taken
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"{self.kind} name must match {_NAME.pattern}, got {self.name!r}")
        if not callable(self.builder):
            raise ValueError(f"{self.kind} {self.name!r}: builder must be callable, got {self.builder!r}")

    def availability(self) -> Availability:
        try:
            return self.check()
        except Exception as err:  # a broken check must not break the listing
            return unavailable(f"availability check failed: {type(err).__name__}: {err}")

    def usage(self) -> str:
        out = self.name + (f":{self.positional}" if self.positional else "")
        return out + ("[:key=value,...]" if len(self.args) else "")


class Registry:
    """The plugins of one kind: ``builtins`` (name -> ``"module:attr"``, imported on first use) and the
    entry points of ``group`` from every installed distribution (a built-in name cannot be taken over)."""

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str]) -> None:
        self.kind, self.group = kind, group
        self._refs: dict[str, tuple[str, str]] = {n: (ref, "veilset") for n, ref in builtins.items()}
        self._builtin = tuple(builtins)
        self._loaded: dict[str, Plugin] = {}
        self._problems: dict[str, str] = {}
        self._scanned = False

    # -- discovery
    @property
    def builtins(self) -> dict[str, str]:
        """The built-in plugins: name -> ``"module:attr"``."""
        return {name: self._refs[name][0] for name in self._builtin}

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in sorted(metadata.entry_points(group=self.group), key=lambda e: e.name):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            if ep.name in self._refs or ep.name in self._loaded:
                self._problems[f"{ep.name} ({dist})"] = (f"ignored: {self.kind} {ep.name!r} is already "
                                                          f"provided by {self._refs.get(ep.name, ('', 'veilset'))[1]}")
                continue
            self._refs[ep.name] = (ep.value, dist)

    def names(self) -> list[str]:
        """Built-in names in their order, then the others sorted (nothing is imported)."""
        self._scan()
        others = sorted((set(self._refs) | set(self._loaded)) - set(self._builtin))
        return list(self._builtin) + others

    def problems(self) -> dict[str, str]:
        """Plugins that could not be loaded (or were ignored), with the reason."""
        self._scan()
        return dict(self._problems)

    def _load(self, name: str) -> Plugin:
        ref, dist = self._refs[name]
        module_name, _, attr = ref.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except Exception as err:
            raise ValueError(f"{self.kind} {name!r} (from {dist}: {ref}) cannot be loaded: "
                             f"{type(err).__name__}: {err}") from err
        if not isinstance(obj, Plugin) or obj.name != name or obj.kind != self.kind:
            raise ValueError(f"{self.kind} {name!r} (from {dist}: {ref}) is not a veilset.plugins.Plugin of kind "
                             f"{self.kind!r} named {name!r}: got {obj!r}")
        return obj

    def get(self, name: str) -> Plugin:
        """The plugin called ``name``; an unknown name is a ValueError listing the known ones."""
        if name in self._loaded:
            return self._loaded[name]
        self._scan()
        if name not in self._refs:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        self._loaded[name] = self._load(name)
        return self._loaded[name]

    def plugins(self) -> list[Plugin]:
        """Every plugin that loads, in ``names()`` order; the others are recorded in ``problems()``."""
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except ValueError as err:
                self._problems[name] = str(err)
        return out

    # -- changes
    def add(self, plugin: Plugin) -> Plugin:
        """Register ``plugin`` in this process (tests, notebooks); a taken name is an error."""
        if plugin.kind != self.kind:
            raise ValueError(f"a {plugin.kind} cannot be registered as a {self.kind}")
        self._scan()
        if plugin.name in self._refs or plugin.name in self._loaded:
            raise ValueError(f"{self.kind} {plugin.name!r} is already registered")
        self._loaded[plugin.name] = plugin
        return plugin

    def remove(self, name: str) -> None:
        """Undo ``add`` (built-ins and entry points stay)."""
        if name in self._refs:
            raise ValueError(f"{self.kind} {name!r} is not one added with add()")
        self._loaded.pop(name, None)

    # -- use
    def build(self, name: str, options: Mapping[str, Any] | None = None, positional: str = "") -> Any:
        """``builder([positional,] **options)`` with the options checked and converted by the plugin's args."""
        plugin = self.get(name)
        if positional and not plugin.positional:
            raise ValueError(f"{name} takes only key=value options, got {positional!r}")
        values = plugin.args.parse_given(dict(options or {}), name)
        return plugin.builder(positional, **values) if plugin.positional else plugin.builder(**values)
