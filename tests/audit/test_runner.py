"""The good release passes every check; the audit covers every image and format."""
from __future__ import annotations

from veilset.audit import findings as F


def test_good_release_passes_every_check(good_report, built):
    assert [r.check for r in good_report.results] == list(F.CHECKS)
    bad = [f.line() for f in good_report.findings]
    assert bad == [], "\n".join(bad)
    assert good_report.passed
    stats = {r.check: r.stats for r in good_report.results}
    assert stats[F.INTEGRITY]["images"] == 3  # astronaut, hopper, coffee; chelsea was blocked by the ledger
    assert stats[F.TAKEDOWNS]["blocked_ids"] == 1
    assert stats[F.METADATA]["jpegs"] == 9  # 3 images x (Parquet, images/, tar)
    assert stats[F.MASKS]["annotations"] > 0
    assert stats[F.RESIDUAL]["images_scanned"] == 3
    assert stats[F.RESIDUAL]["residual_faces"] == 0


def test_ledger_history_is_in_the_report_with_masked_addresses(good_report):
    text = repr(good_report.ledger_history)
    assert good_report.ledger_history and "applied" in text
    assert "alice@" not in text


def test_release_after_a_real_takedown_passes_every_check(taken_down, production, residual):
    from veilset.api import audit

    report = audit(taken_down.root, ledger=taken_down.ledger, production=production, residual=residual)
    assert report.passed, "\n".join(f.line() for f in report.findings)
    assert report.result(F.INTEGRITY).stats["images"] == 2
    events = [h["event"] for h in report.ledger_history]
    assert "applied" in events and "bob@" not in repr(report.ledger_history)
