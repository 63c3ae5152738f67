"""Inputs are read, never followed or trusted (pipeline/ingest.py): listing and reading, without Beam."""
import os
import threading

import pytest

from veilset.pipeline.ingest import (InputError, InputFile, display_name, list_inputs, read_input, safe_detail)


def _tree(root):
    """A folder with every kind of entry the listing must survive; returns the path of a file outside it."""
    root.mkdir()
    (root / "sub").mkdir()
    (root / "a.jpg").write_bytes(b"A")
    (root / "sub" / "b.jpg").write_bytes(b"B")
    outside = root.parent / "secret.txt"
    outside.write_bytes(b"outside")
    os.mkfifo(root / "pipe.jpg")
    os.symlink(outside, root / "secret.jpg")  # a file out of the root
    os.symlink(root.parent, root / "parent")  # a folder out of the root
    os.symlink(root / "nothing", root / "dangling.jpg")
    os.symlink(root / "loop2", root / "loop1")
    os.symlink(root / "loop1", root / "loop2")
    os.symlink("..", root / "sub" / "up")  # a folder link to its own ancestor
    os.symlink("../a.jpg", root / "sub" / "also-a.jpg")  # inside the root: followed (a duplicate of a.jpg)
    os.symlink("sub", root / "sub-link")  # a folder link inside the root: not walked twice
    raw = os.fsencode(str(root))
    for name in (b"bad\xff\xfename.jpg", b"new\nline.jpg", b"x" * 251 + b".jpg", b"back\\slash.jpg", b"tab\t.jpg"):
        with open(os.path.join(raw, name), "wb") as fh:
            fh.write(name)
    (root / ".hidden.jpg").write_bytes(b"H")
    return outside


def test_listing_sorts_every_entry_into_files_and_reasoned_rejects(tmp_path):
    _tree(tmp_path / "in")
    listing = list_inputs([str(tmp_path / "in")])
    files = {f.source: f for f in listing.files}
    assert sorted(files) == ["a.jpg", "back\\\\slash.jpg", "bad\\xff\\xfename.jpg", "new\\nline.jpg", "sub/also-a.jpg",
                             "sub/b.jpg", "tab\\t.jpg", "x" * 251 + ".jpg"]
    assert files["sub/also-a.jpg"].path == os.path.realpath(os.fsencode(str(tmp_path / "in" / "a.jpg")))
    rejects = {r.source: r.reason for r in listing.rejects}
    assert rejects == {"pipe.jpg": "fifo", "secret.jpg": "symlink_outside_root", "parent": "symlink_outside_root",
                       "dangling.jpg": "dangling_symlink", "loop1": "symlink_loop", "loop2": "symlink_loop",
                       "sub/up": "symlink_loop"}
    assert all(r.stage == "list" and r.detail for r in listing.rejects)
    assert listing.count == len(files) + len(rejects)
    for text in [f.source for f in listing.files] + [r.source + r.detail for r in listing.rejects]:
        assert str(tmp_path) not in text and "\n" not in text
        text.encode("utf-8")  # no surrogates: any coder, JSON, log line takes it


def test_follow_symlinks_allows_links_out_of_the_roots_but_not_loops(tmp_path):
    outside = _tree(tmp_path / "in")
    listing = list_inputs([str(tmp_path / "in")], follow_symlinks=True)
    files = {f.source: f for f in listing.files}
    assert files["secret.jpg"].path == os.fsencode(str(outside))
    assert "parent/secret.txt" in files  # the folder out of the root is walked
    rejects = {r.source: r.reason for r in listing.rejects}
    assert rejects["loop1"] == rejects["sub/up"] == "symlink_loop" and rejects["dangling.jpg"] == "dangling_symlink"
    assert rejects["pipe.jpg"] == "fifo"
    assert not any(s.startswith("parent/in/") for s in files)  # the input folder itself is not walked again


def test_sources_are_relative_to_each_root_and_numbered_by_argument(tmp_path):
    (tmp_path / "p" / "q").mkdir(parents=True)
    (tmp_path / "p" / "q" / "1.jpg").write_bytes(b"1")
    (tmp_path / "p" / "2.png").write_bytes(b"2")
    (tmp_path / "3.jpg").write_bytes(b"3")
    os.mkfifo(tmp_path / "p" / "q" / "f.jpg")
    assert [f.source for f in list_inputs([str(tmp_path / "p")]).files] == ["2.png", "q/1.jpg"]
    listing = list_inputs([str(tmp_path / "p"), str(tmp_path / "p" / "**" / "*.jpg"), str(tmp_path / "3.jpg")])
    assert [f.source for f in listing.files] == ["1:2.png", "1:q/1.jpg", "3:3.jpg"]  # q/1.jpg listed once
    assert [(r.source, r.reason) for r in listing.rejects] == [("1:q/f.jpg", "fifo")]
    # an explicit special file or link is a reject too, never an error or a hang
    listing = list_inputs([str(tmp_path / "p" / "q" / "f.jpg")])
    assert listing.files == () and [r.reason for r in listing.rejects] == ["fifo"]
    with pytest.raises(ValueError, match="no input files"):
        list_inputs([str(tmp_path / "*.webp")])


def test_display_names_are_printable_and_unambiguous():
    names = [b"a\\nb", b"a\nb", b"\xff", b"\\xff", "é".encode(), b"\xc3", b"\x7f", b"\xe2\x80\xa8"]
    shown = [display_name(n) for n in names]
    assert len(set(shown)) == len(names)
    assert all(s.isprintable() for s in shown)
    assert shown[:3] == ["a\\\\nb", "a\\nb", "\\xff"] and shown[4] == "é"


def test_safe_detail_keeps_no_path_no_bytes_no_control_characters(tmp_path):
    item = InputFile(os.fsencode(str(tmp_path / "in" / "x.jpg")), "x.jpg")
    text = safe_detail(OSError(f"cannot read '{tmp_path}/in/x.jpg' near /etc/passwd: b'\\x89PNG secret'\n"), item)
    assert text == "OSError: cannot read 'x.jpg' near <path>: <bytes>\\n"
    assert len(safe_detail("y" * 1000)) == 300


def test_reading_refuses_what_was_swapped_in_after_listing(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"photo")
    [item] = list_inputs([str(tmp_path)]).files
    assert read_input(item, 100) == b"photo"
    with pytest.raises(OverflowError):
        read_input(item, 3)
    os.unlink(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "a.jpg")  # a writer that never comes: reading must not wait for it
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("err", pytest.raises(InputError, read_input, item, 100)))
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert result["err"].value.reason == "not_a_regular_file"
    os.unlink(tmp_path / "a.jpg")
    (tmp_path / "elsewhere.jpg").write_bytes(b"other")
    os.symlink(tmp_path / "elsewhere.jpg", tmp_path / "a.jpg")
    with pytest.raises(InputError, match="changed_during_build"):
        read_input(item, 100)
    os.unlink(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes(b"new file")  # same name, another inode
    with pytest.raises(InputError, match="changed_during_build"):
        read_input(item, 100)
