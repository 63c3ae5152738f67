from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from veilset.audit.findings import CHECKS, RESIDUAL, CheckResult, Finding
from veilset.audit.imaging import anonymized_thumbnail
from veilset.audit.report import render_html, report_dict, write_report
from veilset.audit.runner import AuditReport

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)


def _failing_report(good_report) -> AuditReport:
    """The good report plus one residual finding with a thumbnail (as a scan of a bad release would give)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    finding = Finding(check=RESIDUAL, file="images/00000/sa_" + "0" * 32 + ".jpg", image_id="sa_" + "0" * 32,
                      message="face <script>alert(1)</script> outside the anonymized regions",
                      box_xyxy=(100.0, 50.0, 160.0, 130.0), score=0.9,
                      thumbnail_png=anonymized_thumbnail(pixels, (100, 50, 160, 130)))
    results = tuple(CheckResult.from_findings(RESIDUAL, [finding], r.message, r.stats) if r.check == RESIDUAL
                    else r for r in good_report.results)
    return AuditReport(good_report.release_dir, good_report.manifest, results, good_report.ledger_history,
                       good_report.detection_stats)


def test_report_json_has_every_check(good_report, tmp_path):
    json_path, html_path = write_report(_failing_report(good_report), str(tmp_path))
    doc = json.load(open(json_path))
    assert [c["check"] for c in doc["checks"]] == list(CHECKS)
    assert doc["passed"] is False
    [bad] = [c for c in doc["checks"] if c["status"] == "fail"]
    assert bad["findings"][0]["image_id"] == "sa_" + "0" * 32 and bad["findings"][0]["thumbnail_png_base64"]
    assert doc["ledger_history"] and "alice@" not in json.dumps(doc)
    assert report_dict(good_report)["passed"] is True


def test_html_is_self_contained_and_escaped(good_report):
    page = render_html(_failing_report(good_report))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page and "https://" not in page.replace("https://github.com", "")  # nothing fetched
    assert page.count("data:image/png;base64,") >= 4  # 3 charts + 1 thumbnail
    for check in CHECKS:
        assert check in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(good_report, tmp_path):
    _, html_path = write_report(_failing_report(good_report), str(tmp_path / "report"))
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           "file://" + os.path.abspath(html_path)]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    assert shot.stat().st_size > 10_000
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 10  # text, tables and charts, not a blank page
    top = pixels[:300]
    assert (top < 100).mean() > 0.001  # dark text in the header


def test_report_carries_the_calibration_of_the_identity_checks(good_report):
    from veilset.audit.identifiable import FACE_MIN_DETAIL, PLATE_MIN_CHARS

    doc = report_dict(good_report)
    assert doc["calibration"]["face"]["min_detail"] == FACE_MIN_DETAIL
    assert doc["calibration"]["plate"]["min_chars"] == PLATE_MIN_CHARS
    assert doc["calibration"]["face"]["anonymized_max"] < FACE_MIN_DETAIL <= doc["calibration"]["face"]["original_min"]
    page = render_html(good_report)
    assert "<b>Calibration</b>: faces: identifiable when facial detail &gt;= " in page


def test_every_finding_that_names_an_image_shows_its_published_pixels(built, copy_release, tmp_path):
    from veilset.audit import findings as F
    from veilset.audit.imaging import box_thumbnail, decode_rgb, image_thumbnail
    from veilset.audit.runner import run_audit
    from veilset.release import ids
    from tests.audit.conftest import coco_path, load_json, published_pixels, row_of, save_json
    from tests.audit.tamper import EXIF, with_segment

    root = copy_release()
    coffee, astronaut = built.image_ids["coffee"], built.image_ids["astronaut"]
    path = coco_path(root, coffee)  # masks: an annotation's area is wrong
    doc = load_json(path)
    ann = next(a for a in doc["annotations"] if a["image_id"] == ids.int_id(coffee))
    ann["area"] += 5
    save_json(path, doc)
    rel = row_of(root, astronaut)["file_name"]  # metadata: an EXIF segment in the images/ copy
    jpeg = with_segment(open(os.path.join(root, rel), "rb").read(), 0xE1, EXIF)
    open(os.path.join(root, rel), "wb").write(jpeg)
    report = run_audit(root, checks=[F.INTEGRITY, F.METADATA, F.MASKS])

    [mask] = report.result(F.MASKS).findings
    x, y, w, h = ann["bbox"]
    assert mask.box_xyxy == (x, y, x + w, y + h)
    assert mask.thumbnail_png == box_thumbnail(np.asarray(published_pixels(root, coffee)), mask.box_xyxy)
    meta = [f for f in report.result(F.METADATA).findings if f.file == rel]
    assert meta and all(f.thumbnail_png == image_thumbnail(decode_rgb(jpeg)) for f in meta)
    source = np.asarray(Image.open(built.inputs["astronaut"]).convert("RGB"))
    assert meta[0].thumbnail_png != image_thumbnail(source)  # the published (anonymized) pixels, not the source's
    assert all(f.thumbnail_png for f in report.findings if f.image_id)
    release_wide = [f for f in report.findings if not f.image_id]
    assert release_wide  # the coco file's sha256 no longer matches the manifest
    doc = report_dict(report)
    shown = [fd for c in doc["checks"] for fd in c["findings"]]
    assert all(("thumbnail_png_base64" in fd) == bool(fd["image_id"]) for fd in shown)
    assert all(fd["thumbnail"] == "no image" for fd in shown if not fd["image_id"])
    page = render_html(report)
    assert page.count(">no image<") == len(release_wide)
    assert page.count("alt='published pixels'") == len(report.findings) - len(release_wide)
