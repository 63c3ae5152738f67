"""Intake of untrusted mail: every MIME shape, charsets, forwards, limits, hostile input, DKIM, real corpus."""
from __future__ import annotations

import glob
import mailbox
import os
import re

import pytest

from veilset.release import ids
from veilset.takedown import intake
from veilset.takedown.intake import IntakeLimits, IntakePolicy, iter_eml, iter_maildir, iter_mbox, parse_message
from veilset.takedown.ledger import Ledger
from tests.takedown import mails

POLICY = IntakePolicy()
A, B, C, D = (mails.image_id(k) for k in "abcd")


def parse(raw: bytes, policy: IntakePolicy = POLICY, **kw):
    return parse_message(raw, source="test", policy=policy, **kw)


def test_plain_text_request_records_sender_ids_and_headers():
    req = parse(mails.plain([A, B]))
    assert req.state == "received", req.reason
    assert req.image_ids == (A, B)
    assert req.sender == "alice@example.org"
    assert req.message_id == "<req-1@example.org>"
    assert req.date_header == "Wed, 25 Nov 2026 10:00:00 +0000"
    assert req.dkim == "none"
    assert req.raw is not None and len(req.raw_sha256) == 64


def test_html_only_ids_in_text_links_and_split_by_tags():
    req = parse(mails.html_only([A, B]))
    assert req.state == "received", req.reason
    assert set(req.image_ids) == {A, B}


def test_alternative_base64_quoted_printable_and_csv_attachment():
    req = parse(mails.alternative_with_csv([A], [B, C]))
    assert req.state == "received", req.reason
    assert set(req.image_ids) == {A, B, C}


def test_nested_forwards_are_searched():
    inner = mails.plain([D], message_id="<orig@example.org>")
    req = parse(mails.forwarded(inner, depth=3))
    assert req.state == "received", req.reason
    assert req.image_ids == (D,)
    assert req.message_id != "<orig@example.org>"  # the outer message is the request


def test_quoted_reply_counts_quoted_and_new_ids():
    req = parse(mails.quoted_reply([A], [B]))
    assert set(req.image_ids) == {A, B}


def test_ids_are_case_normalised_deduplicated_and_subject_is_scanned():
    raw = mails.plain([A.upper().replace("SA_", "sa_"), A, A.upper()], subject=f"remove {B}")
    req = parse(raw)
    assert sorted(req.image_ids) == sorted([A, B])
    assert all(ids.is_valid_image_id(i) for i in req.image_ids)


def test_hostile_id_lookalikes_are_ignored_and_valid_neighbours_kept():
    raw = mails.plain([C], extra=mails.hostile_id_text())
    req = parse(raw)
    assert req.image_ids == (C,)
    only_hostile = parse(mails.plain([], extra=mails.hostile_id_text(), message_id="<h@x.org>"))
    assert only_hostile.state == "quarantined" and only_hostile.reason.startswith("no_ids")


def test_path_traversal_around_a_valid_id_yields_just_the_id():
    req = parse(mails.plain([f"../../{A}/../../etc/passwd", f"images/00001/{B}.jpg"]))
    assert sorted(req.image_ids) == sorted([A, B])


def test_broken_base64_does_not_crash():
    req = parse(mails.broken_base64([A]))
    assert req.state in ("received", "quarantined")
    assert req.sender == "carol@example.com"


def test_wrong_and_unknown_charsets_still_find_ids():
    req = parse(mails.wrong_charset([A]))
    assert req.state == "received" and req.image_ids == (A,)
    req = parse(mails.unknown_charset([B]))
    assert req.state == "received" and req.image_ids == (B,)


def test_ten_thousand_ids_hit_the_limit_then_pass_with_a_higher_one():
    raw = mails.many_ids(10_000)
    req = parse(raw)
    assert req.state == "quarantined" and req.reason.startswith("too_many_ids")
    assert req.image_ids == ()  # never half-processed
    big = IntakePolicy(limits=IntakeLimits(max_ids_per_message=20_000))
    req = parse(raw, big)
    assert req.state == "received" and len(req.image_ids) == 10_000


def test_fifty_megabyte_attachment_is_quarantined_without_reading_it_all(tmp_path):
    path = tmp_path / "big.eml"
    mails.write_with_big_attachment(str(path), [A], 50 * 1024 * 1024)
    assert path.stat().st_size > 50 * 1024 * 1024
    (msg,) = list(iter_eml(str(path), POLICY.limits))
    assert len(msg.data) <= 256 * 1024 and msg.size == path.stat().st_size
    req = parse(msg.data, size=msg.size)
    assert req.state == "quarantined" and req.reason.startswith("message_too_large")
    assert req.message_id == "<big@example.com>" and req.sender == "frank@example.com"
    assert req.raw is None


def test_mime_depth_and_part_count_limits():
    req = parse(mails.deep_nesting(30, [A]))
    assert req.state == "quarantined" and req.reason.startswith("mime_too_deep")
    req = parse(mails.many_parts(500, [A]))
    assert req.state == "quarantined" and req.reason.startswith("too_many_parts")
    req = parse(mails.deep_nesting(3, [A]))
    assert req.state == "received"


def test_missing_message_id_gets_a_stable_synthetic_one():
    raw = mails.plain([A], message_id=None)
    one, two = parse(raw), parse(raw)
    assert one.message_id == two.message_id and one.message_id.endswith("@no-message-id.invalid>")


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe garbage \x80\x81" * 100,
    b"From: \r\nSubject: =?utf-8?b?!!!?=\r\n\r\n" + mails.image_id(1).encode(),
    b"From: <<<@@@>>>\r\nMessage-ID: <\r\n\r\nbody",
    b"Content-Type: multipart/mixed; boundary=\"x\"\r\nFrom: a@b.co\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n--x--",
    b"From: a@b.co\r\nContent-Type: text/plain; charset=\"utf-8\r\n\r\n" + mails.image_id(2).encode(),
    b"From: a@b.co\r\n" + b"X-Long: " + b"a" * 200_000 + b"\r\n\r\nhi",
])
def test_garbage_never_raises_and_is_recorded(tmp_path, raw):
    req = parse(raw)
    assert req.state in ("received", "quarantined")
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    rid, created = ledger.add_request(req)
    assert created and ledger.request(rid).state == req.state


def test_header_injection_in_sender_is_not_accepted():
    raw = mails.raw_message({"From": "x@example.com\r\nBcc: victim@example.com", "Message-ID": "<i@x>"},
                            mails.image_id(3).encode())
    req = parse(raw)
    assert "\n" not in req.sender and "\r" not in req.sender and "\n" not in req.message_id


def test_configurable_id_pattern():
    pol = IntakePolicy(id_pattern=re.compile(r"ID:(sa_[0-9a-f]{32})"))
    # the whole match must still be a valid ID: a pattern with context around the ID finds nothing
    assert parse(mails.plain([f"ID:{A}"]), pol).image_ids == ()
    pol = IntakePolicy(id_pattern=re.compile(r"(?<=ID:)sa_[0-9a-f]{32}"))
    assert parse(mails.plain([f"ID:{A}", B]), pol).image_ids == (A,)


def test_known_ids_mark_unknown():
    req = parse(mails.plain([A, B]), known_ids=frozenset({A}))
    assert req.unknown_ids == frozenset({B})


# -- DKIM ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dkim_key():
    pytest.importorskip("cryptography", reason="generating a throwaway DKIM key needs cryptography")
    return mails.rsa_keypair()


def test_dkim_pass_fail_and_require_policy(dkim_key):
    pem, txt = dkim_key
    dns = {b"s1._domainkey.example.org.": txt}

    def dnsfunc(name, timeout=5):
        return dns.get(name)

    pol = IntakePolicy(dkim_dnsfunc=dnsfunc, require_dkim=True)
    good = mails.signed(mails.plain([A]), pem)
    req = parse(good, pol)
    assert (req.dkim, req.dkim_domain, req.state) == ("pass", "example.org", "received")
    tampered = good.replace(A.encode(), B.encode())
    req = parse(tampered, pol)
    assert req.dkim == "fail" and req.state == "quarantined" and req.reason.startswith("dkim_required")
    unsigned = parse(mails.plain([A]), pol)
    assert unsigned.dkim == "none" and unsigned.state == "quarantined"
    assert parse(mails.plain([A]), IntakePolicy(dkim_dnsfunc=dnsfunc)).state == "received"  # default: record only


def test_dkim_without_dns_is_a_temperror_not_a_crash(dkim_key):
    pem, _ = dkim_key

    def no_dns(name, timeout=5):
        raise OSError("no network")

    req = parse(mails.signed(mails.plain([A]), pem), IntakePolicy(dkim_dnsfunc=no_dns))
    assert req.dkim in ("temperror", "permerror") and req.state == "received"


def test_authentication_results_are_recorded():
    raw = b"Authentication-Results: mx.veilset.example; dkim=pass header.d=example.org; spf=pass\r\n" + \
        mails.plain([A])
    req = parse(raw)
    assert "dkim=pass header.d=example.org" in req.auth_results


# -- sources ------------------------------------------------------------------------------------------------------

def test_maildir_mbox_and_eml_folder_sources(tmp_path):
    msgs = [mails.plain([A], message_id="<m1@x.org>"), mails.html_only([B], message_id="<m2@x.org>")]
    md = mailbox.Maildir(str(tmp_path / "md"), create=True)
    for m in msgs:
        md.add(m)
    mb = mailbox.mbox(str(tmp_path / "box.mbox"))
    for m in msgs:
        mb.add(m)
    mb.flush()
    mb.close()
    (tmp_path / "eml" / "sub").mkdir(parents=True)
    (tmp_path / "eml" / "one.eml").write_bytes(msgs[0])
    (tmp_path / "eml" / "sub" / "two.eml").write_bytes(msgs[1])
    (tmp_path / "eml" / ".hidden").write_bytes(b"ignored")
    for it in (iter_maildir(str(tmp_path / "md"), POLICY.limits), iter_mbox(str(tmp_path / "box.mbox"), POLICY.limits),
               iter_eml(str(tmp_path / "eml"), POLICY.limits)):
        got = [parse(m.data, size=m.size) for m in it]
        assert sorted(r.image_ids for r in got) == sorted([(A,), (B,)])
    with pytest.raises(ValueError, match="not a Maildir"):
        list(iter_maildir(str(tmp_path / "eml"), POLICY.limits))


def test_ingest_is_idempotent_per_message_id(tmp_path):
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    msgs = [intake.RawMessage("a", mails.plain([A]), 0), intake.RawMessage("b", mails.plain([A, B]), 0)]
    msgs = [intake.RawMessage(m.source, m.data, len(m.data)) for m in msgs]  # same Message-ID, other body
    first = intake.ingest(ledger, msgs[:1], POLICY)
    again = intake.ingest(ledger, msgs, POLICY)
    assert (first.new, again.new, again.duplicates) == (1, 0, 2)
    (req,) = ledger.requests()
    assert [r.image_id for r in ledger.request_ids(req.id)] == [A]
    assert [h["event"] for h in ledger.history()].count("duplicate_message") == 2


def _cpython_email_corpus() -> list[str]:
    import test

    folder = os.path.join(os.path.dirname(test.__file__), "test_email", "data")
    return sorted(glob.glob(os.path.join(folder, "msg_*.txt")))


def test_cpython_email_corpus_ingests_without_a_crash(tmp_path):
    files = _cpython_email_corpus()
    if not files:
        pytest.skip("CPython's Lib/test/test_email/data is not part of this Python install")
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    for path in files:
        with open(path, "rb") as fh:
            raw = fh.read()
        # each real message once as it is, once with a valid ID appended to its (possibly multipart) body
        for data in (raw, raw + b"\n" + mails.image_id(path).encode() + b"\n"):
            req = parse(data)
            assert req.state in ("received", "quarantined")
            if req.state == "quarantined":
                assert req.reason
            ledger.add_request(req)
    counts = ledger.counts()
    assert counts["received"] + counts["quarantined"] >= len(files)
    assert counts["received"] > 0  # IDs are found in real-world MIME shapes, not only in synthetic ones


def test_ids_in_attachment_filenames_count():
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "ivy@example.org"
    msg["Message-ID"] = "<att@example.org>"
    msg.set_content("This photo of me, attached.")
    msg.add_attachment(b"\xff\xd8\xff\xe0 not really a jpeg", maintype="image", subtype="jpeg", filename=f"{A}.jpg")
    req = parse(msg.as_bytes())
    assert req.state == "received" and req.image_ids == (A,)
