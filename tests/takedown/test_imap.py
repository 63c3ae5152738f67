"""``veilset takedown ingest --imap`` against a real Dovecot on 127.0.0.1 (messages appended over IMAP)."""
from __future__ import annotations

import pytest

from veilset.cli import main
from veilset.takedown.imap import PROCESSED_KEYWORD, ImapSource, parse_imap_url
from veilset.takedown.ledger import Ledger
from tests.servers import dovecot  # noqa: F401 - pytest fixture
from tests.takedown import mails

pytestmark = pytest.mark.slow

A, B, C = (mails.image_id(k) for k in "abc")


def test_imap_ingest_flags_processed_and_is_rerun_safe(tmp_path, dovecot, monkeypatch):  # noqa: F811
    dovecot.append(mails.plain([A], message_id="<i1@example.org>"))
    dovecot.append(mails.html_only([B], message_id="<i2@example.net>"))
    dovecot.append(mails.with_attachment([C], 300_000))  # over the limit below: header-only fetch, quarantined
    dovecot.append(b"\x00\x01 not a mail at all")
    monkeypatch.setenv("VEILSET_IMAP_PASSWORD", dovecot.password)
    ledger_path = str(tmp_path / "l.sqlite")
    argv = ["takedown", "ingest", "--ledger", ledger_path, "--imap", dovecot.url(), "--max-message-bytes", "100000"]
    assert main(argv) == 0
    ledger = Ledger(ledger_path)
    reqs = {r.message_id: r for r in ledger.requests()}
    assert len(reqs) == 4
    assert reqs["<i1@example.org>"].state == "received" and reqs["<i2@example.net>"].state == "received"
    big = reqs["<big@example.com>"]
    assert big.state == "quarantined" and big.reason.startswith("message_too_large") and big.size > 300_000
    assert all(r.source.startswith(f"imap://takedown@127.0.0.1:{dovecot.port}/INBOX;UID=") for r in reqs.values())
    assert all("\\Seen" in f and PROCESSED_KEYWORD in f for f in dovecot.flags())

    assert main(argv) == 0  # nothing new
    assert len(Ledger(ledger_path).requests()) == 4
    dovecot.append(mails.plain([C], message_id="<i3@example.org>"))
    dovecot.append(mails.plain([A], message_id="<i1@example.org>"))  # the same request delivered twice
    assert main(argv) == 0
    assert len(Ledger(ledger_path).requests()) == 5
    assert all(PROCESSED_KEYWORD in f for f in dovecot.flags())


def test_imap_password_comes_from_the_environment(dovecot, monkeypatch):  # noqa: F811
    monkeypatch.delenv("VEILSET_IMAP_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="VEILSET_IMAP_PASSWORD"):
        ImapSource(dovecot.url())
    monkeypatch.setenv("MY_PW", "wrong")
    import imaplib

    with pytest.raises(imaplib.IMAP4.error):
        with ImapSource(dovecot.url(), password_env="MY_PW", timeout_s=10):
            pass


def test_imap_url_validation():
    u = parse_imap_url("imaps://ops%40corp@mail.example.org/Take%20downs")
    assert (u.secure, u.user, u.host, u.port, u.mailbox) == (True, "ops@corp", "mail.example.org", 993, "Take downs")
    for bad in ("http://x@y/INBOX", "imap://host/INBOX", "imap://u:pw@host/INBOX", "imap://u@host:99999/INBOX",
                'imap://u@host/a"b'):
        with pytest.raises(ValueError):
            parse_imap_url(bad)


def test_imap_signed_mail_is_verified_after_the_round_trip(tmp_path, dovecot, monkeypatch):  # noqa: F811
    """DKIM-signed requests stored in and fetched from a real Dovecot still verify (the server's CRLF storage),
    a tampered one does not, and the CLI's default key lookup is the one dkimpy uses (here served offline)."""
    pytest.importorskip("cryptography", reason="generating a throwaway DKIM key needs cryptography")
    import dkim.dnsplug

    pem, txt = mails.rsa_keypair()
    monkeypatch.setattr(dkim.dnsplug, "get_txt",
                        lambda name, timeout=5: txt if name == b"s1._domainkey.example.org." else None)
    ids = [mails.image_id(f"imap-signed-{k}") for k in range(3)]
    good = mails.signed(mails.plain([ids[0]], message_id="<signed-1@example.org>"), pem)
    dovecot.append(good)
    dovecot.append(good.replace(b"<signed-1@", b"<signed-2@").replace(ids[0].encode(), ids[1].encode()))
    dovecot.append(mails.signed(mails.plain([ids[2]], sender="bob@example.net", message_id="<signed-3@x>"), pem))
    monkeypatch.setenv("VEILSET_IMAP_PASSWORD", dovecot.password)
    ledger_path = str(tmp_path / "signed.sqlite")
    assert main(["takedown", "ingest", "--ledger", ledger_path, "--imap", dovecot.url()]) == 0
    reqs = {r.message_id: r for r in Ledger(ledger_path).requests()}
    ok, tampered, misaligned = reqs["<signed-1@example.org>"], reqs["<signed-2@example.org>"], reqs["<signed-3@x>"]
    assert (ok.state, ok.dkim, ok.authenticity, ok.auth_domain) == ("received", "pass", "verified", "example.org")
    assert (tampered.state, tampered.dkim) == ("review", "fail")
    assert (misaligned.state, misaligned.dkim, misaligned.authenticity) == ("review", "pass", "failed")
