"""Who sent a removal request: DKIM signatures, trusted Authentication-Results, From alignment -> one verdict.

A From header costs nothing to forge; a DKIM signature that verifies costs a domain and its DNS. So a request
is ``verified`` only when a DKIM signature *passes* and its signing domain (``d=``) is aligned with the From
domain; the rate limits (``takedown.policy``) are then keyed on that signing domain, which a forger cannot pick.

Verdicts:

- ``verified``: at least one passing signature whose ``d=`` is aligned with the From domain, and no source
  contradicts it (a ``fail`` for the same domain from another source).
- ``unverified``: no DKIM signature at all and no trusted receiving host reported one: anybody could have sent
  it. Automatic only within the global daily cap for unverified mail.
- ``failed``: signed, but no aligned pass: a signature that fails (body or headers changed), cannot be checked
  (``permerror``: no key, malformed; ``temperror``: DNS trouble), passes for a domain not aligned with From,
  or sources that contradict each other. Never applied automatically: it waits in review for a person.

Sources of results: our own verification with dkimpy (key lookup pluggable: ``dnsfunc``, as dkimpy's), and
``Authentication-Results`` headers (RFC 8601) whose authserv-id is one the operator configured
(``--trusted-authserv-id``: the receiving host that verified the mail when it arrived, e.g. ``mx.example.org``).
Every other Authentication-Results header is ignored: anybody can write one. The receiving host must delete
incoming Authentication-Results headers that carry its own authserv-id (RFC 8601 section 5; Postfix with
OpenDKIM/OpenDMARC, Exim and Dovecot's Pigeonhole setups do); as a second line of defence, trusted headers
that disagree with each other, or with our own ``pass``/``fail``, make the message ``failed`` (review).

Alignment (DMARC's relaxed mode, simplified): two domains are aligned when they have the same organizational
domain, taken here as the last two labels, or the last three when the last two are a well-known two-label
public suffix (``co.uk``, ``com.au``, ... in ``TWO_LABEL_SUFFIXES``), without the full Public Suffix List.
``strict`` alignment requires the same domain exactly.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from typing import Callable, Iterable, Sequence

log = logging.getLogger(__name__)

VERDICTS = ("verified", "unverified", "failed")
RESULTS = ("pass", "fail", "neutral", "policy", "temperror", "permerror", "none")

# Two-label public suffixes under which registrations are made at the third label. Not the Public Suffix List:
# enough that alice@mail.example.co.uk and d=example.co.uk align while d=co.uk is never anyone's organization.
TWO_LABEL_SUFFIXES = frozenset("""
ac.uk co.uk gov.uk ltd.uk me.uk net.uk nhs.uk org.uk plc.uk sch.uk
com.au net.au org.au edu.au gov.au asn.au id.au
co.nz net.nz org.nz ac.nz govt.nz
co.jp ne.jp or.jp ac.jp go.jp ad.jp ed.jp gr.jp lg.jp
com.br net.br org.br gov.br edu.br
com.cn net.cn org.cn gov.cn edu.cn ac.cn
co.in net.in org.in firm.in gen.in ind.in ac.in edu.in gov.in
co.za org.za net.za gov.za ac.za
com.mx org.mx gob.mx edu.mx net.mx
com.tr org.tr net.tr gov.tr edu.tr
com.ar com.co com.pe com.ve com.ec com.uy com.py com.bo
co.kr or.kr ne.kr go.kr ac.kr
com.tw org.tw net.tw edu.tw gov.tw
com.hk org.hk net.hk edu.hk gov.hk
com.sg org.sg net.sg edu.sg gov.sg
com.my org.my net.my edu.my gov.my
co.id or.id ac.id go.id
co.il org.il net.il ac.il gov.il
com.ua org.ua net.ua gov.ua
com.pl org.pl net.pl
co.th or.th ac.th go.th in.th
com.ph org.ph net.ph gov.ph edu.ph
com.vn net.vn org.vn edu.vn gov.vn
com.eg com.sa com.pk com.ng com.gh co.ke
""".split())

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")


def normalize_domain(domain: str) -> str:
    """Lower-case, no trailing dot; '' when it is not a plausible DNS name."""
    d = (domain or "").strip().lower().rstrip(".")
    try:
        d = d.encode("idna").decode("ascii") if any(ord(c) > 127 for c in d) else d
    except UnicodeError:
        return ""
    return d if _DOMAIN.match(d) else ""


def organizational_domain(domain: str) -> str:
    """The registrable domain: last two labels, or three under a ``TWO_LABEL_SUFFIXES`` suffix."""
    d = normalize_domain(domain)
    labels = d.split(".") if d else []
    if len(labels) < 2:
        return d
    keep = 3 if ".".join(labels[-2:]) in TWO_LABEL_SUFFIXES and len(labels) >= 3 else 2
    return ".".join(labels[-keep:])


def aligned(signing_domain: str, from_domain: str, mode: str = "relaxed") -> bool:
    a, b = normalize_domain(signing_domain), normalize_domain(from_domain)
    if not a or not b:
        return False
    if mode == "strict":
        return a == b
    if mode != "relaxed":
        raise ValueError(f"alignment must be 'relaxed' or 'strict', got {mode!r}")
    if ".".join(a.split(".")[-2:]) in TWO_LABEL_SUFFIXES and a.count(".") == 1:
        return False  # a public suffix itself (d=co.uk) is nobody's organization
    return organizational_domain(a) == organizational_domain(b)


@dataclass(frozen=True)
class SignatureResult:
    """One DKIM result: from our own verification (``source="dkimpy"``) or a trusted receiving host."""

    domain: str
    result: str  # RESULTS
    source: str
    selector: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"domain": self.domain, "result": self.result, "source": self.source, "selector": self.selector,
                "detail": self.detail}


@dataclass(frozen=True)
class Authenticity:
    verdict: str  # VERDICTS
    from_domain: str
    signing_domain: str = ""  # d= of the aligned passing signature (verified only)
    org_domain: str = ""  # what per-domain limits are keyed on (verified only)
    reason: str = ""  # one line for the ledger and the reviewer
    results: tuple[SignatureResult, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {"verdict": self.verdict, "from_domain": self.from_domain, "signing_domain": self.signing_domain,
                "org_domain": self.org_domain, "reason": self.reason,
                "results": [r.to_dict() for r in self.results]}


# -- our own DKIM verification ------------------------------------------------------------------------------------

class _KeyLookup:
    """Wraps a dkimpy ``dnsfunc`` to tell a missing or malformed key (permerror) and a failed lookup (temperror)
    from a signature that does not verify (fail): dkimpy itself answers False for all three."""

    def __init__(self, dnsfunc: Callable[..., bytes | None]) -> None:
        self.dnsfunc = dnsfunc
        self.error: str = ""
        self.missing = False
        self.bad_key = ""

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        import dkim

        try:
            txt = self.dnsfunc(name, timeout=timeout)
        except Exception as err:  # resolver down, timeout, SERVFAIL, no resolver library
            self.error = f"{type(err).__name__}: {err}"[:300]
            raise dkim.DnsTimeoutError(self.error) from None
        if not txt:
            self.missing = True
            return txt
        try:
            dkim.load_pk_from_dns(name, lambda *_a, **_k: txt)
        except Exception as err:
            self.bad_key = f"{type(err).__name__}: {err}"[:300]
        return txt


def _default_dnsfunc() -> Callable[..., bytes | None]:
    import dkim.dnsplug

    return dkim.dnsplug.get_txt


_TAG = re.compile(rb"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)", re.I)


def _sig_tags(value: bytes) -> dict[str, str]:
    out = {}
    for m in _TAG.finditer(value):
        out.setdefault(m.group(1).decode("ascii", "replace").lower(),
                       re.sub(rb"\s+", b"", m.group(2)).decode("ascii", "replace"))
    return out


def verify_dkim(raw: bytes, dnsfunc: Callable[..., bytes | None] | None = None, *,
                max_signatures: int = 5, minkey: int = 1024) -> list[SignatureResult]:
    """Verify every DKIM-Signature (at most ``max_signatures``) of a message; one result per signature.

    ``pass``; ``fail`` (the signature does not verify: body hash mismatch, headers changed, wrong key);
    ``permerror`` (malformed signature, no key published, unusable or too short key); ``temperror`` (the key
    lookup raised: DNS down or timing out). ``dnsfunc(name, timeout=...)`` returns the TXT record bytes or None.
    """
    import dkim

    lookup_fn = dnsfunc or _default_dnsfunc()
    try:
        d = dkim.DKIM(raw, minkey=minkey, logger=logging.getLogger("veilset.takedown.dkim"))
    except Exception as err:
        return [SignatureResult("", "permerror", "dkimpy", detail=f"unparseable message: {type(err).__name__}")]
    sigs = [(k, v) for k, v in d.headers if k.lower() == b"dkim-signature"]
    out: list[SignatureResult] = []
    for idx, (_, value) in enumerate(sigs[:max_signatures]):
        tags = _sig_tags(value)
        domain, selector = normalize_domain(tags.get("d", "")), tags.get("s", "")[:63]
        lookup = _KeyLookup(lookup_fn)
        try:
            ok = d.verify(idx=idx, dnsfunc=lookup)
        except dkim.ValidationError as err:
            # a body hash mismatch means the message was changed (fail); other validation errors are a malformed
            # or expired signature (permerror)
            result = "fail" if "body hash mismatch" in str(err) else "permerror"
            out.append(SignatureResult(domain, result, "dkimpy", selector, str(err)[:300]))
            continue
        except dkim.DKIMException as err:  # malformed signature, bad key, unknown algorithm
            out.append(SignatureResult(domain, "permerror", "dkimpy", selector,
                                       f"{type(err).__name__}: {err}"[:300]))
            continue
        except Exception as err:  # anything else the verifier throws on hostile input
            out.append(SignatureResult(domain, "temperror", "dkimpy", selector,
                                       f"{type(err).__name__}: {err}"[:300]))
            continue
        if lookup.error:
            out.append(SignatureResult(domain, "temperror", "dkimpy", selector, f"key lookup: {lookup.error}"))
        elif lookup.missing:
            out.append(SignatureResult(domain, "permerror", "dkimpy", selector, "no key published"))
        elif lookup.bad_key:
            out.append(SignatureResult(domain, "permerror", "dkimpy", selector, f"bad key: {lookup.bad_key}"))
        else:
            out.append(SignatureResult(domain, "pass" if ok else "fail", "dkimpy", selector,
                                       "" if ok else "signature does not verify"))
    if len(sigs) > max_signatures:
        out.append(SignatureResult("", "permerror", "dkimpy", detail=f"more than {max_signatures} signatures"))
    return out


# -- Authentication-Results (RFC 8601) -----------------------------------------------------------------------------

def _strip_comments(text: str) -> str:
    prev = None
    while prev != text:
        prev, text = text, re.sub(r"\([^()]*\)", " ", text)
    return text


_PROP = re.compile(r"\b(header|smtp|body|policy)\.([a-z0-9_-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.I)


def parse_authentication_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """(authserv-id, [(method, result, {ptype.property: value})]) of one header value; ('', []) if malformed."""
    text = _strip_comments(value or "").strip()
    parts = [p.strip() for p in text.split(";")]
    head = parts[0].split() if parts and parts[0] else []
    if not head:
        return "", []
    authserv = head[0].strip().lower()
    out = []
    for part in parts[1:]:
        m = re.match(r"([a-z0-9_-]+)\s*(?:/\s*\d+\s*)?=\s*([a-z]+)", part, re.I)
        if not m:
            continue
        props = {f"{p.group(1).lower()}.{p.group(2).lower()}": p.group(3).strip('"') for p in _PROP.finditer(part)}
        out.append((m.group(1).lower(), m.group(2).lower(), props))
    return authserv, out


def trusted_dkim_results(headers: Sequence[str], trusted_authserv_ids: Iterable[str]) -> list[SignatureResult]:
    """DKIM results from Authentication-Results headers stamped by a trusted authserv-id; others ignored."""
    trusted = {t.strip().lower() for t in trusted_authserv_ids if t and t.strip()}
    out: list[SignatureResult] = []
    if not trusted:
        return out
    for value in headers:
        authserv, results = parse_authentication_results(value)
        if authserv not in trusted:
            continue
        for method, result, props in results:
            if method != "dkim":
                continue
            domain = props.get("header.d", "")
            if not domain and "@" in props.get("header.i", ""):
                domain = props["header.i"].rsplit("@", 1)[1]
            result = result if result in RESULTS else "permerror"
            out.append(SignatureResult(normalize_domain(domain), result, f"authserv-id:{authserv}",
                                       detail="Authentication-Results"))
    return out


# -- the verdict -------------------------------------------------------------------------------------------------

def from_domain_of(msg: Message) -> tuple[str, str]:
    """(domain of the one RFC 5322 From address, problem); a problem when there are none or several."""
    try:
        values = [str(v) for v in msg.get_all("From", failobj=[])]
    except Exception:
        values = [str(v) for k, v in msg.raw_items() if k.lower() == "from"]
    addrs = [a for _, a in getaddresses(values) if a]
    if len(values) != 1 or len(addrs) != 1:
        return "", f"{len(values)} From headers with {len(addrs)} addresses (need exactly one)"
    addr = addrs[0].strip()
    if "@" not in addr:
        return "", "From has no domain"
    domain = normalize_domain(addr.rsplit("@", 1)[1])
    return (domain, "") if domain else ("", "From domain is not a DNS name")


def assess(raw: bytes, msg: Message, *, dnsfunc: Callable[..., bytes | None] | None = None,
           trusted_authserv_ids: Iterable[str] = (), alignment: str = "relaxed",
           own_results: Sequence[SignatureResult] | None = None) -> Authenticity:
    """The verdict on one message (see the module docstring). Never raises on hostile input."""
    from_domain, from_problem = from_domain_of(msg)
    try:
        own = list(own_results) if own_results is not None else (
            verify_dkim(raw, dnsfunc) if msg.get_all("DKIM-Signature") else [])
    except Exception as err:
        own = [SignatureResult("", "temperror", "dkimpy", detail=f"{type(err).__name__}: {err}"[:300])]
    try:
        ar_headers = [str(v) for k, v in msg.raw_items() if k.lower() == "authentication-results"]
    except Exception:
        ar_headers = []
    trusted = trusted_dkim_results(ar_headers, trusted_authserv_ids)
    results = tuple(own + trusted)
    signed = [r for r in results if r.result != "none"]
    if not signed:
        return Authenticity("unverified", from_domain, reason="unsigned: no DKIM signature"
                            + (" (a trusted host saw none)" if trusted else ""), results=results)
    if from_problem:
        return Authenticity("failed", from_domain, reason=f"signed but {from_problem}", results=results)
    definitive = {}
    for r in signed:
        if r.result in ("pass", "fail") and r.domain:
            definitive.setdefault(r.domain, set()).add(r.result)
    conflicts = sorted(d for d, seen in definitive.items() if seen == {"pass", "fail"})
    if conflicts:
        return Authenticity("failed", from_domain, results=results,
                            reason=f"contradicting DKIM results for {', '.join(conflicts)} "
                                   f"({'; '.join(_describe(r) for r in signed)})")
    good = [r for r in signed if r.result == "pass" and aligned(r.domain, from_domain, alignment)]
    if good:
        best = next((r for r in good if r.source == "dkimpy"), good[0])
        return Authenticity("verified", from_domain, signing_domain=best.domain,
                            org_domain=organizational_domain(best.domain),
                            reason=f"dkim=pass d={best.domain} ({best.source}) aligned with From {from_domain}",
                            results=results)
    return Authenticity("failed", from_domain, results=results,
                        reason="no aligned passing DKIM signature: " + "; ".join(
                            _describe(r) + ("" if r.result != "pass" else f" not aligned with From {from_domain}")
                            for r in signed))


def _describe(r: SignatureResult) -> str:
    text = f"dkim={r.result} d={r.domain or '?'}"
    if r.source != "dkimpy":
        text += f" [{r.source}]"
    if r.detail and r.source == "dkimpy" and r.result != "pass":
        text += f" ({r.detail[:120]})"
    return text
