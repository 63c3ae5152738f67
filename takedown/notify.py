"""Notify: one receipt per applied request (IDs removed in which release, IDs not found), via SMTP or an outbox.

A request moves ``applied`` -> ``notified`` only after its receipt was accepted by the SMTP server or written to
the outbox, so a rerun sends only what is left (a crash between the send and the ledger update can send one
receipt twice: at-least-once). Nothing from the original message goes into the receipt's headers except the
sender's validated address and its Message-ID (as In-Reply-To, only when it is a clean ``<...>`` token).
"""
from __future__ import annotations

import email.policy
import hashlib
import logging
import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone

from veilset.release.storage import atomic_write
from veilset.takedown.ledger import Ledger, RequestRow

log = logging.getLogger(__name__)

DEFAULT_FROM = "takedown@veilset.invalid"
DEFAULT_TIMEOUT_S = 30.0
_ADDR = re.compile(r"^[^@\s<>\"',;:()\[\]\\]{1,64}@[A-Za-z0-9.-]{1,253}$")
_MSGID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,900}>$")


@dataclass(frozen=True)
class NotifyReport:
    sent: int
    failed: int
    skipped: int  # no valid address to answer


def parse_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--smtp: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def build_receipt(ledger: Ledger, req: RequestRow, *, from_addr: str = DEFAULT_FROM) -> EmailMessage:
    rows = ledger.request_ids(req.id)
    removed = [r for r in rows if r.status == "removed"]
    not_found = [r.image_id for r in rows if r.status in ("not_found", "unknown", "pending")]
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = from_addr
    msg["To"] = req.sender
    msg["Subject"] = f"Your image removal request: {len(removed)} removed, {len(not_found)} not found"
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain=from_addr.rpartition("@")[2] or "veilset.invalid")
    if _MSGID.match(req.message_id) and not req.message_id.endswith("@no-message-id.invalid>"):
        msg["In-Reply-To"] = req.message_id
        msg["References"] = req.message_id
    msg["Auto-Submitted"] = "auto-replied"
    lines = ["Hello,", "", f"we processed your image removal request received {req.received_at}.", ""]
    if removed:
        by_release: dict[int | None, list[str]] = {}
        for r in removed:
            by_release.setdefault(r.release, []).append(r.image_id)
        for release, image_ids in sorted(by_release.items(), key=lambda kv: kv[0] or 0):
            lines.append(f"Removed from release {release} and blocked from all future releases:")
            lines.extend(f"  {i}" for i in image_ids)
            lines.append("")
    if not_found:
        lines.append("Not found in the dataset (nothing to remove; blocked from all future releases all the same):")
        lines.extend(f"  {i}" for i in not_found)
        lines.append("")
    if ledger.photo_hashes(req.id):
        lines += (["No published image matched the photo you sent."] if not removed else
                  ["The images above matched the photo you sent."])
        lines += ["Its fingerprint is kept: an image matching it is blocked from all future releases.", ""]
    lines += [f"Reference: request {req.id}.", ""]
    msg.set_content("\n".join(lines))
    return msg


def _outbox_name(req: RequestRow) -> str:
    digest = hashlib.sha256(req.message_id.encode("utf-8", "replace")).hexdigest()[:16]
    return f"receipt-{req.id:08d}-{digest}.eml"  # never derived from untrusted text


def notify_pending(ledger: Ledger, *, smtp: str | None = None, starttls: bool = False, outbox: str | None = None,
                   from_addr: str = DEFAULT_FROM, timeout_s: float = DEFAULT_TIMEOUT_S,
                   smtp_user: str | None = None, smtp_password: str | None = None,
                   ssl_context: ssl.SSLContext | None = None) -> NotifyReport:
    if (smtp is None) == (outbox is None):
        raise ValueError("notify needs exactly one of --smtp HOST:PORT or --outbox DIR")
    if not _ADDR.match(from_addr):
        raise ValueError(f"--from: not a plain e-mail address: {from_addr!r}")
    if starttls and smtp is None:
        raise ValueError("--starttls only applies to --smtp")
    pending = ledger.requests("applied")
    sent = failed = skipped = 0
    todo = []
    for req in pending:
        if not _ADDR.match(req.sender or ""):
            skipped += 1
            ledger.note_event(req.id, "notify_skipped", {"reason": "no valid sender address"})
            continue
        todo.append(req)
    if not todo:
        return NotifyReport(0, 0, skipped)
    if outbox is not None:
        os.makedirs(outbox, exist_ok=True)
        for req in todo:
            msg = build_receipt(ledger, req, from_addr=from_addr)
            atomic_write(os.path.join(outbox, _outbox_name(req)), msg.as_bytes())
            ledger.mark_notified(req.id, channel=f"outbox:{_outbox_name(req)}")
            sent += 1
        return NotifyReport(sent, 0, skipped)
    host, port = parse_hostport(smtp)  # type: ignore[arg-type]
    with smtplib.SMTP(host, port, timeout=timeout_s) as conn:
        conn.ehlo()
        if starttls:
            conn.starttls(context=ssl_context or ssl.create_default_context())
            conn.ehlo()
        if smtp_user:
            conn.login(smtp_user, smtp_password or "")
        for req in todo:
            msg = build_receipt(ledger, req, from_addr=from_addr)
            try:
                refused = conn.send_message(msg, from_addr=from_addr, to_addrs=[req.sender])
            except smtplib.SMTPRecipientsRefused as err:
                refused = {req.sender: str(err)}
            except smtplib.SMTPResponseException as err:
                refused = {req.sender: f"{err.smtp_code} {err.smtp_error!r}"}
            if refused:
                failed += 1
                ledger.note_event(req.id, "notify_failed", {"smtp": f"{host}:{port}", "error": str(refused)[:500]})
                continue
            ledger.mark_notified(req.id, channel=f"smtp:{host}:{port}")
            sent += 1
    return NotifyReport(sent, failed, skipped)
