"""Who may remove what: DKIM verified with real keys (generated here, served by a pluggable lookup), trusted and
untrusted Authentication-Results, From alignment, per-domain limits, the global cap for unsigned mail, review."""
from __future__ import annotations

import json

import pytest

from veilset.cli import main
from veilset.takedown import authenticity as au
from veilset.takedown.apply import apply_pending
from veilset.takedown.intake import IntakePolicy, RawMessage, ingest, parse_message
from veilset.takedown.ledger import Ledger
from veilset.takedown.policy import TrustPolicy
from tests.takedown import mails
from tests.takedown.releases import make_release, release_ids

A, B = mails.image_id("trust-a"), mails.image_id("trust-b")
MX = "mx.veilset.example"


@pytest.fixture(scope="module")
def keys():
    pytest.importorskip("cryptography", reason="generating throwaway DKIM keys needs cryptography")
    good_pem, good_txt = mails.rsa_keypair()
    evil_pem, evil_txt = mails.rsa_keypair()
    return {"example.org": (good_pem, good_txt), "attacker.example": (evil_pem, evil_txt)}


@pytest.fixture
def dns(keys):
    """The key lookup dkimpy calls (``dnsfunc``): published keys by name, None (NXDOMAIN) otherwise."""
    records = {f"s1._domainkey.{d}.".encode(): txt for d, (_, txt) in keys.items()}
    calls = []

    def lookup(name, timeout=5):
        calls.append(name)
        return records.get(name)

    lookup.calls = calls
    return lookup


def _down(name, timeout=5):
    raise TimeoutError("resolver timed out")


def signed(keys, ids, *, domain="example.org", sender="alice@example.org", mid="<s1@example.org>") -> bytes:
    return mails.signed(mails.plain(ids, sender=sender, message_id=mid), keys[domain][0], domain=domain)


def ar(authserv: str, result: str = "pass", domain: str = "example.org") -> bytes:
    return (f"Authentication-Results: {authserv} (Postfix 3.8);\r\n dkim={result} (2048-bit key) "
            f"header.d={domain} header.i=@{domain} header.b=AbCd;\r\n spf=pass smtp.mailfrom={domain}\r\n").encode()


def decide(raw: bytes, tmp_path, dnsfunc, **trust) -> tuple[str, str, object]:
    """(state, reason, row) of one message ingested into a fresh ledger with the given trust policy."""
    policy = IntakePolicy(dkim_dnsfunc=dnsfunc, trust=TrustPolicy(**trust))
    with Ledger(str(tmp_path / f"l{len(list(tmp_path.iterdir()))}.sqlite")) as ledger:
        ingest(ledger, [RawMessage("test", raw, len(raw))], policy)
        (row,) = ledger.requests()
        return row.state, row.reason, row


# -- the cases of the issue ----------------------------------------------------------------------------------------

def test_valid_aligned_signature_is_automatic(keys, dns, tmp_path):
    state, reason, row = decide(signed(keys, [A]), tmp_path, dns)
    assert (state, row.authenticity, row.auth_domain, row.decided_by) == ("received", "verified", "example.org",
                                                                          "policy")
    assert dns.calls == [b"s1._domainkey.example.org."]
    detail = json.loads(row.auth_detail)
    assert detail["results"][0] == {"domain": "example.org", "result": "pass", "source": "dkimpy",
                                    "selector": "s1", "detail": ""}
    # relaxed alignment: a subdomain's From and the organization's signature
    state, _, row = decide(signed(keys, [A], sender="alice@mail.example.org"), tmp_path, dns)
    assert (state, row.authenticity) == ("received", "verified")
    state, reason, _ = decide(signed(keys, [A], sender="alice@mail.example.org"), tmp_path, dns,
                              alignment="strict")
    assert state == "review" and "not aligned" in reason


def test_forged_from_without_signature_is_only_within_the_unverified_cap(tmp_path, dns):
    raw = mails.plain([A, B], sender="ceo@example.org")  # anybody can write this From
    state, _, row = decide(raw, tmp_path, dns)
    assert (state, row.authenticity, row.auth_domain, row.decided_by) == ("received", "unverified", "", "policy")
    state, reason, _ = decide(raw, tmp_path, dns, unverified_ids_per_day=1)
    assert state == "review" and reason.startswith("unverified_cap: 2 IDs")
    assert decide(raw, tmp_path, dns, unverified_ids_per_day=0)[0] == "review"


def test_failing_signature_goes_to_review(keys, dns, tmp_path):
    tampered = signed(keys, [A]).replace(A.encode(), B.encode())  # someone changed the body after signing
    state, reason, row = decide(tampered, tmp_path, dns)
    assert (state, row.authenticity, row.dkim) == ("review", "failed", "fail")
    assert reason.startswith("not_authenticated: no aligned passing DKIM signature: dkim=fail d=example.org")
    assert "body hash mismatch" in reason
    # a signature made with another key than the one published fails too
    forged = mails.signed(mails.plain([A]), keys["attacker.example"][0], domain="example.org")
    state, reason, row = decide(forged, tmp_path, dns)
    assert (state, row.dkim) == ("review", "fail") and "signature does not verify" in reason


def test_temperror_and_permerror_go_to_review(keys, dns, tmp_path):
    state, reason, row = decide(signed(keys, [A]), tmp_path, _down)
    assert (state, row.dkim) == ("review", "temperror") and "resolver timed out" in reason
    no_key = mails.signed(mails.plain([A], sender="bob@unpublished.example"), keys["example.org"][0],
                          domain="unpublished.example")
    state, reason, row = decide(no_key, tmp_path, dns)
    assert (state, row.dkim) == ("review", "permerror") and "no key published" in reason
    bad_key_dns = lambda name, timeout=5: b"v=DKIM1; k=rsa; p=bm90IGEga2V5"  # noqa: E731
    state, reason, row = decide(signed(keys, [A]), tmp_path, bad_key_dns)
    assert (state, row.dkim) == ("review", "permerror") and "bad key" in reason


def test_misaligned_signing_domain_goes_to_review(keys, dns, tmp_path):
    # a perfectly valid signature, by the attacker's own domain, on a mail whose From is example.org
    raw = signed(keys, [A], domain="attacker.example", sender="alice@example.org")
    state, reason, row = decide(raw, tmp_path, dns)
    assert (state, row.dkim, row.authenticity) == ("review", "pass", "failed")
    assert "dkim=pass d=attacker.example not aligned with From example.org" in reason


def test_authentication_results_only_from_the_trusted_authserv_id(keys, tmp_path):
    raw = signed(keys, [A])
    # our own lookup cannot reach DNS: alone, that is a temperror -> review
    assert decide(raw, tmp_path, _down)[0] == "review"
    # an Authentication-Results header from a host we do not trust changes nothing
    state, reason, row = decide(ar("mx.attacker.example") + raw, tmp_path, _down, trusted_authserv_ids={MX})
    assert state == "review" and row.authenticity == "failed"
    # the receiving host we trust verified it on arrival: honoured
    state, reason, row = decide(ar(MX) + raw, tmp_path, _down, trusted_authserv_ids={MX.upper()})
    assert (state, row.authenticity, row.auth_domain) == ("received", "verified", "example.org")
    assert f"authserv-id:{MX}" in row.auth_detail
    # nobody is trusted unless configured
    assert decide(ar(MX) + raw, tmp_path, _down)[0] == "review"
    # an unsigned, forged mail claiming a pass from an untrusted host is just unverified
    forged = ar("mx.attacker.example") + mails.plain([A])
    state, _, row = decide(forged, tmp_path, _down, trusted_authserv_ids={MX}, unverified_ids_per_day=0)
    assert (state, row.authenticity) == ("review", "unverified")


def test_contradicting_results_go_to_review(keys, dns, tmp_path):
    tampered = signed(keys, [A]).replace(A.encode(), B.encode())
    # a forged "pass" with our host's id that the host failed to strip, against our own "fail"
    state, reason, _ = decide(ar(MX) + tampered, tmp_path, dns, trusted_authserv_ids={MX})
    assert state == "review" and "contradicting DKIM results for example.org" in reason
    # ... or against the trusted host's own verdict
    raw = ar(MX, "fail") + ar(MX) + mails.plain([A])
    state, reason, _ = decide(raw, tmp_path, dns, trusted_authserv_ids={MX})
    assert state == "review" and "contradicting" in reason


def test_limits_are_keyed_on_the_signing_organization(keys, dns, tmp_path):
    policy = IntakePolicy(dkim_dnsfunc=dns, trust=TrustPolicy(ids_per_domain_per_day=3, unverified_ids_per_day=0))
    ids = [mails.image_id(f"d{k}") for k in range(6)]
    msgs = [signed(keys, ids[0:2], mid="<d1@example.org>"),
            signed(keys, ids[2:3], sender="bob@news.example.org", mid="<d2@example.org>"),  # same organization
            signed(keys, ids[3:4], sender="carol@example.org", mid="<d3@example.org>"),  # over: 4 > 3
            signed(keys, ids[4:5], domain="attacker.example", sender="eve@attacker.example", mid="<d4@x>")]
    with Ledger(str(tmp_path / "l.sqlite")) as ledger:
        ingest(ledger, [RawMessage(f"m{k}", m, len(m)) for k, m in enumerate(msgs)], policy)
        rows = ledger.requests()
        assert [(r.state, r.auth_domain) for r in rows] == [
            ("received", "example.org"), ("received", "example.org"), ("review", "example.org"),
            ("received", "attacker.example")]
        assert rows[2].reason.startswith("domain_limit: 4 IDs from example.org in 24 h > limit 3")


# -- the flood: 16 forged mails against a 16-image release, through the CLI ----------------------------------------

def test_sixteen_forged_mails_remove_at_most_the_cap_and_the_rest_wait(tmp_path, capsys):
    root = str(tmp_path / "release")
    _, images = make_release(root, n=16, num_shards=2)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for k, im in enumerate(images):
        (inbox / f"{k:02d}.eml").write_bytes(mails.plain([im.image_id], sender=f"victim{k}@example.org",
                                                          message_id=f"<flood-{k}@example.org>"))
    ledger_path = str(tmp_path / "ledger.sqlite")
    assert main(["takedown", "ingest", "--ledger", ledger_path, "--eml", str(inbox), "--release", root]) == 0
    assert json.loads(capsys.readouterr().out)["by_state"] == {"received": 10, "review": 6}
    assert main(["takedown", "apply", "--ledger", ledger_path, "--release", root]) == 0
    assert len(json.loads(capsys.readouterr().out)["removed"]) == 10
    assert len(release_ids(root)) == 6

    assert main(["takedown", "review", "--ledger", ledger_path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("6 waiting for a person; IDs removed automatically in the last 24 h: unverified 10")
    assert out.count("why: unverified_cap: 11 IDs from unverified senders in 24 h > cap 10 (unsigned") == 6
    with Ledger(ledger_path) as ledger:
        waiting = [r.id for r in ledger.requests("review")]
    assert main(["takedown", "review", "--ledger", ledger_path, "--approve", str(waiting[0]), "--by", "ops",
                 "--reason", "called the requester back"]) == 0
    assert main(["takedown", "review", "--ledger", ledger_path, "--reject", str(waiting[1]), "--by", "ops",
                 "--reason", "forged: the address bounced"]) == 0
    capsys.readouterr()
    assert main(["takedown", "review", "--ledger", ledger_path, "--reject", str(waiting[2])]) == 2  # no reason
    assert "--reject needs --reason" in capsys.readouterr().err
    assert main(["takedown", "review", "--ledger", ledger_path, "--approve", str(waiting[1])]) == 2  # decided
    assert "is 'rejected'" in capsys.readouterr().err
    assert main(["takedown", "review", "--ledger", ledger_path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["id"] for p in data["pending"]] == waiting[2:]
    assert data["pending"][0]["authenticity"] == "unverified" and data["pending"][0]["ids"] == 1
    assert main(["takedown", "apply", "--ledger", ledger_path, "--release", root]) == 0
    assert len(json.loads(capsys.readouterr().out)["removed"]) == 1  # the approved one, only
    assert len(release_ids(root)) == 5
    with Ledger(ledger_path) as ledger:
        hist = [h for h in ledger.history() if h["event"] in ("approved", "rejected")]
        assert [(h["request_id"], h["event"], h["detail"]["by"]) for h in hist] == [
            (waiting[0], "approved", "ops"), (waiting[1], "rejected", "ops")]
        assert hist[0]["detail"]["note"] == "called the requester back"
        assert hist[1]["detail"]["reason"] == "forged: the address bounced"
        assert all(h["time"].endswith("Z") for h in hist)
        assert ledger.request(waiting[1]).state == "rejected"
        assert ledger.counts()["review"] == 4 and ledger.counts()["rejected"] == 1


def test_apply_takes_only_what_the_policy_or_a_person_accepted(keys, dns, tmp_path):
    root = str(tmp_path / "release")
    _, images = make_release(root, n=4, num_shards=1)
    policy = IntakePolicy(dkim_dnsfunc=dns, trust=TrustPolicy(unverified_ids_per_day=0))
    good = signed(keys, [images[0].image_id], mid="<ok@example.org>")
    bad = signed(keys, [images[1].image_id], mid="<bad@example.org>").replace(b"please", b"PLEASE")
    unsigned = mails.plain([images[2].image_id], message_id="<u@example.org>")
    with Ledger(str(tmp_path / "l.sqlite")) as ledger:
        ingest(ledger, [RawMessage(str(k), m, len(m)) for k, m in enumerate((good, bad, unsigned))], policy)
        report = apply_pending(ledger, root, now="2026-11-25T13:00:00Z")
    assert sorted(report.removed) == [images[0].image_id]
    assert release_ids(root) == {im.image_id for im in images[1:]}


# -- pieces --------------------------------------------------------------------------------------------------------

def test_organizational_domain_and_alignment():
    assert au.organizational_domain("Mail.Example.ORG.") == "example.org"
    assert au.organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert au.aligned("example.org", "news.example.org") and au.aligned("mx.example.org", "example.org")
    assert not au.aligned("example.org", "example.com")
    assert not au.aligned("co.uk", "victim.co.uk")  # a public suffix is nobody's organization
    assert not au.aligned("attacker.co.uk", "victim.co.uk")
    assert not au.aligned("example.org", "news.example.org", "strict") and au.aligned("a.org", "A.org.", "strict")
    assert not au.aligned("", "example.org") and not au.aligned("exa mple.org", "example.org")


def test_authentication_results_parsing():
    authserv, results = au.parse_authentication_results(
        "mx.example.org 1 (comment; with ; semicolons); dkim=pass (good (nested) sig) header.d=example.org "
        "header.s=s1; spf=fail smtp.mailfrom=x@y.org; dmarc=pass header.from=example.org")
    assert authserv == "mx.example.org"
    assert results == [("dkim", "pass", {"header.d": "example.org", "header.s": "s1"}),
                       ("spf", "fail", {"smtp.mailfrom": "x@y.org"}), ("dmarc", "pass", {"header.from": "example.org"})]
    assert au.parse_authentication_results("") == ("", [])
    got = au.trusted_dkim_results(["mx.example.org; dkim=pass header.i=bob@Sub.Example.org",
                                   "evil.example; dkim=pass header.d=example.org"], ["MX.example.org"])
    assert [(r.domain, r.result, r.source) for r in got] == [("sub.example.org", "pass", "authserv-id:mx.example.org")]


def test_hostile_messages_never_raise(keys, dns):
    hostile = [b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; b=!!!; bh=???\r\nFrom: a@example.org\r\n\r\nx",
               b"DKIM-Signature: garbage\r\nFrom: a@example.org, b@example.org\r\n\r\nx",
               b"From: a@example.org\r\nFrom: b@example.org\r\nDKIM-Signature: d=example.org\r\n\r\nx",
               b"Authentication-Results: ;;;;=\r\nFrom: a@example.org\r\n\r\n" + A.encode()]
    for raw in hostile:
        req = parse_message(raw, source="t", policy=IntakePolicy(dkim_dnsfunc=dns))
        assert req.authenticity in ("failed", "unverified")
    two_froms = parse_message(hostile[2], source="t", policy=IntakePolicy(dkim_dnsfunc=dns))
    assert two_froms.authenticity == "failed"


def test_policy_validation():
    with pytest.raises(ValueError, match="unverified_ids_per_day"):
        TrustPolicy(unverified_ids_per_day=-1)
    with pytest.raises(ValueError, match="alignment"):
        TrustPolicy(alignment="loose")
    with pytest.raises(ValueError, match="single tokens"):
        TrustPolicy(trusted_authserv_ids=frozenset({"mx.example.org; dkim=pass"}))
    assert TrustPolicy(trusted_authserv_ids=frozenset({" MX.Example.org "})).trusted_authserv_ids == {"mx.example.org"}
