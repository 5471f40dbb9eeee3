"""The inventory against both backends: real SQLite files and a real PostgreSQL server (a fresh
database per test), shared by threads and by separate connections."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from zkqueue.inventory import FileRecord, Inventory, InventoryError, VersionRecord

ARK = "ark:/99999/fk40000001"


def version(n: int, job: str = "jid0000000001", ark: str = ARK, files=None, **kw) -> VersionRecord:
    fields = dict(
        ark=ark,
        version=n,
        profile="demo",
        local_id="local-1",
        job_id=job,
        batch_id="bid0000000001",
        submission_mode="add",
        created="2024-05-01T00:00:00+00:00",
        files=files
        if files is not None
        else [
            FileRecord("b.txt", 2, "b" * 64, f"k/{n}/producer/b.txt", md5="f" * 32),
            FileRecord("a.txt", 1, "a" * 64, f"k/{n}/producer/a.txt"),
        ],
    )
    fields.update(kw)
    return VersionRecord(**fields)


@dataclass
class Db:
    """Where a test's inventory lives, and a way to query it behind the Inventory's back."""

    url: str
    base_dir: Path
    raw: Callable[[str], list]

    def open(self) -> Inventory:
        return Inventory.open(self.url, base_dir=self.base_dir)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Db:
    if request.param == "sqlite":

        def raw_sqlite(sql: str) -> list:
            with sqlite3.connect(tmp_path / "var" / "inventory.db") as conn:
                return conn.execute(sql).fetchall()

        return Db("sqlite:///var/inventory.db", tmp_path, raw_sqlite)
    url = request.getfixturevalue("pg_server").new_database()

    def raw_pg(sql: str) -> list:
        with psycopg.connect(url) as conn:
            return conn.execute(sql).fetchall()

    return Db(url, tmp_path, raw_pg)


@pytest.fixture
def inv(db) -> Inventory:
    inventory = db.open()
    yield inventory
    inventory.close()


def test_open_creates_a_wal_database_relative_to_base_dir(tmp_path):
    Inventory.open("sqlite:///var/inventory.db", base_dir=tmp_path).close()
    with sqlite3.connect(tmp_path / "var" / "inventory.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]


def test_open_absolute_url_and_reopen_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path}/abs/inv.db"
    assert url.startswith("sqlite:////")
    first = Inventory.open(url, base_dir=Path("/nonexistent"))
    first.bind_local_id("demo", "x", ARK)
    first.close()
    second = Inventory.open(url)
    assert second.ark_for_local_id("demo", "x") == ARK
    second.close()


@pytest.mark.parametrize(
    "url", ["mysql://user:hunter2@db/x", "sqlite://", "sqlite:///:memory:", "postgresql:/x"]
)
def test_open_refuses_unsupported_urls_without_echoing_secrets(url):
    with pytest.raises(InventoryError) as err:
        Inventory.open(url)
    assert "hunter2" not in str(err.value)
    assert err.value.permanent


def test_bind_local_id_keeps_the_first_binding(inv):
    assert inv.ark_for_local_id("demo", "local-1") is None
    assert inv.bind_local_id("demo", "local-1", ARK) == ARK
    assert inv.bind_local_id("demo", "local-1", "ark:/99999/fk4other") == ARK
    assert inv.ark_for_local_id("demo", "local-1") == ARK
    assert inv.ark_for_local_id("other-profile", "local-1") is None
    assert inv.bind_local_id("other-profile", "local-1", "ark:/99999/fk4other") == (
        "ark:/99999/fk4other"
    )


def test_record_version_and_read_it_back(inv):
    assert inv.latest_version(ARK) is None
    assert inv.record_version(version(1)) is True
    assert inv.record_version(version(2, job="jid0000000002", submission_mode="update")) is True

    latest = inv.latest_version(ARK)
    assert latest.version == 2 and latest.job_id == "jid0000000002"
    assert latest.submission_mode == "update"
    assert [f.path for f in latest.files] == ["a.txt", "b.txt"]
    assert latest.files[1] == FileRecord("b.txt", 2, "b" * 64, "k/2/producer/b.txt", "f" * 32)
    assert latest.files[0].md5 is None
    assert [v.version for v in inv.versions(ARK)] == [1, 2]
    assert all(len(v.files) == 2 for v in inv.versions(ARK))
    assert inv.versions("ark:/99999/fk4none") == []
    assert inv.ark_for_local_id("demo", "local-1") == ARK


def test_record_version_is_idempotent_for_the_same_job(inv, db):
    assert inv.record_version(version(1)) is True
    assert inv.record_version(version(1, files=[FileRecord("c", 1, "c" * 64, "k")])) is False
    assert [f.path for f in inv.latest_version(ARK).files] == ["a.txt", "b.txt"]
    assert db.raw("SELECT COUNT(*) FROM version_files") == [(2,)]


def test_record_version_by_another_job_names_both_jobs(inv):
    inv.record_version(version(1, job="jid0000000001"))
    with pytest.raises(InventoryError) as err:
        inv.record_version(version(1, job="jid0000000009"))
    assert "jid0000000001" in str(err.value) and "jid0000000009" in str(err.value)
    assert err.value.permanent
    assert inv.latest_version(ARK).job_id == "jid0000000001"


def test_record_version_refuses_a_gap_in_the_versions(inv):
    with pytest.raises(InventoryError) as err:
        inv.record_version(version(2))
    assert "latest recorded version is 0" in str(err.value)
    assert err.value.permanent
    assert inv.latest_version(ARK) is None


def test_record_version_refuses_another_profile(inv):
    inv.record_version(version(1))
    with pytest.raises(InventoryError) as err:
        inv.record_version(version(2, job="jid2", profile="other"))
    assert "belongs to profile 'demo'" in str(err.value)
    assert inv.latest_version(ARK).version == 1


def test_record_version_refuses_duplicate_paths(inv):
    dup = [FileRecord("a", 1, "a" * 64, "k1"), FileRecord("a", 1, "a" * 64, "k2")]
    with pytest.raises(InventoryError) as err:
        inv.record_version(version(1, files=dup))
    assert "duplicate" in str(err.value) and err.value.permanent


def test_record_version_refuses_a_local_id_bound_to_another_ark(inv, db):
    inv.bind_local_id("demo", "local-1", "ark:/99999/fk4someone-else")
    with pytest.raises(InventoryError) as err:
        inv.record_version(version(1))
    assert "fk4someone-else" in str(err.value)
    assert db.raw("SELECT COUNT(*) FROM objects") == [(0,)]


def test_a_failing_record_writes_nothing(inv, db):
    broken = version(
        1, files=[FileRecord("a.txt", 1, "a" * 64, "k"), FileRecord("b", None, "b", "k")]
    )
    with pytest.raises(InventoryError) as err:
        inv.record_version(broken)
    assert err.value.permanent
    for table in ("objects", "versions", "version_files", "local_ids"):
        assert db.raw(f"SELECT COUNT(*) FROM {table}") == [(0,)], table
    assert inv.record_version(version(1)) is True


def test_concurrent_writers_agree(db):
    # Two Inventory objects: separate connections contend like separate processes would.
    invs = [db.open() for _ in range(2)]
    outcomes: list = []
    lock = threading.Lock()

    def work(i: int) -> None:
        inv = invs[i % 2]
        for n in range(20):
            bound = inv.bind_local_id("demo", f"lid-{n}", f"ark:/99999/fk4-{i}-{n}")
            assert inv.ark_for_local_id("demo", f"lid-{n}") == bound
            try:
                result = inv.record_version(
                    version(1, job=f"jid-{i}", ark=f"ark:/99999/race{n}", local_id="")
                )
            except InventoryError as exc:
                result = str(exc)
            with lock:
                outcomes.append((n, result))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))

    for n in range(20):
        arks = {inv.ark_for_local_id("demo", f"lid-{n}") for inv in invs}
        assert len(arks) == 1
        results = [r for m, r in outcomes if m == n]
        assert results.count(True) == 1
        assert all(isinstance(r, str) and "already recorded" in r for r in results if r is not True)
    for inv in invs:
        inv.close()


def test_batch_summary_and_job_outcomes_upsert(inv):
    assert inv.batch_summary("bid1") is None and inv.batch_status("bid1") is None
    inv.save_batch_summary("bid1", "reporting", {"completed": 1, "failed": []})
    inv.save_batch_summary("bid1", "failed", {"completed": 1, "failed": ["jid2"], "é": "ü"})
    assert inv.batch_summary("bid1") == {"completed": 1, "failed": ["jid2"], "é": "ü"}
    assert inv.batch_status("bid1") == "failed"
    with pytest.raises(InventoryError):
        inv.save_batch_summary("bid1", "failed", {"x": object()})

    inv.save_job_outcome("jid2", "bid1", "failed", "l2", "", "digest mismatch")
    inv.save_job_outcome("jid1", "bid1", "processing", "l1", ARK, "")
    inv.save_job_outcome("jid1", "bid1", "completed", "l1", ARK, "ok")
    inv.save_job_outcome("jid3", "bid2", "completed", "l3", ARK, "")
    outcomes = inv.job_outcomes("bid1")
    assert [(o["job_id"], o["status"], o["message"]) for o in outcomes] == [
        ("jid1", "completed", "ok"),
        ("jid2", "failed", "digest mismatch"),
    ]
    assert outcomes[0]["ark"] == ARK and outcomes[0]["local_id"] == "l1"
    assert inv.job_outcomes("bid-none") == []


def test_closed_inventory_refuses_use(db):
    inv = db.open()
    other = threading.Thread(target=lambda: inv.ark_for_local_id("demo", "x"))
    other.start()
    other.join()
    inv.close()
    with pytest.raises(InventoryError):
        inv.ark_for_local_id("demo", "x")
