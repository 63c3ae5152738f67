from __future__ import annotations

import json
import os

from veilset.cli import main
from tests.audit.conftest import index_rows


def test_cli_passes_on_the_good_release_and_writes_the_report(built, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["audit", "--release", built.root, "--ledger", built.ledger, "--report", str(out), "--sample", "1",
               "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is True and (out / "report.html").stat().st_size > 0
    assert json.load(open(out / "report.json"))["passed"] is True


def test_cli_exits_1_and_names_file_image_and_check(built, copy_release, capsys):
    root = copy_release()
    row = index_rows(root)[0]
    with open(os.path.join(root, row["file_name"]), "ab") as fh:
        fh.write(b"trailing")
    rc = main(["audit", "--release", root, "--sample", "1"])
    assert rc == 1
    out = capsys.readouterr().out
    assert f"[metadata] {row['file_name']} {row['image_id']}: 8 byte(s) after EOI" in out
    assert "audit FAILED" in out


def test_cli_rejects_bad_options(built, tmp_path, capsys):
    assert main(["audit", "--release", built.root, "--sample", "0"]) == 2
    assert "--sample" in capsys.readouterr().err
    assert main(["audit", "--release", built.root, "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert main(["audit", "--release", str(tmp_path)]) == 2
    assert main(["audit", "--release", built.root, "--report", os.path.join(built.root, "audit")]) == 2
    assert "inside the release" in capsys.readouterr().err
    assert main(["audit", "--release", built.root, "--face-detector", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert main(["audit", "--release", built.root, "--ledger", str(tmp_path / "missing.sqlite")]) == 2
    assert "missing.sqlite" in capsys.readouterr().err


def test_cli_progress_log_lines_end_at_images_times_checks(built, capsys, caplog):
    import logging

    from veilset.audit import findings as F
    from veilset.release.manifest import load_manifest

    total = load_manifest(built.root)["counts"]["published"] * len(F.CHECKS)
    with caplog.at_level(logging.INFO, logger="veilset.progress"):
        assert main(["audit", "--release", built.root, "--ledger", built.ledger, "--sample", "1",
                     "--progress", "log"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "veilset.progress"]
    assert lines and lines[-1].startswith(f"progress: {total}/{total} image checks (100%)"), lines
    assert "audit PASSED" in capsys.readouterr().out  # the summary stays


def test_cli_checks_runs_only_the_named_checks(built, copy_release, capsys):
    from veilset.audit import findings as F

    root = copy_release()
    row = index_rows(root)[0]
    with open(os.path.join(root, row["file_name"]), "ab") as fh:
        fh.write(b"trailing")  # a metadata and an integrity finding
    assert main(["audit", "--release", root, "--checks", "masks,takedowns", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["check"] for r in doc["checks"]] == [F.TAKEDOWNS, F.MASKS]  # registry order
    assert main(["audit", "--release", root, "--checks", "metadata", "--json"]) == 1
    [result] = json.loads(capsys.readouterr().out)["checks"]
    assert result["check"] == F.METADATA and result["findings"][0]["image_id"] == row["image_id"]


def test_cli_checks_rejects_an_unknown_name_with_exit_2(built, capsys):
    assert main(["audit", "--release", built.root, "--checks", "metadata,metdata"]) == 2
    err = capsys.readouterr().err
    assert "'metdata'" in err and "integrity" in err


def test_cli_help_lists_the_checks(capsys):
    import pytest

    from veilset.audit.checks import CHECKS

    with pytest.raises(SystemExit) as exit_:
        main(["audit", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--checks" in out and all(name in out for name in CHECKS.names())
