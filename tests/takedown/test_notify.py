"""Receipts: a real aiosmtpd server on 127.0.0.1, and the outbox folder."""
from __future__ import annotations

import email
import email.policy
import os
import smtplib

import pytest

from veilset.takedown.ledger import ApplyOutcome, Ledger, NewRequest, RemovedImage
from veilset.takedown.notify import build_receipt, notify_pending, parse_hostport
from tests.servers import free_port, smtp_server, smtp_tls_server  # noqa: F401 - pytest fixtures
from tests.takedown.mails import image_id

A, B, C = image_id("a"), image_id("b"), image_id("c")


def applied_ledger(path: str, sender: str = "alice@example.org", mid: str = "<req-1@example.org>") -> Ledger:
    ledger = Ledger(path)
    rid, _ = ledger.add_request(NewRequest(message_id=mid, sender=sender, date_header="", source="t",
                                           state="received", image_ids=(A, B, C)))
    out = ApplyOutcome(rid, (RemovedImage(A, "1" * 64, "2" * 64), RemovedImage(B, "3" * 64, "4" * 64)), (), (C,))
    ledger.block_images(7, [out])
    ledger.record_applied(7, [out])
    return ledger


def check_receipt(raw: bytes, to: str = "alice@example.org") -> None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["To"] == to
    assert msg["In-Reply-To"] == "<req-1@example.org>"
    body = msg.get_body(("plain",)).get_content()
    removed_part, _, missing_part = body.partition("Not found")
    assert "release 7" in removed_part and A in removed_part and B in removed_part and C not in removed_part
    assert C in missing_part


def test_receipts_over_smtp_once(tmp_path, smtp_server):  # noqa: F811
    ledger = applied_ledger(str(tmp_path / "l.sqlite"))
    report = notify_pending(ledger, smtp=f"127.0.0.1:{smtp_server.port}", timeout_s=10)
    assert (report.sent, report.failed) == (1, 0)
    (got,) = smtp_server.received()
    assert got["rcpt_tos"] == ["alice@example.org"]
    check_receipt(got["data"])
    assert ledger.request(1).state == "notified"
    assert notify_pending(ledger, smtp=f"127.0.0.1:{smtp_server.port}", timeout_s=10).sent == 0
    assert len(smtp_server.received()) == 1


def test_receipts_to_outbox(tmp_path):
    ledger = applied_ledger(str(tmp_path / "l.sqlite"))
    outbox = tmp_path / "outbox"
    assert notify_pending(ledger, outbox=str(outbox)).sent == 1
    (name,) = os.listdir(outbox)
    assert name.startswith("receipt-00000001-") and name.endswith(".eml")
    check_receipt((outbox / name).read_bytes())
    assert notify_pending(ledger, outbox=str(outbox)).sent == 0


def test_unreachable_smtp_leaves_requests_applied(tmp_path):
    ledger = applied_ledger(str(tmp_path / "l.sqlite"))
    with pytest.raises((OSError, smtplib.SMTPException)):
        notify_pending(ledger, smtp=f"127.0.0.1:{free_port()}", timeout_s=5)
    assert ledger.request(1).state == "applied"


def test_hostile_message_id_is_not_echoed_into_headers(tmp_path):
    ledger = applied_ledger(str(tmp_path / "l.sqlite"), mid="<a@b>\r\nBcc: victim@example.com")
    msg = build_receipt(ledger, ledger.request(1))
    assert msg["In-Reply-To"] is None and msg["Bcc"] is None
    assert b"victim" not in msg.as_bytes()


def test_options_are_validated(tmp_path):
    ledger = applied_ledger(str(tmp_path / "l.sqlite"))
    with pytest.raises(ValueError, match="exactly one"):
        notify_pending(ledger)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_hostport("localhost")
    with pytest.raises(ValueError, match="--from"):
        notify_pending(ledger, outbox=str(tmp_path), from_addr="evil\r\n@x")


def test_receipts_over_starttls(tmp_path, smtp_tls_server):  # noqa: F811
    import ssl

    sink, ca = smtp_tls_server
    ledger = applied_ledger(str(tmp_path / "l.sqlite"))
    hostport = f"127.0.0.1:{sink.port}"
    refused = notify_pending(ledger, smtp=hostport, timeout_s=10)  # the server refuses mail before STARTTLS
    assert (refused.sent, refused.failed) == (0, 1) and ledger.request(1).state == "applied"
    assert [h["event"] for h in ledger.history()][-1] == "notify_failed"
    with pytest.raises(ssl.SSLError):  # an untrusted certificate is refused, not silently accepted
        notify_pending(ledger, smtp=hostport, starttls=True, timeout_s=10)
    report = notify_pending(ledger, smtp=hostport, starttls=True, timeout_s=10,
                            ssl_context=ssl.create_default_context(cafile=ca))
    assert report.sent == 1
    (got,) = sink.received()
    assert got["tls"]
    check_receipt(got["data"])
