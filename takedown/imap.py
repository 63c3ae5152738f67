"""IMAP source: ``imap://user@host:port/MAILBOX`` or ``imaps://...``; password from an environment variable.

Processed messages get ``\\Seen`` and the keyword ``$VeilsetTakedown`` *after* their request is committed to the
ledger; later runs search ``NOT KEYWORD $VeilsetTakedown`` so a re-run picks up only what is left, and the ledger's
Message-ID idempotency covers a crash between commit and flag. Messages over the size limit are fetched header-only
(``BODY.PEEK[HEADER]``) and quarantined.
"""
from __future__ import annotations

import imaplib
import logging
import os
import re
import ssl
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote, urlsplit

from veilset.takedown.intake import IntakeLimits, RawMessage

log = logging.getLogger(__name__)

DEFAULT_PASSWORD_ENV = "VEILSET_IMAP_PASSWORD"
PROCESSED_KEYWORD = "$VeilsetTakedown"
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ImapUrl:
    secure: bool
    user: str
    host: str
    port: int
    mailbox: str

    def redacted(self) -> str:
        return f"{'imaps' if self.secure else 'imap'}://{self.user}@{self.host}:{self.port}/{self.mailbox}"


def parse_imap_url(url: str) -> ImapUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps"):
        raise ValueError(f"--imap: expected imap://user@host:port/MAILBOX or imaps://..., got {url!r}")
    if parts.password is not None:
        raise ValueError(f"--imap: put the password in an environment variable, not in the URL ({parts.scheme}://"
                         f"{parts.username}:***@...)")
    if not parts.username or not parts.hostname:
        raise ValueError(f"--imap: URL needs a user and a host, got {url!r}")
    try:
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
    except ValueError:
        raise ValueError(f"--imap: bad port in {url!r}") from None
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    if re.search(r"[\x00-\x1f\x7f\"\\]", mailbox):
        raise ValueError(f"--imap: mailbox name {mailbox!r} has control characters, quotes or backslashes")
    return ImapUrl(secure=parts.scheme == "imaps", user=unquote(parts.username), host=parts.hostname, port=port,
                   mailbox=mailbox)


class ImapSource:
    """Context manager: connect, log in, select; ``messages()`` yields unprocessed ones; ``mark_processed(uid)``."""

    def __init__(self, url: str, *, password_env: str = DEFAULT_PASSWORD_ENV, limits: IntakeLimits = IntakeLimits(),
                 timeout_s: float = DEFAULT_TIMEOUT_S, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = parse_imap_url(url)
        if not password_env or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", password_env):
            raise ValueError(f"--imap-password-env: not an environment variable name: {password_env!r}")
        password = os.environ.get(password_env)
        if password is None:
            raise ValueError(f"--imap: set the password in the environment variable {password_env}")
        if timeout_s <= 0:
            raise ValueError(f"IMAP timeout must be > 0 seconds, got {timeout_s!r}")
        self._password = password
        self.limits = limits
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self.conn: imaplib.IMAP4 | None = None

    def __enter__(self) -> "ImapSource":
        u = self.url
        if u.secure:
            self.conn = imaplib.IMAP4_SSL(u.host, u.port, ssl_context=self.ssl_context or ssl.create_default_context(),
                                          timeout=self.timeout_s)
        else:
            self.conn = imaplib.IMAP4(u.host, u.port, timeout=self.timeout_s)
        try:
            self.conn.login(u.user, self._password)
            typ, data = self.conn.select(_quote(u.mailbox))
            if typ != "OK":
                raise RuntimeError(f"IMAP SELECT {u.mailbox!r} failed: {data!r}")
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self.conn is None:
            return
        try:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn.logout()
        except Exception:
            pass
        self.conn = None

    def _uids(self) -> list[bytes]:
        assert self.conn is not None
        typ, data = self.conn.uid("SEARCH", None, "NOT", "KEYWORD", PROCESSED_KEYWORD)
        if typ != "OK":
            raise RuntimeError(f"IMAP SEARCH failed: {data!r}")
        return [u for u in (data[0] or b"").split() if u.isdigit()]

    def messages(self) -> Iterator[tuple[bytes, RawMessage]]:
        assert self.conn is not None
        for uid in self._uids():
            typ, data = self.conn.uid("FETCH", uid, "(RFC822.SIZE)")
            m = re.search(rb"RFC822\.SIZE (\d+)", data[0] if data and isinstance(data[0], bytes) else b"")
            size = int(m.group(1)) if m else 0
            what = "(BODY.PEEK[HEADER])" if size > self.limits.max_message_bytes else "(BODY.PEEK[])"
            typ, data = self.conn.uid("FETCH", uid, what)
            if typ != "OK":
                raise RuntimeError(f"IMAP FETCH {uid!r} failed: {data!r}")
            body = b"".join(item[1] for item in data if isinstance(item, tuple) and len(item) == 2)
            if not body:  # expunged by another client between SEARCH and FETCH
                log.info("IMAP UID %s vanished before it could be fetched", uid.decode())
                continue
            yield uid, RawMessage(source=f"{self.url.redacted()};UID={uid.decode()}", data=body,
                                  size=max(size, len(body)))

    def mark_processed(self, uid: bytes) -> None:
        assert self.conn is not None
        typ, data = self.conn.uid("STORE", uid, "+FLAGS", f"(\\Seen {PROCESSED_KEYWORD})")
        if typ != "OK":
            raise RuntimeError(f"IMAP STORE {uid!r} failed: {data!r}")


def _quote(mailbox: str) -> str:
    return '"' + mailbox + '"'
