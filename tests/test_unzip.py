import os
import stat
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from handlers.unzip import UnsafeArchive, ZipLimits, safe_extract

MERRITT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "merritt-samples"


@pytest.mark.parametrize("name, expected", [
    ("huskyChicken.zip", ["huskyChicken.jpg", "huskyChicken.txt", "huskyButchery.jpg"]),
    ("outdoorStore.zip", ["outdoorNight.jpg", "outdoorNight.txt", "outdoorStetson.jpg",
                          "outdoorStore.jpg", "outdoorStore.txt", "outdoorAcme.jpg",
                          "outdoorComplete.jpg", "outdoorMore.txt"]),
    ("souvenirs.zip", ["souvenirs.txt", "souvenirs.jpg"]),
])
def test_merritt_sample_zips(name, expected, tmp_path):
    assert safe_extract(MERRITT / name, tmp_path / "out") == expected
    with zipfile.ZipFile(MERRITT / name) as zf:
        for info in zf.infolist():
            written = tmp_path / "out" / info.filename
            assert written.read_bytes() == zf.read(info)
            assert time.localtime(written.stat().st_mtime)[:6] == info.date_time


def make_zip(path: Path, entries: list, compression=zipfile.ZIP_DEFLATED) -> Path:
    """entries: (name or ZipInfo, bytes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are made on purpose
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def refused(tmp_path, entries, limits=None, **kw) -> str:
    archive = make_zip(tmp_path / "deposit.zip", entries, **kw)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchive) as err:
        safe_extract(archive, dest, limits or ZipLimits())
    assert not dest.exists() or list(dest.rglob("*")) == [], "nothing may be written"
    assert str(err.value).startswith("deposit.zip: ")
    return str(err.value)


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("entries, words", [
    ([("good.txt", b"ok"), ("../evil", b"x")], ["entry '../evil'", "'..'"]),
    ([("good.txt", b"ok"), ("a/../../evil", b"x")], ["'a/../../evil'", "'..'"]),
    ([("/etc/cron.d/evil", b"x")], ["'/etc/cron.d/evil'", "absolute"]),
    ([("..\\evil.txt", b"x")], ["backslash"]),
    ([("C:/evil.txt", b"x")], ["drive letter"]),
    ([("good.txt", b"ok"), (symlink("link"), b"/etc/passwd")], ["'link'", "symbolic link"]),
    ([("a.txt", b"1"), ("b.txt", b"2"), ("a.txt", b"3")], ["'a.txt' is used twice"]),
    ([("x", b"1"), ("x/y", b"2")], ["'x' and 'x/y' clash"]),
    ([("big.bin", b"\0" * (2 << 20))], ["'big.bin'", "more than 200 times", "zip bomb"]),
])
def test_bad_entries_are_refused_before_writing(entries, words, tmp_path):
    message = refused(tmp_path, entries)
    for word in words:
        assert word in message


def test_too_many_files(tmp_path):
    entries = [(f"f{i}.txt", b"x") for i in range(4)]
    assert "more than the limit of 3 files" in refused(tmp_path, entries, ZipLimits(max_files=3))
    assert len(safe_extract(tmp_path / "deposit.zip", tmp_path / "ok", ZipLimits(max_files=4))) == 4


def test_total_size_limit(tmp_path):
    entries = [("a", b"x" * 600), ("b", b"y" * 600)]
    message = refused(tmp_path, entries, ZipLimits(max_total_bytes=1000))
    assert "more than the limit of 1000 bytes" in message


def test_high_ratio_is_fine_for_small_entries(tmp_path):
    archive = make_zip(tmp_path / "z.zip", [("zeros", b"\0" * (1 << 20))])
    assert safe_extract(archive, tmp_path / "out") == ["zeros"]
    assert (tmp_path / "out" / "zeros").stat().st_size == 1 << 20


def test_ratio_limit_is_configurable(tmp_path):
    archive = make_zip(tmp_path / "z.zip", [("zeros", b"\0" * (2 << 20))])
    assert safe_extract(archive, tmp_path / "out", ZipLimits(max_ratio=10_000)) == ["zeros"]


def test_encrypted_entries_are_refused(tmp_path):
    archive = make_zip(tmp_path / "deposit.zip", [("secret.txt", b"x")])
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"PK\x03\x04") + 6] |= 0x1  # "encrypted" flag, local header
    raw[raw.index(b"PK\x01\x02") + 8] |= 0x1  # and central directory
    archive.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchive, match="'secret.txt' is encrypted"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_zip(tmp_path):
    bogus = tmp_path / "deposit.zip"
    bogus.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(UnsafeArchive, match="deposit.zip: not a readable zip archive"):
        safe_extract(bogus, tmp_path / "out")


def test_truncated_zip(tmp_path):
    data = (MERRITT / "souvenirs.zip").read_bytes()
    cut = tmp_path / "souvenirs.zip"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeArchive, match="souvenirs.zip: not a readable zip archive"):
        safe_extract(cut, tmp_path / "out")


def test_crc_error_is_reported_and_cleaned_up(tmp_path):
    archive = make_zip(tmp_path / "deposit.zip", [("first.txt", b"fine"),
                                                   ("second.txt", b"A" * 100)],
                       compression=zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    at = data.index(b"A" * 100)
    data[at] = ord("B")
    archive.write_bytes(bytes(data))
    with pytest.raises(UnsafeArchive) as err:
        safe_extract(archive, tmp_path / "out", archive_name="upload 7.zip")
    assert str(err.value).startswith("upload 7.zip: entry 'second.txt' is corrupt")
    assert "CRC" in str(err.value)
    assert list((tmp_path / "out").rglob("*.txt")) == []


def test_a_lying_declared_size_lets_no_extra_bytes_through(tmp_path):
    archive = make_zip(tmp_path / "deposit.zip", [("data.bin", b"Z" * 5000)],
                       compression=zipfile.ZIP_STORED)
    raw = bytearray(archive.read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")  # uncompressed size
    archive.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchive, match="'data.bin' is corrupt"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "data.bin").exists()


def test_single_top_level_folder_is_stripped(tmp_path):
    archive = make_zip(tmp_path / "z.zip", [
        ("photos/", b""), ("photos/a.jpg", b"a"), ("photos/sub/b.txt", b"b"),
        ("__MACOSX/photos/._a.jpg", b"junk"), ("photos/.DS_Store", b"junk")])
    assert safe_extract(archive, tmp_path / "out") == ["a.jpg", "sub/b.txt"]
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")) == [
        "a.jpg", "sub", "sub/b.txt"]


def test_no_stripping_with_a_top_level_file_or_two_folders(tmp_path):
    one = make_zip(tmp_path / "one.zip", [("photos/a.jpg", b"a"), ("readme.txt", b"r")])
    assert safe_extract(one, tmp_path / "o1") == ["photos/a.jpg", "readme.txt"]
    two = make_zip(tmp_path / "two.zip", [("a/x", b"a"), ("b/y", b"r")])
    assert safe_extract(two, tmp_path / "o2") == ["a/x", "b/y"]


def test_a_symlink_already_in_dest_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    os.symlink(outside, dest / "link")
    archive = make_zip(tmp_path / "z.zip", [("link/evil.txt", b"x"), ("other.txt", b"y")])
    with pytest.raises(UnsafeArchive, match="'link/evil.txt'.*outside"):
        safe_extract(archive, dest)
    assert list(outside.iterdir()) == []


def test_rerun_overwrites_and_modes_are_not_applied(tmp_path):
    info = zipfile.ZipInfo("run.sh")
    info.external_attr = (stat.S_IFREG | 0o4777) << 16
    archive = make_zip(tmp_path / "z.zip", [(info, b"echo hi")])
    dest = tmp_path / "out"
    assert safe_extract(archive, dest) == ["run.sh"]
    assert safe_extract(archive, dest) == ["run.sh"]
    mode = (dest / "run.sh").stat().st_mode
    assert not mode & (stat.S_ISUID | stat.S_IXUSR)
