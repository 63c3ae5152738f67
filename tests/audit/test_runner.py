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


class RecordingProgress:
    """A reporter factory (what ``veilset.progress.factory`` returns) that records what it is shown."""

    def __init__(self) -> None:
        self.total, self.unit, self.updates, self.closed = None, None, [], False

    def __call__(self, total, unit="images", stream=None):
        self.total, self.unit = total, unit
        return self

    def update(self, done, note=""):
        self.updates.append((done, note))

    def close(self):
        self.closed = True


def test_progress_moves_per_image_through_every_check_to_the_total(built, production, residual):
    from veilset.audit.runner import run_audit
    from veilset.release.manifest import load_manifest

    published = load_manifest(built.root)["counts"]["published"]
    shown = RecordingProgress()
    report = run_audit(built.root, production=production, residual=residual, progress=shown)
    assert report.passed
    assert shown.unit == "image checks" and shown.total == published * len(F.CHECKS) and shown.closed
    done = [d for d, _ in shown.updates]
    assert done == sorted(done) and done[-1] == shown.total
    assert {note for _, note in shown.updates} == set(F.CHECKS)
    residual_steps = [d for d, note in shown.updates if note == F.RESIDUAL]
    assert len(set(residual_steps)) >= published  # per image, not one jump per check
