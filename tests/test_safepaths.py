import os

import pytest

from zkqueue.safepaths import UnsafePath, first_conflict, join_inside, safe_relpath


@pytest.mark.parametrize("name, expected", [
    ("a.txt", "a.txt"),
    ("dir/a.txt", "dir/a.txt"),
    ("a//b", "a/b"),
    ("./a", "a"),
    ("a/./b/", "a/b"),
    ("ark:/13030/x", "ark:/13030/x"),
    ("Tumble Bug, Luna Park.  Sydney.jpg", "Tumble Bug, Luna Park.  Sydney.jpg"),
    ("..a/b..", "..a/b.."),
])
def test_accepted_names_are_normalised(name, expected):
    assert safe_relpath(name) == expected


@pytest.mark.parametrize("name, why", [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("C:\\x", "backslash"),
    ("C:/x", "drive letter"),
    ("\\\\server\\share", "backslash"),
    ("a\\..\\b", "backslash"),
    ("../evil", "'..'"),
    ("a/../../evil", "'..'"),
    ("a/..", "'..'"),
    (".", "names no file"),
    ("./", "names no file"),
    ("//", "absolute"),
    ("a\x00b", "U+0000"),
    ("a\nb", "U+000A"),
    ("a\x7fb", "U+007F"),
    ("x" * 256, "255 bytes"),
])
def test_refused_names_say_which_and_why(name, why):
    with pytest.raises(UnsafePath) as err:
        safe_relpath(name)
    assert repr(name)[:40] in str(err.value)
    assert why in str(err.value)


def test_join_inside_stays_inside(tmp_path):
    assert join_inside(tmp_path, "a//b.txt") == tmp_path / "a" / "b.txt"
    with pytest.raises(UnsafePath):
        join_inside(tmp_path, "../x")


def test_join_inside_refuses_a_symlink_that_leads_out(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(UnsafePath, match="outside"):
        join_inside(root, "link/file.txt")
    os.symlink(root / "real", root / "inner")
    assert join_inside(root, "inner/f") == root / "inner" / "f"


@pytest.mark.parametrize("names, expected", [
    (["a", "b", "c/d"], None),
    (["a", "b", "a"], (0, 2, "used twice")),
    (["a", "a/b"], (0, 1, "also a file")),
    (["a/b", "a"], (0, 1, "needed as a folder")),
    (["x/y/z", "x/y"], (0, 1, "needed as a folder")),
])
def test_first_conflict(names, expected):
    found = first_conflict(names)
    if expected is None:
        assert found is None
    else:
        assert found[:2] == expected[:2]
        assert expected[2] in found[2]
