from pathlib import Path

import pytest

from zkqueue.checkm import FIELDS, KINDS, Entry, ManifestError, looks_like_checkm, parse

MERRITT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "merritt-samples"

HEAD = (
    "#%checkm_0.7\n"
    "#%profile | http://uc3.cdlib.org/registry/ingest/manifest/mrt-ingest-manifest\n"
    "#%prefix | nfo: | http://www.semanticdesktop.org/ontologies/2007/03/22/nfo#\n"
    "#%fields | nfo:fileUrl | nfo:hashAlgorithm | nfo:hashValue | nfo:fileSize | nfo:fileName\n"
)  # rows start on line 5


def manifest(*rows: str, eof: str = "#%eof\n") -> str:
    return HEAD + "".join(r + "\n" for r in rows) + eof


@pytest.mark.parametrize("name, kind, count", [
    ("4blocks.checkm", "object", 2),
    ("bigHunt.checkm", "object", 3),
    ("call911.checkm", "object", 2),
    ("sampleBatchOfContainers.checkm", "container-batch", 3),
    ("sampleBatchOfFiles.checkm", "single-file-batch", 3),
    ("sampleBatchOfManifests.checkm", "batch", 3),
])
def test_every_merritt_sample_parses(name, kind, count):
    data = (MERRITT / name).read_bytes()
    assert looks_like_checkm(data)
    m = parse(data, name)
    assert (m.source, m.kind, len(m.entries)) == (name, kind, count)
    assert m.fields[0] == "nfo:fileUrl"
    assert [e.line for e in m.entries] == list(range(6, 6 + count))
    assert all(e.url.startswith("https://raw.githubusercontent.com/CDLUC3/") for e in m.entries)


def test_all_merritt_checkm_files_are_covered():
    assert len(list(MERRITT.glob("*.checkm"))) == 6


def test_merritt_row_values():
    m = parse((MERRITT / "call911.checkm").read_bytes(), "call911.checkm")
    first = m.entries[0]
    assert first.url.endswith("/call911.jpg")
    assert (first.hash_algorithm, first.hash_value) == ("md5", "47d321056e60944a06973793c7b5841e")
    assert first.size == 87112
    assert first.file_name == "call911.jpg"
    assert first.mime_type == ""  # declared, but the row ends before it
    assert first.values["mrt:mimeType"] == ""
    assert set(first.values) == set(m.fields)

    files = parse((MERRITT / "sampleBatchOfFiles.checkm").read_bytes(), "b")
    tumble = files.entries[1]
    assert tumble.title == "Tumble Bug, Luna Park.  Sydney"
    assert (tumble.creator, tumble.date, tumble.local_id) == ("Tracy Seneca", "", "")
    assert files.entries[0].date == "2009-09-01"
    assert tumble.size is None
    assert files.entries[2].hash_algorithm == ""


def test_bom_crlf_comments_blank_lines_and_case_insensitive_fields():
    text = (
        "\ufeff#%checkm_0.7\r\n\r\n"
        "# a comment\r\n"
        "#%profile | http://x/mrt-single-file-batch-manifest\r\n"
        "#%fields | NFO:FILEURL | mrt:title\r\n"
        "http://h/a.jpg | A title\r\n"
        "#%eof\r\n\r\n"
    )
    for data in (text, text.encode("utf-8")):
        m = parse(data, "m")
        assert m.kind == "single-file-batch"
        assert m.fields == ("nfo:fileUrl", "mrt:title")
        assert m.entries == (Entry(line=6, values={"nfo:fileUrl": "http://h/a.jpg",
                                                   "mrt:title": "A title"}),)


def test_looks_like_checkm():
    assert looks_like_checkm(b"\xef\xbb\xbf\n  \n#%checkm_0.7\n")
    assert looks_like_checkm(b"#%checkm_1.0\n")
    assert not looks_like_checkm((MERRITT / "4blocks.jpg").read_bytes())
    assert not looks_like_checkm(b"")
    assert not looks_like_checkm(b"hello #%checkm")


def test_kinds_and_fields_constants():
    assert set(KINDS.values()) == {"object", "batch", "container-batch", "single-file-batch"}
    assert len(FIELDS) == 12


def error(text, source="deposit.checkm") -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse(text, source)
    return caught.value


@pytest.mark.parametrize("text, line, words", [
    ("#%checkm_0.6\n#%eof\n", 1, ["unsupported checkm version", "'#%checkm_0.6'", "#%checkm_0.7"]),
    ("\n\nhello\n", 3, ["not a checkm manifest", "'hello'"]),
    ("#%checkm_0.7\n#%profile | http://x/mrt-nonsense\n#%eof\n", 2,
     ["unknown profile", "mrt-ingest-manifest", "mrt-batch-manifest",
      "mrt-container-batch-manifest", "mrt-single-file-batch-manifest"]),
    ("#%checkm_0.7\n#%profile | http://x/mrt-ingest-manifest\nhttp://h/a\n#%eof\n", 3,
     ["row before any #%fields"]),
    ("#%checkm_0.7\n#%fields | nfo:fileUrl\nhttp://h/a\n#%eof\n", 3, ["row before any #%profile"]),
    (HEAD.replace("nfo:fileName", "nfo:fileNom") + "#%eof\n", 4,
     ["unknown field name 'nfo:fileNom'", "nfo:fileName"]),
    (HEAD.replace("nfo:fileSize", "nfo:fileUrl") + "#%eof\n", 4, ["nfo:fileUrl is listed twice"]),
    (manifest("http://h/a | md5 | 0b21c6d48e815dd537d42dc1cfac0111 | 3 | a | extra"), 5,
     ["expected at most 5 values", "fields: nfo:fileUrl nfo:hashAlgorithm", "found 6"]),
    (manifest("http://h/a", eof=""), 5, ["without #%eof", "truncated"]),
    (manifest("http://h/a", eof="#%eof\n\nhttp://h/b\n"), 8, ["after #%eof (line 6)"]),
    (manifest("http://h/a", eof="#%eof\n# note\n"), 7, ["after #%eof"]),
    (manifest("http://h/a |  |  | -1"), 5, ["nfo:fileSize", "whole number", "'-1'"]),
    (manifest("http://h/a |  |  | 1.5"), 5, ["nfo:fileSize", "'1.5'"]),
    (manifest("http://h/a |  |  | ١٢"), 5, ["nfo:fileSize"]),
    (manifest("http://h/a", " | md5 | abc"), 6, ["no nfo:fileUrl"]),
    (manifest("http://h/a |  | 0b21c6d48e815dd537d42dc1cfac0111"), 5,
     ["nfo:hashValue is given without nfo:hashAlgorithm"]),
    (manifest("http://h/a | md5"), 5, ["nfo:hashAlgorithm 'md5' is given without nfo:hashValue"]),
    (HEAD + "#%profile | http://x/mrt-batch-manifest\n#%eof\n", 5, ["second #%profile", "line 2"]),
    (HEAD + "#%fields | nfo:fileUrl\n#%eof\n", 5, ["second #%fields", "line 4"]),
    ("#%checkm_0.7\n#%profile | http://x/mrt-ingest-manifest\n#%fields | mrt:title\n#%eof\n", 3,
     ["must include nfo:fileUrl"]),
    ("#%checkm_0.7\n#%profile\n#%eof\n", 2, ["#%profile gives no URL"]),
    ("#%checkm_0.7\n#%profile | http://x/mrt-ingest-manifest\n#%eof\n", 3, ["no #%fields"]),
])
def test_errors_name_the_line_and_the_problem(text, line, words):
    err = error(text)
    assert err.line == line
    assert str(err).startswith(f"deposit.checkm line {line}: ")
    for word in words:
        assert word in str(err)


def test_empty_file_has_no_line():
    err = error(b"  \n\n")
    assert err.line is None
    assert str(err) == "deposit.checkm: empty file; expected a checkm manifest (#%checkm_0.7)"


def test_invalid_utf8_names_the_line_and_byte():
    data = manifest("http://h/a |  |  |  | ok.txt").encode().replace(b"ok.txt", b"caf\xe9.txt")
    err = error(data)
    assert err.line == 5
    assert "not valid UTF-8" in str(err) and "0xe9" in str(err)


def test_fewer_values_than_fields_fill_with_empty_strings():
    m = parse(manifest("http://h/a", "http://h/b | sha256 | " + "0" * 64 + " | 12"), "m")
    a, b = m.entries
    assert a.values == {f: "" for f in m.fields} | {"nfo:fileUrl": "http://h/a"}
    assert (a.size, a.file_name, a.hash_algorithm) == (None, "", "")
    assert (b.size, b.hash_algorithm) == (12, "sha256")


def test_manifest_error_str_format():
    assert str(ManifestError("s", 3, "bad")) == "s line 3: bad"
    assert str(ManifestError("s", None, "bad")) == "s: bad"
    e = ManifestError("s", 3, "bad")
    assert (e.source, e.line, e.reason) == ("s", 3, "bad")
    assert isinstance(e, ValueError)
