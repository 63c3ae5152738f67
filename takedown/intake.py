"""Intake: untrusted e-mail bytes -> a ``NewRequest`` for the ledger (parsed, or quarantined with a reason).

Every message is hostile until proven otherwise: size is checked before parsing, MIME depth and part count are
bounded while walking, every text part is decoded defensively (unknown/wrong charsets fall back to a lossy
decode), IDs are found by a pattern and then validated strictly with ``release.ids.is_valid_image_id`` and are
never used to build paths or SQL. Nothing raises out of ``parse_message``: anything unexpected is a quarantine.

Sources: single .eml files or folders of them, Maildir, mbox (this module) and IMAP (``takedown.imap``).
"""
from __future__ import annotations

import email
import email.policy
import hashlib
import html
import html.parser
import json
import logging
import mailbox
import os
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from typing import Callable, Iterator, Sequence

from veilset.release import fingerprint, ids, index, manifest
from veilset.takedown import authenticity
from veilset.takedown.ledger import NewRequest
from veilset.takedown.policy import TrustPolicy

log = logging.getLogger(__name__)

DKIM_RESULTS = ("pass", "fail", "none", "temperror", "permerror")


@dataclass(frozen=True)
class IntakeLimits:
    """Per-message limits; exceeding any one quarantines the whole message (never half-processed)."""

    max_message_bytes: int = 10 * 1024 * 1024
    max_mime_depth: int = 8
    max_parts: int = 200
    max_ids_per_message: int = 1000
    max_text_chars: int = 5_000_000  # decoded text scanned for IDs, over all parts

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_mime_depth", "max_parts", "max_ids_per_message", "max_text_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class IntakePolicy:
    limits: IntakeLimits = field(default_factory=IntakeLimits)
    id_pattern: re.Pattern[str] = ids.ID_PATTERN
    require_dkim: bool = False  # quarantine messages that are not verified (aligned passing DKIM)
    trust: TrustPolicy = field(default_factory=TrustPolicy)  # who may remove what automatically (takedown.policy)
    keep_raw_bytes: int = 1024 * 1024  # raw message stored in the ledger up to this size (quarantine evidence)
    dkim_dnsfunc: Callable[..., bytes] | None = None  # tests inject a resolver; None = dkimpy's own DNS lookup

    def __post_init__(self) -> None:
        if not isinstance(self.id_pattern, re.Pattern):
            raise ValueError(f"id_pattern must be a compiled regular expression, got {self.id_pattern!r}")
        if not isinstance(self.trust, TrustPolicy):
            raise ValueError(f"trust must be a TrustPolicy, got {self.trust!r}")
        if not isinstance(self.keep_raw_bytes, int) or self.keep_raw_bytes < 0:
            raise ValueError(f"keep_raw_bytes must be >= 0, got {self.keep_raw_bytes!r}")
        if self.require_dkim and self.dkim_dnsfunc is None and not dns_resolver_available():
            raise ValueError("--require-dkim: dkimpy needs a DNS resolver library to fetch DKIM keys: "
                             "pip install dnspython")


def dns_resolver_available() -> bool:
    """dkimpy looks keys up with dnspython (or pydns); without either every signature is a temperror."""
    import importlib.util

    try:
        return importlib.util.find_spec("dns.resolver") is not None or importlib.util.find_spec("DNS") is not None
    except (ImportError, ValueError):
        return False


class Quarantine(Exception):
    """Raised inside parsing; becomes a quarantined request with ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# -- small defensive helpers -----------------------------------------------------------------------------------

_CTRL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value: str, limit: int = 998) -> str:
    """Header value safe to store/log: no control characters (CR/LF), bounded length."""
    return _CTRL.sub(" ", value)[:limit].strip()


def _raw_header(msg: Message, name: str) -> list[str]:
    """Unparsed header values (``raw_items`` does not run the header parser, which can raise on hostile input)."""
    try:
        return [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]
    except Exception:
        return []


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
        text = None if value is None else str(value)
    except Exception as err:  # malformed header that policy.default cannot parse
        log.debug("header %s unparseable: %s", name, err)
        raw = _raw_header(msg, name)
        text = raw[0] if raw else None
    return "" if text is None else _clean(text)


def _all_headers(msg: Message, name: str) -> list[str]:
    try:
        return [_clean(str(v), 4000) for v in msg.get_all(name, failobj=[])]
    except Exception:
        return [_clean(v, 4000) for v in _raw_header(msg, name)]


_ADDR = re.compile(r"^[^@\s<>\"',;:()\[\]\\]{1,64}@[A-Za-z0-9.-]{1,253}$")


def sender_of(msg: Message) -> str:
    """Lower-cased bare address of From (or Sender/Return-Path); '' when none is a plausible address."""
    for name in ("From", "Sender", "Return-Path"):
        try:
            values = [str(v) for v in msg.get_all(name, failobj=[])]
            pairs = getaddresses(values)
        except Exception:
            try:
                pairs = getaddresses(_raw_header(msg, name))
            except Exception:
                continue
        for _, addr in pairs:
            addr = addr.strip().lower()
            if _ADDR.match(addr):
                return addr
    return ""


class _TextExtractor(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parts.append(" ")
        for _, value in attrs:  # IDs inside links, e.g. <a href="...?id=sa_...">
            if value:
                self.parts.append(" " + value + " ")


def html_to_text(markup: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    return "".join(parser.parts)


def _decode_text(part: Message) -> str:
    """Decoded text of a leaf part; wrong/unknown charsets and broken transfer encodings degrade, never raise."""
    try:
        payload = part.get_payload(decode=True)  # bytes; base64 errors are tolerated by the email package
    except Exception:
        payload = None
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = None
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return payload.decode(cs)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return payload.decode("latin-1")  # every byte maps: lossy but IDs are ASCII


_TEXTUAL_ATTACH = re.compile(r"\.(txt|csv|tsv|text|list|json|md|log)$", re.I)


def _is_textual(part: Message) -> tuple[bool, bool]:
    """(scan it, it is HTML)."""
    ctype = part.get_content_type()
    if ctype == "text/html":
        return True, True
    if ctype.startswith("text/"):
        return True, False
    if ctype in ("application/csv", "application/json", "application/x-csv"):
        return True, False
    try:
        filename = part.get_filename() or ""
    except Exception:
        filename = ""
    if ctype == "application/octet-stream" and _TEXTUAL_ATTACH.search(filename):
        return True, False
    return False, False


def _walk_bounded(msg: Message, limits: IntakeLimits) -> Iterator[Message]:
    """Depth-first leaves of the MIME tree (including forwarded message/rfc822), enforcing depth and count."""
    count = 0
    stack: list[tuple[Message, int]] = [(msg, 1)]
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise Quarantine("too_many_parts", f"more than {limits.max_parts} MIME parts")
        if depth > limits.max_mime_depth:
            raise Quarantine("mime_too_deep", f"MIME nesting deeper than {limits.max_mime_depth}")
        if part.is_multipart():
            children = part.get_payload()
            if not isinstance(children, list):
                raise Quarantine("malformed_mime", "multipart without a part list")
            stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
        else:
            yield part


def extract_ids(msg: Message, policy: IntakePolicy) -> tuple[str, ...]:
    """Valid image IDs in all textual parts (bodies, quoted replies, forwards, text attachments) and Subject.

    IDs are matched case-insensitively and lower-cased, then validated strictly; order of first appearance.
    """
    pattern = re.compile(policy.id_pattern.pattern, policy.id_pattern.flags | re.IGNORECASE)
    limits = policy.limits
    seen: dict[str, None] = {}
    budget = limits.max_text_chars

    def scan(text: str) -> None:
        nonlocal budget
        budget -= len(text)
        if budget < 0:
            raise Quarantine("too_much_text", f"more than {limits.max_text_chars} characters of text")
        for m in pattern.finditer(text):
            candidate = m.group(0).lower()
            if ids.is_valid_image_id(candidate) and candidate not in seen:
                seen[candidate] = None
                if len(seen) > limits.max_ids_per_message:
                    raise Quarantine("too_many_ids", f"more than {limits.max_ids_per_message} IDs in one message")

    scan(_header(msg, "Subject"))
    for part in _walk_bounded(msg, limits):
        try:
            filename = part.get_filename() or ""
        except Exception:
            filename = ""
        scan(filename)  # e.g. the published JPEG attached as sa_<id>.jpg
        textual, is_html = _is_textual(part)
        if not textual:
            continue
        text = _decode_text(part)
        scan(html_to_text(text) if is_html else text)
    return tuple(seen)


# -- DKIM -------------------------------------------------------------------------------------------------------

def check_dkim(raw: bytes, msg: Message, dnsfunc: Callable[..., bytes] | None = None) -> tuple[str, str]:
    """(result, signing domain) of the first (topmost) DKIM signature: ``none`` when unsigned, else ``pass``,
    ``fail``, ``permerror`` or ``temperror`` (``takedown.authenticity.verify_dkim``)."""
    if not msg.get_all("DKIM-Signature"):
        return "none", ""
    results = authenticity.verify_dkim(raw, dnsfunc)
    return (results[0].result, results[0].domain) if results else ("permerror", "")


# -- one message ------------------------------------------------------------------------------------------------

def synthetic_message_id(raw_sha256: str) -> str:
    return f"<veilset-{raw_sha256[:40]}@no-message-id.invalid>"


def parse_message(raw: bytes, *, source: str, policy: IntakePolicy,
                  known_ids: frozenset[str] | set[str] | None = None, size: int | None = None) -> NewRequest:
    """Turn one message's bytes into a ``NewRequest`` (state ``received`` or ``quarantined``). Never raises.

    ``raw`` may be a truncated head when the message was over the size limit (``size`` then gives the real size);
    ``known_ids`` (the release's IDs) marks IDs it lacks as unknown.
    """
    total = len(raw) if size is None else size
    raw_sha = hashlib.sha256(raw).hexdigest()
    keep = raw if len(raw) <= policy.keep_raw_bytes and total == len(raw) else None
    if total > policy.limits.max_message_bytes:
        return _quarantine_head(raw, source=source, size=total, raw_sha=raw_sha, reason="message_too_large",
                                detail=f"{total} bytes > limit {policy.limits.max_message_bytes}")
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception as err:
        return _quarantine_head(raw, source=source, size=total, raw_sha=raw_sha, reason="unparseable",
                                detail=type(err).__name__, keep=keep)
    message_id = _header(msg, "Message-ID") or synthetic_message_id(raw_sha)
    sender = sender_of(msg)
    base = dict(message_id=message_id[:998], sender=sender, date_header=_header(msg, "Date"), source=source,
                size=total, raw_sha256=raw_sha, raw=keep,
                auth_results="\n".join(_all_headers(msg, "Authentication-Results"))[:8000])
    try:
        own = authenticity.verify_dkim(raw, policy.dkim_dnsfunc) if msg.get_all("DKIM-Signature") else []
    except Exception as err:
        own = [authenticity.SignatureResult("", "temperror", "dkimpy", detail=f"{type(err).__name__}")]
        log.info("DKIM check failed on %s: %s", source, err)
    try:
        auth = authenticity.assess(raw, msg, trusted_authserv_ids=policy.trust.trusted_authserv_ids,
                                   alignment=policy.trust.alignment, own_results=own)
    except Exception as err:  # hostile headers: never automatic, never a crash
        auth = authenticity.Authenticity("failed", "", reason=f"unassessable: {type(err).__name__}",
                                         results=tuple(own))
    base.update(dkim=own[0].result if own else "none", dkim_domain=own[0].domain if own else "",
                authenticity=auth.verdict, auth_domain=auth.org_domain,
                auth_detail=json.dumps(auth.to_dict(), sort_keys=True)[:8000])
    try:
        found = extract_ids(msg, policy)
    except Quarantine as q:
        return NewRequest(state="quarantined", reason=q.reason if not q.detail else f"{q.reason}: {q.detail}",
                          **base)
    except Exception as err:  # anything the email package throws on hostile input
        return NewRequest(state="quarantined", reason=f"parse_error: {type(err).__name__}", **base)
    if not sender:
        return NewRequest(state="quarantined", reason="no_sender: no valid From/Sender address",
                          image_ids=found, **base)
    if policy.require_dkim and auth.verdict != "verified":
        return NewRequest(state="quarantined", reason=f"dkim_required: {auth.verdict}: {auth.reason}"[:2000],
                          image_ids=found, **base)
    if not found:
        return _by_photo(msg, policy, base)
    unknown = frozenset(i for i in found if known_ids is not None and i not in known_ids)
    return NewRequest(state="received", image_ids=found, unknown_ids=unknown, **base)


# -- requests by photo ----------------------------------------------------------------------------------------

PDQ_HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
MAX_PHOTOS = 10  # image attachments hashed per message
MAX_PHOTO_PIXELS = 50_000_000  # checked from the header, before decoding


def photo_hashes(msg: Message, policy: IntakePolicy) -> tuple[str, ...]:
    """The PDQ hashes (hex) a message gives instead of IDs: each image attachment's (with its rotations,
    mirrorings and border-trimmed picture: ``fingerprint.query_hashes``), and 64-hex-digit PDQ hashes quoted in
    its text. A photo that does not decode, or too flat to hash reliably (PDQ quality under ``MIN_QUALITY``),
    gives none; more than ``MAX_PHOTOS`` photos quarantine the message."""
    found: dict[str, None] = {}
    photos = 0
    for part in _walk_bounded(msg, policy.limits):
        if part.get_content_maintype() == "image":
            photos += 1
            if photos > MAX_PHOTOS:
                raise Quarantine("too_many_photos", f"more than {MAX_PHOTOS} image attachments")
            try:
                pixels = fingerprint.decode_rgb(part.get_payload(decode=True) or b"", max_pixels=MAX_PHOTO_PIXELS)
                hashes, quality = fingerprint.query_hashes(pixels, dihedral=True)
            except ValueError as err:
                log.info("an image attachment does not decode: %s", err)
                continue
            if quality >= fingerprint.MIN_QUALITY:
                found.update((h.hex(), None) for h in hashes)
            continue
        textual, is_html = _is_textual(part)
        if textual:
            text = _decode_text(part)
            found.update((m.group(0).lower(), None) for m in PDQ_HEX.finditer(html_to_text(text) if is_html else text))
    return tuple(found)


def _by_photo(msg: Message, policy: IntakePolicy, base: dict) -> NewRequest:
    """A message without IDs: a request by photo when it has a photo or a PDQ hash, else quarantined."""
    try:
        hashes = photo_hashes(msg, policy)
    except Quarantine as q:
        return NewRequest(state="quarantined", reason=f"{q.reason}: {q.detail}", **base)
    except Exception as err:  # anything the email package or a decoder throws on hostile input
        return NewRequest(state="quarantined", reason=f"parse_error: {type(err).__name__}", **base)
    if not hashes:
        return NewRequest(state="quarantined", reason="no_ids: no valid image ID (or photo) in the message", **base)
    return NewRequest(state="received", photo_pdq=hashes, **base)


def _quarantine_head(head: bytes, *, source: str, size: int, raw_sha: str, reason: str, detail: str,
                     keep: bytes | None = None) -> NewRequest:
    """Quarantine using only the header block (best effort) so the record still names sender and Message-ID."""
    message_id, sender, date = "", "", ""
    try:
        from email.parser import BytesHeaderParser

        hdrs = BytesHeaderParser(policy=email.policy.default).parsebytes(head[:256 * 1024])
        message_id, sender, date = _header(hdrs, "Message-ID"), sender_of(hdrs), _header(hdrs, "Date")
    except Exception:
        pass
    return NewRequest(message_id=(message_id or synthetic_message_id(raw_sha))[:998], sender=sender,
                      date_header=date, source=source, state="quarantined", reason=f"{reason}: {detail}",
                      size=size, raw_sha256=raw_sha, raw=keep)


# -- sources ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RawMessage:
    """Bytes of one message from a source; ``data`` is only the head when ``size`` is over the limit."""

    source: str
    data: bytes = field(repr=False)
    size: int


def _read_capped(path: str, limit: int) -> RawMessage:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        data = fh.read(limit + 1 if size <= limit else 256 * 1024)
    return RawMessage(source=f"eml:{path}", data=data, size=size)


def iter_eml(path: str, limits: IntakeLimits) -> Iterator[RawMessage]:
    """One .eml file, or every regular file (sorted, recursive, hidden files skipped) under a folder."""
    if os.path.isfile(path):
        yield _read_capped(path, limits.max_message_bytes)
        return
    if not os.path.isdir(path):
        raise ValueError(f"--eml: {path!r} is neither a file nor a folder")
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                yield _read_capped(full, limits.max_message_bytes)


def iter_maildir(path: str, limits: IntakeLimits) -> Iterator[RawMessage]:
    if not os.path.isdir(os.path.join(path, "cur")) and not os.path.isdir(os.path.join(path, "new")):
        raise ValueError(f"--maildir: {path!r} is not a Maildir (no cur/ or new/)")
    for sub in ("new", "cur"):
        folder = os.path.join(path, sub)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            full = os.path.join(folder, name)
            if name.startswith(".") or not os.path.isfile(full):
                continue
            msg = _read_capped(full, limits.max_message_bytes)
            yield RawMessage(source=f"maildir:{full}", data=msg.data, size=msg.size)


def iter_mbox(path: str, limits: IntakeLimits) -> Iterator[RawMessage]:
    if not os.path.isfile(path):
        raise ValueError(f"--mbox: {path!r} is not a file")
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            try:
                data = box.get_bytes(key)
            except Exception as err:
                data = f"X-Veilset-Error: unreadable mbox entry ({type(err).__name__})\n\n".encode()
            size = len(data)
            if size > limits.max_message_bytes:
                data = data[:256 * 1024]
            yield RawMessage(source=f"mbox:{path}#{key}", data=data, size=size)
    finally:
        box.close()


def load_release_ids(release_dir: str) -> frozenset[str]:
    """Image IDs of a release from its index files (``index/shard-*.jsonl``)."""
    return index.image_ids(release_dir, manifest.load_manifest(release_dir).get("index", []))


@dataclass(frozen=True)
class IngestResult:
    seen: int
    new: int
    duplicates: int
    by_state: dict[str, int]


def ingest(ledger, messages: Sequence[RawMessage] | Iterator[RawMessage], policy: IntakePolicy,
           known_ids: frozenset[str] | None = None,
           on_recorded: Callable[[RawMessage, int, bool], None] | None = None) -> IngestResult:
    """Parse and record every message; ``on_recorded(msg, request_id, created)`` after each commit."""
    seen = new = dup = 0
    by_state: dict[str, int] = {}
    for raw in messages:
        seen += 1
        req = parse_message(raw.data, source=raw.source, policy=policy, known_ids=known_ids, size=raw.size)
        rid, created = ledger.add_request(req, trust=policy.trust)
        if created:
            new += 1
            state = ledger.request(rid).state
            by_state[state] = by_state.get(state, 0) + 1
        else:
            dup += 1
        if on_recorded is not None:
            on_recorded(raw, rid, created)
    return IngestResult(seen=seen, new=new, duplicates=dup, by_state=by_state)

