"""Input listing and reading: files, folders (recursive) and globs, local or any Beam filesystem (gs://, s3://...).

Inputs are read, never followed or trusted:

* **Input roots**: a folder argument is its own root, a file argument's root is its folder, a glob's root is the
  folder before its first wildcard. Each input is known by its **source name**: its path relative to its root
  (``2024/IMG 1.jpg``), prefixed ``N:`` with the argument's position when several are given. That name, never an
  absolute path of the build machine, is what rejects.jsonl, logs and errors show.
* **Symlinks** are followed only to a file or folder inside an input root (a folder link inside the root is not
  walked twice: its target is listed under its own name). A link out of the roots is a reject
  (``list:symlink_outside_root``) unless ``follow_symlinks`` (``--follow-symlinks``); dangling links and loops are
  rejects too (``list:dangling_symlink``, ``list:symlink_loop``).
* **Only regular files** are listed: FIFOs, sockets and devices are rejects (``list:fifo``, ``list:socket``,
  ``list:device``), never opened. Reading opens the listed file itself (``O_NOFOLLOW | O_NONBLOCK``, then checks
  that it is still the regular file that was listed: same device and inode), so a file swapped for a FIFO or a
  link after listing is a reject (``read:not_a_regular_file``, ``read:changed_during_build``), not a hang.
* **Names are bytes**: folders are walked with bytes paths, so any name (not UTF-8, a newline, 255 bytes) is
  listed and read; the source name shows it printable and unambiguous (``\\xff`` for a byte that is not UTF-8,
  ``\\n`` for a newline, ``\\\\`` for a backslash).
* **Reject details** go through ``safe_detail``: the source name replaces the file's path, other absolute paths
  and quoted bytes (which could be the file's content) are removed, control characters escaped, length capped.

Hidden files and folders (name starting with ``.``) are skipped, as is everything under the output folder.
"""
from __future__ import annotations

import errno
import glob
import os
import re
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator

from veilset.pipeline.records import Reject
from veilset.release import storage

LIST = "list"
MAX_DETAIL = 300


@dataclass(frozen=True)
class InputFile:
    """One listed input. ``path``: what to open (local: the resolved absolute path as bytes; remote: the URL): never
    published. ``source``: the name relative to its input root, shown everywhere. ``dev``/``ino``: the listed
    file's identity (local), checked again when it is opened."""

    path: bytes | str
    source: str
    dev: int = 0
    ino: int = 0


@dataclass(frozen=True)
class Listing:
    files: tuple[InputFile, ...]
    rejects: tuple[Reject, ...]  # stage "list": counted as inputs

    @property
    def count(self) -> int:
        return len(self.files) + len(self.rejects)


class InputError(Exception):
    """An input that cannot be read as a regular file; ``reason`` short snake_case, ``detail`` for humans."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ------------------------------------------------------------------------------------------------ names
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(text: str, backslash: bool) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "\\" and backslash:
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or code in (0x2028, 0x2029) \
                or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def display_name(raw: bytes | str) -> str:
    """A file name of any bytes as printable, valid UTF-8 text; different names give different texts (a byte
    that is not UTF-8 shows as ``\\xff``, a newline as ``\\n``, a backslash as ``\\\\``)."""
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    return _escape(text, backslash=True)


_BYTES_LITERAL = re.compile(r"""b(['"])(?:\\.|(?!\1).)*\1""")
_ABS_PATH = re.compile(r"""(?:(?<=^)|(?<=[\s'"(\[=:,]))(?:file://)?/[^\s'")\],:;]+""")


def safe_detail(text: object, item: InputFile | None = None, limit: int = MAX_DETAIL) -> str:
    """``text`` (an exception or a message) fit for rejects.jsonl: the input's path replaced by its source name, other
    absolute paths by ``<path>``, bytes literals (possibly the file's content) by ``<bytes>``, control characters
    escaped, at most ``limit`` characters."""
    if isinstance(text, BaseException):
        text = f"{type(text).__name__}: {text}"
    text = str(text)
    if item is not None:
        local = os.fsdecode(item.path) if isinstance(item.path, bytes) else item.path
        if local:
            text = text.replace(local, item.source)
    text = _BYTES_LITERAL.sub("<bytes>", text)
    text = _ABS_PATH.sub("<path>", text)
    text = _escape(text, backslash=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------------ listing
def _inside(path: bytes, roots: Iterable[bytes]) -> bool:
    return any(path == r or path.startswith(r.rstrip(b"/") + b"/") for r in roots)


def _kind(mode: int) -> str | None:
    """The reject reason for a file type that is not listed, None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISDIR(mode):
        return "folder"
    return "not_a_regular_file"


class _Lister:
    def __init__(self, roots: list[bytes], exclude: bytes | None, follow_symlinks: bool) -> None:
        self.roots = roots
        self.exclude = exclude
        self.follow = follow_symlinks
        self.files: list[InputFile] = []
        self.rejects: list[Reject] = []
        self._seen: set[bytes] = set()

    def _excluded(self, real: bytes) -> bool:
        return self.exclude is not None and _inside(real, [self.exclude])

    def _reject(self, source: str, reason: str, detail: str) -> None:
        self.rejects.append(Reject(source, LIST, reason, detail))

    def _add(self, real: bytes, st: os.stat_result, source: str) -> None:
        if not self._excluded(real):
            self.files.append(InputFile(real, source, st.st_dev, st.st_ino))

    def entry(self, path: bytes, source: str, *, ancestors: frozenset = frozenset(), walk_folders: bool) -> None:
        """One directory entry or argument (not yet followed). The same entry reached through two arguments is
        listed once; a link is an entry of its own (a duplicate of its target, if that is listed too)."""
        key = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))), os.path.basename(path))
        if key in self._seen or (self.exclude is not None and _inside(key, [self.exclude])):
            return
        self._seen.add(key)
        try:
            lst = os.lstat(path)
        except OSError as err:
            self._reject(source, "unreadable", safe_detail(f"{type(err).__name__}: {err.strerror or err}"))
            return
        if stat.S_ISLNK(lst.st_mode):
            self._symlink(path, source, ancestors, walk_folders)
            return
        if stat.S_ISDIR(lst.st_mode):
            real = os.path.realpath(path)
            if walk_folders and real not in self.roots:  # (an input root met in a followed folder: listed already)
                self.walk(real, source + "/", ancestors)
            return
        reason = _kind(lst.st_mode)
        if reason is not None:
            self._reject(source, reason, f"a {reason.replace('_', ' ')}, not a regular file: never opened")
            return
        self._add(os.path.realpath(path), lst, source)

    def _symlink(self, path: bytes, source: str, ancestors: frozenset, walk_folders: bool) -> None:
        try:
            st = os.stat(path)  # follows
        except OSError as err:
            if err.errno == errno.ELOOP:  # a chain of links that ends where it began
                self._reject(source, "symlink_loop", "the link resolves to itself (too many levels of links)")
            elif isinstance(err, FileNotFoundError):
                self._reject(source, "dangling_symlink", "the link points to nothing")
            else:
                self._reject(source, "unreadable", safe_detail(f"{type(err).__name__}: {err.strerror or err}"))
            return
        real = os.path.realpath(path)
        inside = _inside(real, self.roots)
        if stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) in ancestors:
            self._reject(source, "symlink_loop", "a link to a folder that contains it")
            return
        if not inside and not self.follow:
            what = "folder" if stat.S_ISDIR(st.st_mode) else "file"
            self._reject(source, "symlink_outside_root",
                         f"a link to a {what} outside the input folders: not followed (--follow-symlinks allows it)")
            return
        if stat.S_ISDIR(st.st_mode):
            if walk_folders and self.follow:
                self.walk(real, source + "/", ancestors)
            # not following: a folder link inside the roots is not walked (its files are listed under their own names)
            return
        reason = _kind(st.st_mode)
        if reason is not None:
            self._reject(source, reason, f"a link to a {reason.replace('_', ' ')}, not a regular file: never opened")
            return
        self._add(real, st, source)

    def walk(self, folder: bytes, base: str, ancestors: frozenset = frozenset()) -> None:
        """Every non-hidden entry under ``folder`` (a real path), named ``base + name``."""
        if self._excluded(folder):
            return
        try:
            st = os.stat(folder)
            ancestors = ancestors | {(st.st_dev, st.st_ino)}
            with os.scandir(folder) as it:
                names = sorted(e.name for e in it)
        except OSError as err:
            self._reject(base or ".", "unreadable",
                         safe_detail(f"folder not listed: {type(err).__name__}: {err.strerror}"))
            return
        for name in names:
            if name.startswith(b"."):
                continue
            self.entry(os.path.join(folder, name), base + display_name(name), ancestors=ancestors, walk_folders=True)


def _glob_root(pattern: str) -> str:
    """The folder before the first wildcard of ``pattern``."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    root = os.sep.join(fixed)
    return root if root else (os.sep if pattern.startswith(os.sep) else ".")


def _rel(path: bytes, root: bytes) -> bytes:
    return os.path.relpath(path, root) if path != root else os.path.basename(path)


def _remote(pattern: str, prefix: str) -> list[InputFile]:
    # A folder is matched recursively; a glob as given.
    magic = glob.has_magic(pattern)
    queries = [pattern] if magic else [pattern, pattern.rstrip("/") + "/**"]
    found = storage.match(queries)
    if not found:
        raise ValueError(f"input not found: {pattern!r}")
    root = (pattern.split("*")[0].split("?")[0].split("[")[0].rsplit("/", 1)[0] if magic
            else pattern.rstrip("/"))
    out = []
    for path in found:
        rel = path[len(root):].lstrip("/") if path.startswith(root) else path.rsplit("/", 1)[-1]
        out.append(InputFile(path, prefix + display_name(rel or path.rsplit("/", 1)[-1])))
    return out


def list_inputs(patterns: Iterable[str], exclude_under: str | None = None,
                follow_symlinks: bool = False) -> Listing:
    """Every input file (in argument order, then by name) and every listing reject; nothing under
    ``exclude_under`` (the output). ValueError for an argument that matches nothing."""
    patterns = list(patterns)
    local = [p for p in patterns if not storage.is_remote(p)]
    roots: list[bytes] = []
    for p in local:
        if os.path.isdir(p):
            roots.append(os.path.realpath(os.fsencode(p)))
        elif glob.has_magic(p) and not os.path.lexists(p):
            roots.append(os.path.realpath(os.fsencode(_glob_root(p))))
        else:
            roots.append(os.path.realpath(os.path.dirname(os.path.abspath(os.fsencode(p)))))
    exclude = None
    if exclude_under and not storage.is_remote(exclude_under):
        exclude = os.path.realpath(os.fsencode(exclude_under))
    lister = _Lister(roots, exclude, follow_symlinks)
    remote: list[InputFile] = []
    for k, pattern in enumerate(patterns):
        prefix = f"{k + 1}:" if len(patterns) > 1 else ""
        if storage.is_remote(pattern):
            remote.extend(_remote(pattern, prefix))
            continue
        raw = os.fsencode(pattern)
        if os.path.isdir(raw):
            lister.walk(os.path.realpath(raw), prefix)
        elif os.path.lexists(raw):  # a file, link or special file named explicitly
            lister.entry(raw, prefix + display_name(os.path.basename(raw)), walk_folders=False)
        elif glob.has_magic(pattern):
            root = os.fsencode(_glob_root(pattern))
            for match in sorted(glob.glob(raw, recursive=True)):  # no match: "no input files" below if none has any
                if os.path.isdir(match) and not os.path.islink(match):
                    continue  # a glob selects files
                if any(part.startswith(b".") for part in os.path.relpath(match, root).split(b"/")):
                    continue
                lister.entry(match, prefix + display_name(_rel(os.path.abspath(match), os.path.abspath(root))),
                             walk_folders=False)
        else:
            raise ValueError(f"input not found: {pattern!r}")
    files = tuple(lister.files) + tuple(remote)
    if not files and not lister.rejects:
        raise ValueError(f"no input files in {patterns!r}")
    return Listing(files, tuple(lister.rejects))


def expand_inputs(patterns: Iterable[str], exclude_under: str | None = None) -> list[str]:
    """The local paths (or URLs) of every listed input file, sorted; listing rejects are left out."""
    listing = list_inputs(patterns, exclude_under)
    if not listing.files:
        raise ValueError(f"no input files in {list(patterns)!r}")
    return sorted(os.fsdecode(f.path) if isinstance(f.path, bytes) else f.path for f in listing.files)


# ------------------------------------------------------------------------------------------------ reading
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) \
    | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def read_input(item: InputFile, limit: int) -> bytes:
    """The bytes of a listed input (at most ``limit``: OverflowError beyond). A local input is opened without
    following a link and without blocking, and must still be the regular file that was listed (InputError)."""
    if isinstance(item.path, str):
        return _read_remote(item.path, limit)
    try:
        fd = os.open(item.path, _OPEN_FLAGS)
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW: the listed file was replaced by a link
            raise InputError("changed_during_build", "replaced by a link after listing") from None
        raise InputError("unreadable", f"{type(err).__name__}: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError("not_a_regular_file", f"a {_kind(st.st_mode)} now: never read")
        if item.ino and (st.st_dev, st.st_ino) != (item.dev, item.ino):
            raise InputError("changed_during_build", "not the file that was listed")
        if st.st_size > limit:
            raise OverflowError(f"larger than {limit} bytes")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > limit:
        raise OverflowError(f"larger than {limit} bytes")
    return b"".join(chunks)


def _read_remote(path: str, limit: int) -> bytes:
    with storage.open_read(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OverflowError(f"larger than {limit} bytes")
    return data

