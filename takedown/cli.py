"""``veilset takedown ingest|apply|notify|status|review`` (CLI convention: ``add_arguments`` + ``run``)."""
from __future__ import annotations

import argparse
import imaplib
import json
import logging
import os
import re
import signal
import smtplib
import sys
import time
from typing import Any

LOG = logging.getLogger("veilset.takedown")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="takedown_command", required=True, metavar="ACTION")
    for add in (_add_ingest, _add_apply, _add_notify, _add_status, _add_review, _add_find):
        add(sub)


def _add_ingest(sub: Any) -> None:
    ing = sub.add_parser("ingest", help="read removal requests from mail into the ledger")
    ing.add_argument("--ledger", required=True, help="ledger SQLite file (created if missing)")
    src = ing.add_mutually_exclusive_group(required=True)
    src.add_argument("--maildir", help="a Maildir folder (new/ and cur/)")
    src.add_argument("--mbox", help="an mbox file")
    src.add_argument("--eml", help="one .eml file or a folder of them")
    src.add_argument("--imap", help="imap://user@host:port/MAILBOX or imaps://... (password from the environment)")
    ing.add_argument("--imap-password-env", default=None,
                     help="environment variable holding the IMAP password (default: VEILSET_IMAP_PASSWORD)")
    ing.add_argument("--release", default=None, help="release folder: IDs it does not hold are recorded as unknown")
    ing.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                     help="keep ingesting every SECONDS until interrupted")
    ing.add_argument("--require-dkim", action="store_true", default=None,
                     help="quarantine every message that is not verified (a passing DKIM signature aligned with "
                          "From), instead of sending unverified mail to the daily cap and failed mail to review")
    from veilset.takedown.intake import IntakeLimits
    from veilset.takedown.policy import TrustPolicy

    lim, trust = IntakeLimits(), TrustPolicy()
    ing.add_argument("--trusted-authserv-id", action="append", default=None, metavar="ID",
                     help="authserv-id of your receiving mail host (e.g. mx.example.org): its "
                          "Authentication-Results headers are believed, all others ignored (repeatable; "
                          "the host must strip incoming headers with its id, RFC 8601 section 5)")
    ing.add_argument("--max-ids-per-domain", "--abuse-ids-per-day", dest="max_ids_per_domain", type=int,
                     default=None, metavar="N",
                     help=f"image IDs removed automatically per verified signing domain in any 24 h; more wait "
                          f"in review (default {trust.ids_per_domain_per_day}; --abuse-ids-per-day is the old name)")
    ing.add_argument("--unverified-ids-per-day", type=int, default=None, metavar="N",
                     help=f"image IDs removed automatically in any 24 h for all unsigned mail together; more "
                          f"wait in review (default {trust.unverified_ids_per_day}; 0: unsigned mail always waits)")
    ing.add_argument("--dkim-alignment", choices=("relaxed", "strict"), default=None,
                     help=f"From domain vs signing domain: same organizational domain (relaxed) or the same "
                          f"domain (strict) (default {trust.alignment})")
    ing.add_argument("--max-message-bytes", type=int, default=None,
                     help=f"larger messages are quarantined (default {lim.max_message_bytes})")
    ing.add_argument("--max-ids", type=int, default=None,
                     help=f"most IDs in one message (default {lim.max_ids_per_message})")
    ing.add_argument("--max-parts", type=int, default=None,
                     help=f"most MIME parts in one message (default {lim.max_parts})")
    ing.add_argument("--max-mime-depth", type=int, default=None, help=f"default {lim.max_mime_depth}")
    ing.add_argument("--id-pattern", default=None, help="regular expression finding image IDs in mail text")


def _add_apply(sub: Any) -> None:
    ap = sub.add_parser("apply", help="remove the images of received requests from a release (release + 1)",
                        description="Rewrites only the shards holding requested images; crash-safe (rerun "
                                    "completes an interrupted apply). Exit 3 when another apply holds the lock.")
    ap.add_argument("--ledger", required=True)
    ap.add_argument("--release", required=True, help="release folder (local)")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes re-encoding touched shards in parallel (default: CPU count)")
    ap.add_argument("--lock-wait", type=float, default=None, metavar="SECONDS",
                    help="wait this long for another apply to finish (default: fail at once)")


def _add_find(sub: Any) -> None:
    fd = sub.add_parser("find", help="which published images of a release are these photos (or copies of them)",
                        description="Prints one line per published image whose PDQ hash is within 47 bits of a "
                                    "photo (any rotation or mirroring, inside borders): PHOTO IMAGE_ID DISTANCE "
                                    "match|review (match: <= 31 bits, the same image; review: a person looks). "
                                    "A PHOTO of 64 hex digits is taken as a PDQ hash.")
    fd.add_argument("--release", required=True, help="release folder")
    fd.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (JPEG, PNG, WebP, ...) or PDQ hashes")
    fd.add_argument("--json", action="store_true", help="one JSON object per match")


def _run_find(args: argparse.Namespace) -> int:
    from veilset.takedown.find import find_hash, find_photo, release_index

    found = release_index(args.release)
    for photo in args.photos:
        if len(photo) == 64 and all(c in "0123456789abcdefABCDEF" for c in photo) and not os.path.exists(photo):
            matches = find_hash(found, photo)
        else:
            with open(photo, "rb") as fh:
                matches = find_photo(found, photo, fh.read())
        if not matches:
            print(json.dumps({"photo": photo, "image_id": None}) if args.json else f"{photo}\t-\tno match")
        for m in matches:
            print(json.dumps(m.to_dict(), sort_keys=True) if args.json
                  else f"{photo}\t{m.image_id}\t{m.distance}\t{m.band}")
    return 0


def _add_notify(sub: Any) -> None:
    no = sub.add_parser("notify", help="send receipts for applied requests")
    no.add_argument("--ledger", required=True)
    dst = no.add_mutually_exclusive_group(required=True)
    dst.add_argument("--smtp", metavar="HOST:PORT")
    dst.add_argument("--outbox", metavar="DIR", help="write receipts as .eml files here instead")
    no.add_argument("--starttls", action="store_true", default=False)
    no.add_argument("--from", dest="from_addr", default=None, help="receipt sender address")


def _add_status(sub: Any) -> None:
    st = sub.add_parser("status", help="ledger summary")
    st.add_argument("--ledger", required=True)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--approve", type=int, default=None, metavar="REQUEST_ID",
                    help="move a request in review/quarantine back to received (operator decision; "
                         "same as review --approve)")


def _add_review(sub: Any) -> None:
    rv = sub.add_parser("review", help="requests waiting for a person: list them, approve or reject one",
                        description="Lists the requests in review with why each waits. --approve makes one "
                                    "pending for apply (as a verified request); --reject closes it (nothing "
                                    "removed, no receipt). Every decision is recorded in the ledger's "
                                    "append-only history with who, when and why.")
    rv.add_argument("--ledger", required=True)
    act = rv.add_mutually_exclusive_group()
    act.add_argument("--approve", type=int, default=None, metavar="REQUEST_ID")
    act.add_argument("--reject", type=int, default=None, metavar="REQUEST_ID")
    rv.add_argument("--reason", default=None, help="why (required with --reject; recorded with --approve)")
    rv.add_argument("--by", default=None, help="who decides (default: USER@HOST of this shell)")
    rv.add_argument("--all", action="store_true", help="also list quarantined requests")
    rv.add_argument("--json", action="store_true", help="machine-readable output")


def _ledger(path: str, *, must_exist: bool = False):
    import os

    from veilset.takedown.ledger import Ledger

    if must_exist and not os.path.isfile(path):
        raise ValueError(f"--ledger {path!r} does not exist")
    return Ledger(path)


def _policy(args: argparse.Namespace):
    from veilset.takedown.intake import IntakeLimits, IntakePolicy

    limits: dict[str, Any] = {}
    for arg, field in (("max_message_bytes", "max_message_bytes"), ("max_ids", "max_ids_per_message"),
                       ("max_parts", "max_parts"), ("max_mime_depth", "max_mime_depth")):
        value = getattr(args, arg)
        if value is not None:
            limits[field] = value
    kwargs: dict[str, Any] = {"limits": IntakeLimits(**limits)}
    if args.require_dkim:
        kwargs["require_dkim"] = True
    trust: dict[str, Any] = {}
    if args.max_ids_per_domain is not None:
        trust["ids_per_domain_per_day"] = args.max_ids_per_domain
    if args.unverified_ids_per_day is not None:
        trust["unverified_ids_per_day"] = args.unverified_ids_per_day
    if args.trusted_authserv_id:
        trust["trusted_authserv_ids"] = frozenset(args.trusted_authserv_id)
    if args.dkim_alignment is not None:
        trust["alignment"] = args.dkim_alignment
    from veilset.takedown.policy import TrustPolicy

    kwargs["trust"] = TrustPolicy(**trust)
    if args.id_pattern is not None:
        try:
            kwargs["id_pattern"] = re.compile(args.id_pattern)
        except re.error as err:
            raise ValueError(f"--id-pattern {args.id_pattern!r}: {err}") from None
    return IntakePolicy(**kwargs)


def _ingest_once(args: argparse.Namespace, ledger, policy, known) -> dict[str, Any]:
    from veilset.takedown import intake

    if args.imap:
        from veilset.takedown.imap import DEFAULT_PASSWORD_ENV, ImapSource

        src = ImapSource(args.imap, password_env=args.imap_password_env or DEFAULT_PASSWORD_ENV,
                         limits=policy.limits)
        with src:
            current: dict[str, bytes] = {}

            def fetched():
                for uid, raw in src.messages():
                    current["uid"] = uid
                    yield raw

            # flag a message only after its request is committed to the ledger
            res = intake.ingest(ledger, fetched(), policy, known,
                                on_recorded=lambda _raw, _rid, _created: src.mark_processed(current["uid"]))
    elif args.maildir:
        res = intake.ingest(ledger, intake.iter_maildir(args.maildir, policy.limits), policy, known)
    elif args.mbox:
        res = intake.ingest(ledger, intake.iter_mbox(args.mbox, policy.limits), policy, known)
    else:
        res = intake.ingest(ledger, intake.iter_eml(args.eml, policy.limits), policy, known)
    return {"messages": res.seen, "new": res.new, "duplicates": res.duplicates, "by_state": res.by_state}


def _check_mail_source(args: argparse.Namespace) -> None:
    """A missing Maildir/mbox/.eml is a typo: refuse it before the ledger file is created."""
    import os

    for flag, path, ok in (("--maildir", args.maildir, os.path.isdir), ("--mbox", args.mbox, os.path.isfile),
                           ("--eml", args.eml, os.path.exists)):
        if path is not None and not ok(path):
            kind = "folder" if flag == "--maildir" else "file" if flag == "--mbox" else "file or folder"
            raise ValueError(f"{flag} {path!r}: no such {kind}")
    from veilset.release import storage

    if args.release is not None and not storage.is_remote(args.release) and not os.path.isdir(args.release):
        raise ValueError(f"--release {args.release!r}: no such folder")


def _run_ingest(args: argparse.Namespace) -> int:
    from veilset.takedown import intake

    if args.watch is not None and args.watch <= 0:
        raise ValueError(f"--watch must be > 0 seconds, got {args.watch}")
    if args.imap:
        from veilset.takedown.imap import parse_imap_url

        parse_imap_url(args.imap)
    elif args.imap_password_env is not None:
        raise ValueError("--imap-password-env only applies to --imap")
    _check_mail_source(args)
    policy = _policy(args)
    ledger = _ledger(args.ledger)
    stop = {"now": False}
    if args.watch is not None:
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while True:
            known = intake.load_release_ids(args.release) if args.release else None
            try:
                summary = _ingest_once(args, ledger, policy, known)
            except (OSError, imaplib.IMAP4.error, RuntimeError) as err:
                if args.watch is None:
                    print(f"veilset takedown ingest: cannot read mail: {type(err).__name__}: {err}", file=sys.stderr)
                    return 1
                LOG.error("ingest failed, retrying in %s s: %s", args.watch, err)  # a mail server outage
            else:
                print(json.dumps(summary, sort_keys=True), flush=True)
            if args.watch is None or stop["now"]:
                return 0
            deadline = time.monotonic() + args.watch
            while time.monotonic() < deadline and not stop["now"]:
                time.sleep(min(0.5, args.watch))
            if stop["now"]:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        ledger.close()


def _run_apply(args: argparse.Namespace) -> int:
    from veilset.takedown.apply import ApplyLocked, apply_pending

    if args.lock_wait is not None and args.lock_wait < 0:
        raise ValueError(f"--lock-wait must be >= 0, got {args.lock_wait}")
    ledger = _ledger(args.ledger, must_exist=True)
    try:
        kwargs: dict[str, Any] = {"lock_wait_s": args.lock_wait} if args.lock_wait is not None else {}
        if args.workers is not None:
            kwargs["workers"] = args.workers
        report = apply_pending(ledger, args.release, **kwargs)
    except ApplyLocked as err:
        print(f"veilset takedown apply: {err}", file=sys.stderr)
        return 3
    finally:
        ledger.close()
    print(json.dumps(report.to_dict(), sort_keys=True))
    return 0


def _run_notify(args: argparse.Namespace) -> int:
    from veilset.takedown.notify import notify_pending

    ledger = _ledger(args.ledger, must_exist=True)
    kwargs: dict[str, Any] = {"smtp": args.smtp, "outbox": args.outbox, "starttls": args.starttls}
    if args.from_addr is not None:
        kwargs["from_addr"] = args.from_addr
    try:
        report = notify_pending(ledger, **kwargs)
    except (OSError, smtplib.SMTPException) as err:  # server down, TLS refused: nothing was marked notified
        print(f"veilset takedown notify: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
    print(json.dumps(report.__dict__, sort_keys=True))
    return 0 if report.failed == 0 else 1


def status_dict(ledger) -> dict[str, Any]:
    reqs = ledger.requests()
    return {
        "schema_version": ledger.schema_version(),
        "requests": ledger.counts(),
        "blocked_images": len(ledger.blocked_image_ids()),
        "items": [{"id": r.id, "state": r.state, "sender": r.sender, "message_id": r.message_id,
                   "received_at": r.received_at, "reason": r.reason, "dkim": r.dkim, "release": r.applied_release,
                   "authenticity": r.authenticity, "auth_domain": r.auth_domain, "decided_by": r.decided_by,
                   "ids": {s: n for s, n in _id_counts(ledger, r.id).items() if n}} for r in reqs],
    }


def _id_counts(ledger, request_id: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in ledger.request_ids(request_id):
        out[r.status] = out.get(r.status, 0) + 1
    return out


def _operator() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry
        user = "operator"
    return f"{user}@{socket.gethostname()}"


def review_dict(ledger, *, include_quarantined: bool = False) -> dict[str, Any]:
    from datetime import datetime, timedelta, timezone

    since = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    states = ("review", "quarantined") if include_quarantined else ("review",)
    items = []
    domains: set[str] = set()
    for state in states:
        for r in ledger.requests(state):
            ids = [x.image_id for x in ledger.request_ids(r.id)]
            if r.authenticity == "verified" and r.auth_domain:
                domains.add(r.auth_domain)
            try:
                auth = json.loads(r.auth_detail) if r.auth_detail else {}
            except ValueError:
                auth = {}
            items.append({"id": r.id, "state": state, "received_at": r.received_at, "sender": r.sender,
                          "message_id": r.message_id, "authenticity": r.authenticity or "not assessed",
                          "auth_domain": r.auth_domain, "auth_reason": auth.get("reason", ""),
                          "why": r.reason, "ids": len(ids), "image_ids": ids[:20]})
    usage = {"unverified": ledger.automatic_usage(since)}
    usage.update({d: ledger.automatic_usage(since, org_domain=d) for d in sorted(domains)})
    return {"pending": items, "automatic_ids_last_24h": usage}


def _run_review(args: argparse.Namespace) -> int:
    if args.reject is not None and not (args.reason and args.reason.strip()):
        raise ValueError("--reject needs --reason TEXT (recorded in the ledger's history)")
    if args.reason is not None and args.approve is None and args.reject is None:
        raise ValueError("--reason goes with --approve or --reject")
    ledger = _ledger(args.ledger, must_exist=True)
    try:
        by = args.by or _operator()
        if args.approve is not None:
            ledger.approve(args.approve, note=args.reason or "", by=by)
            print(f"#{args.approve} approved by {by}: pending for apply")
        elif args.reject is not None:
            ledger.reject(args.reject, reason=args.reason, by=by)
            print(f"#{args.reject} rejected by {by}: {args.reason}")
        data = review_dict(ledger, include_quarantined=args.all)
    finally:
        ledger.close()
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
        return 0
    usage = ", ".join(f"{k} {v}" for k, v in data["automatic_ids_last_24h"].items())
    print(f"{len(data['pending'])} waiting for a person; IDs removed automatically in the last 24 h: {usage}")
    for it in data["pending"]:
        who = f"{it['sender'] or '-'} ({it['authenticity']}" + (f" {it['auth_domain']}" if it["auth_domain"] else "")
        print(f"#{it['id']:<5} {it['state']:<11} {it['received_at'][:19]}  {who})  {it['ids']} IDs")
        print(f"       why: {it['why']}")
    return 0


def _run_status(args: argparse.Namespace) -> int:
    ledger = _ledger(args.ledger, must_exist=True)
    try:
        if args.approve is not None:
            ledger.approve(args.approve, note="veilset takedown status --approve", by=_operator())
        data = status_dict(ledger)
    finally:
        ledger.close()
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
        return 0
    c = data["requests"]
    print(f"ledger schema v{data['schema_version']}: " + ", ".join(f"{k} {v}" for k, v in c.items())
          + f"; {data['blocked_images']} images blocked")
    for it in data["items"]:
        ids = " ".join(f"{k}={v}" for k, v in sorted(it["ids"].items()))
        extra = f" release {it['release']}" if it["release"] is not None else ""
        reason = f"  ({it['reason']})" if it["reason"] else ""
        print(f"#{it['id']:<5} {it['state']:<11} {it['sender'] or '-':<30} {ids}{extra}{reason}")
    return 0


def run(args: argparse.Namespace) -> int:
    handlers = {"ingest": _run_ingest, "apply": _run_apply, "notify": _run_notify, "status": _run_status,
                "review": _run_review, "find": _run_find}
    return handlers[args.takedown_command](args)
