"""The front door's progress reporters (``veilset.progress``): text, log interval on a fake clock, the bar."""
from __future__ import annotations

import io

import pytest

from veilset import progress
from veilset.cli import main


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_describe_gives_count_percent_rate_and_eta():
    assert progress.describe(120, 500, 40.0) == "120/500 images (24%), 3.00 images/s, ETA 3 min"
    assert progress.describe(0, 9, 3.0) == "0/9 images (0%)"  # no rate before the first one
    assert progress.describe(9, 9, 30.0) == "9/9 images (100%), 0.30 images/s"  # no ETA at the end
    assert progress.describe(5, 10, 0.5, "image checks", "residual") == \
        "5/10 image checks (50%), 10 image checks/s, ETA 1 s [residual]"
    assert progress.describe(0, 0, 1.0) == "0/0 images (100%)"


def test_eta_is_rounded_up_to_the_unit_shown():
    assert [progress.format_eta(s) for s in (0, 0.2, 59, 60, 61, 3600, 3661)] == [
        "0 s", "1 s", "59 s", "1 min", "2 min", "1 h 00 min", "1 h 02 min"]


def test_log_progress_writes_one_line_per_interval_and_ends_at_total():
    clock, lines = FakeClock(), []
    rep = progress.LogProgress(9, clock=clock, emit=lines.append, every=10.0)
    for done in range(1, 5):
        clock.now += 2.0
        rep.update(done)
    assert lines == []  # 8 s: nothing yet
    clock.now += 2.0
    rep.update(5)
    assert lines == ["progress: 5/9 images (55%), 0.50 images/s, ETA 8 s"]
    clock.now += 1.0
    rep.update(20)  # never more than the total
    rep.update(3)  # never backwards
    rep.close()
    assert lines[-1] == "progress: 9/9 images (100%), 0.82 images/s" and len(lines) == 2
    rep.close()
    assert len(lines) == 2  # the end is shown once


def test_log_progress_does_not_repeat_the_end_when_it_was_just_shown():
    clock, lines = FakeClock(), []
    rep = progress.LogProgress(3, clock=clock, emit=lines.append, every=10.0)
    clock.now += 10.0
    rep.update(3, "encode")
    rep.close()
    assert lines == ["progress: 3/3 images (100%), 0.30 images/s [encode]"]


def test_bar_reaches_the_total_on_its_stream():
    stream = FakeTerminal()
    rep = progress.factory("auto")(9, "images", stream)
    assert isinstance(rep, progress.BarProgress)
    for done in (2, 5, 9, 12):
        rep.update(done, "check")
    assert rep.done == 9
    rep.close()
    text = stream.getvalue()
    assert "9/9" in text and "100%" in text and "check" in text


def test_auto_is_a_bar_on_a_terminal_and_log_lines_elsewhere():
    assert progress.resolve("auto", FakeTerminal()) == "bar"
    assert progress.resolve("auto", io.StringIO()) == "log"
    assert progress.resolve("log", FakeTerminal()) == "log"
    assert isinstance(progress.factory("log")(3, "images", FakeTerminal()), progress.LogProgress)
    none = progress.factory("none")(3)
    none.update(3)
    none.close()
    with pytest.raises(ValueError, match="--progress must be one of auto, bar, log, none"):
        progress.factory("loud")


def test_progress_option_is_validated_and_documented(capsys):
    with pytest.raises(SystemExit) as err:
        main(["build", "x", "--output", "y", "--progress", "loud"])
    assert err.value.code == 2 and "--progress" in capsys.readouterr().err
    for command in ("build", "audit"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--progress {auto,bar,log,none}" in capsys.readouterr().out
