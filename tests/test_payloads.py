from pathlib import Path

import pytest

from zkqueue import checkm
from zkqueue.checkm import ManifestError
from zkqueue.payloads import FileSpec, JobSpec, expand, object_files

MERRITT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "merritt-samples"
GITHUB = "https://raw.githubusercontent.com/CDLUC3/mrt-doc/main/sampleFiles/"


def sample(name: str) -> bytes:
    return (MERRITT / name).read_bytes()


def batch(kind: str, *rows: str) -> bytes:
    return (
        "#%checkm_0.7\n"
        f"#%profile | http://uc3.cdlib.org/registry/ingest/manifest/{kind}\n"
        "#%fields | nfo:fileUrl | nfo:hashAlgorithm | nfo:hashValue | nfo:fileSize"
        " | nfo:fileName | mrt:localIdentifier | mrt:title\n"
        + "".join(r + "\n" for r in rows) + "#%eof\n"
    ).encode()


def test_batch_of_manifests():
    url = "http://queue.example/deposits/sampleBatchOfManifests.checkm"
    exp = expand(url, sample("sampleBatchOfManifests.checkm"), "sampleBatchOfManifests.checkm")
    assert exp.manifest_type == "batch-manifest"
    assert [j.key for j in exp.jobs] == ["000006", "000007", "000008"]
    assert [j.payload_url for j in exp.jobs] == [
        GITHUB + "bigHunt.checkm", GITHUB + "4blocks.checkm", GITHUB + "call911.checkm"]
    assert {j.payload_type for j in exp.jobs} == {"manifest"}
    assert {j.file_name for j in exp.jobs} == {""}
    assert [j.title for j in exp.jobs] == [
        "", "Motel Capri - manifest style", "If This Bell Rings Call 911 - manifest style"]
    assert {j.creator for j in exp.jobs} == {"Tracy Seneca"}
    assert [j.date for j in exp.jobs] == ["2009-09-01", "2009-09-01T00:00:00",
                                          "2009-09-01T00:00:00"]
    assert [j.line for j in exp.jobs] == [6, 7, 8]


def test_batch_of_containers():
    exp = expand(GITHUB + "sampleBatchOfContainers.checkm",
                 sample("sampleBatchOfContainers.checkm"), "containers")
    assert exp.manifest_type == "container-batch-manifest"
    assert [(j.payload_type, j.file_name) for j in exp.jobs] == [
        ("container", "huskyChicken.zip"), ("container", "outdoorStore.zip"),
        ("container", "souvenirs.zip")]
    assert [j.title for j in exp.jobs] == [
        "Husky Chicken", "The Outdoor Store, Portland OR", "SouvenirsLast Summer"]
    assert [j.creator for j in exp.jobs] == ["Tracy Seneca", "", "Tracy Seneca"]
    assert [j.date for j in exp.jobs] == ["2009-09-01", "", ""]
    assert {j.digest for j in exp.jobs} == {None}


def test_batch_of_files():
    exp = expand(GITHUB + "sampleBatchOfFiles.checkm", sample("sampleBatchOfFiles.checkm"), "files")
    assert exp.manifest_type == "single-file-batch-manifest"
    golden, tumble, drapery = exp.jobs
    assert golden == JobSpec(
        key="000006", payload_url=GITHUB + "goldenDragon.jpg", payload_type="file",
        file_name="goldenDragon.jpg", local_id="", primary_id="",
        title="Golden Dragon Restaurant Sign", creator="Tracy Seneca", date="2009-09-01",
        digest={"algorithm": "md5", "value": "aa59e145dfb2237ecd8cb5ce4f4953ea"}, size=None,
        line=6)
    assert tumble.title == "Tumble Bug, Luna Park.  Sydney"
    assert (drapery.title, drapery.digest, drapery.creator) == ("General Drapery", None, "")


@pytest.mark.parametrize("name", ["4blocks.checkm", "bigHunt.checkm", "call911.checkm"])
def test_object_manifest_is_one_manifest_job_for_the_payload_itself(name):
    exp = expand(GITHUB + name, sample(name), name)
    assert exp.manifest_type == "object-manifest"
    assert exp.jobs == [JobSpec("000000", GITHUB + name, "manifest", "")]


def test_a_file_payload_is_one_file_job():
    exp = expand("http://h/some%20dir/call%20911.jpg?x=1", sample("call911.jpg"), "call 911.jpg")
    assert exp.manifest_type == "file"
    assert exp.jobs == [JobSpec("000000", "http://h/some%20dir/call%20911.jpg?x=1", "file",
                                "call 911.jpg")]


@pytest.mark.parametrize("url", ["http://h/", "http://h/dir/%2E%2E", "http://h/a%00b"])
def test_a_file_payload_without_a_usable_name_is_refused(url):
    with pytest.raises(ManifestError, match="no usable file name") as err:
        expand(url, b"just bytes", "payload")
    assert err.value.line is None


def test_expansion_is_deterministic():
    data = sample("sampleBatchOfFiles.checkm")
    assert expand(GITHUB + "b", data, "b") == expand(GITHUB + "b", data, "b")


def test_relative_urls_resolve_against_the_payload_url():
    data = batch("mrt-single-file-batch-manifest", "a.jpg", "sub/b%20c.jpg", "../up/d.jpg",
                 "https://other.example/e.jpg")
    exp = expand("http://h/deposits/x/batch.checkm", data, "batch.checkm")
    assert [j.payload_url for j in exp.jobs] == [
        "http://h/deposits/x/a.jpg", "http://h/deposits/x/sub/b%20c.jpg",
        "http://h/deposits/up/d.jpg", "https://other.example/e.jpg"]
    assert [j.file_name for j in exp.jobs] == ["a.jpg", "b c.jpg", "d.jpg", "e.jpg"]


def test_single_file_batch_name_comes_from_file_name_then_url():
    data = batch("mrt-single-file-batch-manifest", "http://h/x.bin |  |  | 5 | photos/x.jpg",
                 "http://h/y.bin")
    jobs = expand("http://h/b", data, "b").jobs
    assert [(j.file_name, j.size) for j in jobs] == [("photos/x.jpg", 5), ("y.bin", None)]


def test_digest_is_normalised():
    data = batch("mrt-single-file-batch-manifest", "http://h/a | MD5 | " + "AB" * 16)
    assert expand("http://h/b", data, "b").jobs[0].digest == {"algorithm": "md5",
                                                              "value": "ab" * 16}


@pytest.mark.parametrize("kind, rows, line, words", [
    ("mrt-batch-manifest", ["http://h/a |  |  |  |  | obj-1", "http://h/b |  |  |  |  | obj-2",
                            "http://h/c |  |  |  |  | obj-1"], 6,
     ["local identifier 'obj-1'", "also used on line 4"]),
    ("mrt-single-file-batch-manifest", ["http://h/a |  |  |  | ../../etc/passwd"], 4,
     ["'../../etc/passwd'", "'..'"]),
    ("mrt-container-batch-manifest", ["http://h/ |  |  |  |  "], 4, ["give nfo:fileName"]),
    ("mrt-single-file-batch-manifest", ["http://h/a | crc32 | 1234"], 4,
     ["unsupported digest algorithm 'crc32'", "md5, sha1, sha256, sha512"]),
    ("mrt-single-file-batch-manifest", ["http://h/a | md5 | 1234"], 4,
     ["md5 value must be 32 hexadecimal digits", "'1234'"]),
])
def test_bad_batch_rows_name_the_line(kind, rows, line, words):
    with pytest.raises(ManifestError) as err:
        expand("http://h/b.checkm", batch(kind, *rows), "b.checkm")
    assert err.value.line == line
    assert str(err.value).startswith(f"b.checkm line {line}: ")
    for word in words:
        assert word in str(err.value)


def test_rows_without_local_ids_are_not_duplicates():
    data = batch("mrt-batch-manifest", "http://h/a", "http://h/a")
    assert len(expand("http://h/b", data, "b").jobs) == 2


def test_empty_batch_is_refused():
    with pytest.raises(ManifestError, match="lists no objects"):
        expand("http://h/b", batch("mrt-container-batch-manifest"), "b")


def test_a_broken_manifest_payload_is_a_manifest_error_not_a_file():
    with pytest.raises(ManifestError, match="truncated"):
        expand("http://h/b.checkm", sample("4blocks.checkm").replace(b"#%eof", b""), "b.checkm")


# -- object_files --------------------------------------------------------------------------


def test_object_files_of_each_merritt_object():
    m = checkm.parse(sample("call911.checkm"), "call911.checkm")
    assert object_files(m, base_url="http://h/x/call911.checkm") == [
        FileSpec("call911.jpg", GITHUB + "call911.jpg",
                 {"algorithm": "md5", "value": "47d321056e60944a06973793c7b5841e"}, 87112, 6),
        FileSpec("call911.txt", GITHUB + "call911.txt",
                 {"algorithm": "md5", "value": "77fe42b1055bbabe5164822823218f0a"}, 46, 7),
    ]
    big = object_files(checkm.parse(sample("bigHunt.checkm"), "bigHunt.checkm"))
    assert [(f.name, f.size, f.digest) for f in big] == [
        ("bigHunt2.jpg", 76935, None), ("bigHunt3.jpg", 55408, None), ("bigHunt.txt", 33, None)]
    assert len(object_files(checkm.parse(sample("4blocks.checkm"), "4blocks"))) == 2


def object_manifest(*rows: str, source="http://h/deposit/obj.checkm") -> checkm.Manifest:
    text = ("#%checkm_0.7\n#%profile | http://x/mrt-ingest-manifest\n"
            "#%fields | nfo:fileUrl | nfo:hashAlgorithm | nfo:hashValue | nfo:fileSize"
            " | nfo:fileLastModified | nfo:fileName\n"
            + "".join(r + "\n" for r in rows) + "#%eof\n")
    return checkm.parse(text, source)


def test_object_file_urls_resolve_against_source_or_base_url():
    m = object_manifest("files/a.txt", "http://other/b.txt |  |  |  |  | sub//b.txt")
    assert [(f.name, f.url) for f in object_files(m)] == [
        ("a.txt", "http://h/deposit/files/a.txt"), ("sub/b.txt", "http://other/b.txt")]
    assert object_files(m, base_url="file:///data/in/m.checkm")[0].url == (
        "file:///data/in/files/a.txt")


@pytest.mark.parametrize("rows, line, words", [
    (["http://h/a.txt", "http://h/b.txt", "http://h/x/a.txt"], 6,
     ["'a.txt' is used twice", "see also line 4"]),
    (["http://h/a |  |  |  |  | img", "http://h/b |  |  |  |  | img/b.jpg"], 5,
     ["'img/b.jpg' needs 'img' to be a folder", "see also line 4"]),
    (["http://h/a |  |  |  |  | /etc/passwd"], 4, ["absolute path"]),
    (["http://h/a |  |  |  |  | C:\\evil.exe"], 4, ["backslash"]),
    (["http://h/dir/"], 4, ["give nfo:fileName"]),
    (["http://h/a | sha256 | 00"], 4, ["sha256 value must be 64 hexadecimal digits"]),
])
def test_bad_object_rows_name_the_line(rows, line, words):
    with pytest.raises(ManifestError) as err:
        object_files(object_manifest(*rows, source="obj.checkm"))
    assert err.value.line == line
    for word in words:
        assert word in str(err.value)


def test_object_files_refuses_a_batch_and_an_empty_object():
    m = checkm.parse(sample("sampleBatchOfFiles.checkm"), "b.checkm")
    with pytest.raises(ManifestError, match="expected an object manifest.*single-file-batch"):
        object_files(m)
    with pytest.raises(ManifestError, match="lists no files"):
        object_files(object_manifest())
