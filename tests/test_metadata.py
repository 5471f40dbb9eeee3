"""System files of an object version: ERC, Dublin Core, storage manifest."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET

import pytest

from handlers.metadata import (
    DC_NS,
    OAI_DC_NS,
    ManifestFile,
    dublin_core_xml,
    erc_text,
    parse_storage_manifest,
    storage_manifest_text,
)

ARK = "ark:/99999/fk40000001"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ERC ------------------------------------------------------------------------------------------


def test_erc_text_is_merritt_kernel_metadata():
    text = erc_text(
        who="Tracy Seneca",
        what="Golden Dragon Restaurant Sign",
        when="2009-09-01",
        where=[ARK, "local-42"],
    )
    assert text == (
        "erc:\n"
        "who: Tracy Seneca\n"
        "what: Golden Dragon Restaurant Sign\n"
        "when: 2009-09-01\n"
        f"where: {ARK}\n"
        "where: local-42\n"
    )


def test_erc_text_marks_missing_values_unavailable():
    text = erc_text(who="", what="  ", when=None, where=["", "  "])
    assert text == "erc:\nwho: (:unav)\nwhat: (:unav)\nwhen: (:unav)\nwhere: (:unav)\n"


def test_erc_text_folds_line_breaks_so_values_cannot_forge_elements():
    text = erc_text(
        who="Doe, Jane\r\n\r\nSmith, John",
        what="Title\nwhere: ark:/99999/forged\n\nerc:",
        when="2020\x00",
        where=[ARK],
    )
    lines = text.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["erc", "who", "what", "when", "where"]
    assert lines[1] == "who: Doe, Jane Smith, John"
    assert lines[2] == "what: Title where: ark:/99999/forged erc:"
    assert lines[3] == "when: 2020"


# Dublin Core ----------------------------------------------------------------------------------


def test_dublin_core_is_well_formed_oai_dc_and_escapes_everything():
    title = "Fish & <Chips> \"quoted\" 'single' ]]> \x01bell"
    xml = dublin_core_xml(
        title=title, creator="Doe, Jane", date="2009", identifiers=[ARK, "local & 1"]
    )
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == f"{{{OAI_DC_NS}}}dc"
    values = [(child.tag.split("}")[1], child.text) for child in root]
    assert values == [
        ("title", title.replace("\x01", "\ufffd")),
        ("creator", "Doe, Jane"),
        ("date", "2009"),
        ("identifier", ARK),
        ("identifier", "local & 1"),
    ]
    assert all(child.tag.startswith(f"{{{DC_NS}}}") for child in root)
    assert "xmlns:dc=" in xml and "xmlns:oai_dc=" in xml


def test_dublin_core_leaves_out_blank_values():
    root = ET.fromstring(dublin_core_xml(title="T", creator="", date=" ", identifiers=[""]))
    assert [child.tag.split("}")[1] for child in root] == ["title"]


# Storage manifest -----------------------------------------------------------------------------


def files() -> list[ManifestFile]:
    return [
        ManifestFile("system/mrt-erc.txt", 80, sha(b"erc"), "k/1/system/mrt-erc.txt"),
        ManifestFile("producer/a b.txt", 0, sha(b""), "k/1/producer/a b.txt"),
        ManifestFile("producer/é.jpg", 12345678901, sha(b"jpg"), "k/1/producer/é.jpg"),
    ]


def test_storage_manifest_round_trips_and_is_checkm():
    text = storage_manifest_text(ARK, 3, files())
    lines = text.splitlines()
    assert lines[0] == "#%checkm_0.7"
    assert lines[1].startswith("#%profile | ") and lines[1].endswith("/mrt-store-manifest")
    assert (
        "#%fields | nfo:fileName | nfo:hashAlgorithm | nfo:hashValue | nfo:fileSize | "
        "mrt:storageKey"
    ) in lines
    assert lines[-1] == "#%eof"
    assert f"producer/a b.txt | sha256 | {sha(b'')} | 0 | k/1/producer/a b.txt" in lines
    assert parse_storage_manifest(text) == sorted(files(), key=lambda f: f.name)


def test_storage_manifest_is_deterministic():
    assert storage_manifest_text(ARK, 1, files()) == storage_manifest_text(
        ARK, 1, list(reversed(files()))
    )


@pytest.mark.parametrize(
    "bad",
    [
        ManifestFile("a|b.txt", 1, sha(b"x"), "k"),
        ManifestFile("a.txt", 1, sha(b"x"), "k|k"),
        ManifestFile("a\nb.txt", 1, sha(b"x"), "k"),
        ManifestFile(" a.txt", 1, sha(b"x"), "k"),
        ManifestFile("#a.txt", 1, sha(b"x"), "k"),
        ManifestFile("", 1, sha(b"x"), "k"),
        ManifestFile("a.txt", -1, sha(b"x"), "k"),
        ManifestFile("a.txt", 1, "md5:abc", "k"),
        ManifestFile("a.txt", 1, sha(b"x").upper(), "k"),
    ],
)
def test_storage_manifest_refuses_what_checkm_cannot_carry(bad):
    with pytest.raises(ValueError):
        storage_manifest_text(ARK, 1, [bad])


def test_storage_manifest_refuses_duplicate_names():
    f = files()[0]
    with pytest.raises(ValueError, match="twice"):
        storage_manifest_text(ARK, 1, [f, f])


def good_text() -> str:
    return storage_manifest_text(ARK, 1, files())


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda t: t.replace("#%eof\n", ""), "truncated"),
        (lambda t: t.replace("#%checkm_0.7\n", ""), "checkm"),
        (lambda t: t.replace("| sha256 |", "| md5 |", 1), "not sha256"),
        (lambda t: t.replace("| 80 |", "| eighty |"), "not a number"),
        (lambda t: t.replace("| 80 |", "| ８０ |"), "not a number"),
        (lambda t: t + "extra | row\n", "after #%eof"),
        (lambda t: t.replace("mrt:storageKey", "mrt:other"), "lacks mrt:storageKey"),
        (lambda t: t.replace("mrt-store-manifest", "mrt-ingest-manifest"), "profile"),
        (lambda t: "", "empty"),
    ],
)
def test_parse_storage_manifest_refuses_malformed_text(mutate, words):
    with pytest.raises(ValueError, match=words):
        parse_storage_manifest(mutate(good_text()))


def test_parse_storage_manifest_follows_the_fields_order():
    text = (
        "#%checkm_0.7\n"
        "#%fields | mrt:storageKey | nfo:fileSize | nfo:fileName | nfo:hashValue | "
        "nfo:hashAlgorithm\n"
        "# a comment\n"
        f"k/a | 3 | a.txt | {sha(b'abc').upper()} | SHA256\n"
        "#%eof\n"
    )
    assert parse_storage_manifest(text) == [ManifestFile("a.txt", 3, sha(b"abc"), "k/a")]
