"""``veilset build --help`` names every option's default and the ``--`` Beam passthrough; ``--version`` works."""
from __future__ import annotations

import pytest

from veilset import __version__
from veilset.cli import main, make_parser


def _subparser(parser, name):
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sub.choices[name]


def test_build_help_lists_every_default_and_the_beam_passthrough(capsys):
    build = _subparser(make_parser("build"), "build")
    for action in build._actions:
        if action.dest in ("help", "inputs") or action.required:
            continue
        assert "default" in (action.help or ""), f"{action.option_strings}: {action.help!r}"
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = capsys.readouterr().out
    assert "-- --runner DataflowRunner" in out and "--debug" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"veilset {__version__}"
