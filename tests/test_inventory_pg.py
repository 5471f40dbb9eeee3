"""The PostgreSQL inventory against a real server: URLs and passwords, races between processes,
writers of one ARK taking turns, lock timeouts and dropped connections.

The behaviour both backends share is tested in test_inventory.py, on each of them.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from urllib.parse import quote

import psycopg
import pytest

from tests import pg
from tests.test_inventory import version
from zkqueue import inventory as inventory_mod
from zkqueue.config import load
from zkqueue.inventory import FileRecord, Inventory, InventoryError

ARK = "ark:/99999/fk4pg00001"


@pytest.fixture
def url(pg_server) -> str:
    return pg_server.new_database()


def dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


def zkqueue_backends(server: pg.PgServer, url: str) -> list[tuple[int, str]]:
    """(pid, wait_event_type) of the inventory's own connections to url's database."""
    with server.admin() as conn:
        return conn.execute(
            "SELECT pid, coalesce(wait_event_type, '') FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'zkqueue'",
            (dbname(url),),
        ).fetchall()


def wait_for_lock_wait(server: pg.PgServer, url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(w == "Lock" for _, w in zkqueue_backends(server, url)):
            return
        time.sleep(0.02)
    raise AssertionError("the inventory never waited for the lock")


# -- URLs and passwords --------------------------------------------------------------------------


def test_password_from_url_env_or_setting_and_postgres_scheme(pg_server, url):
    name = dbname(url)
    bare = pg_server.url(name, password=False)
    inv = Inventory.open(pg_server.url(name, scheme="postgres"))
    inv.bind_local_id("demo", "l1", ARK)
    inv.close()
    for kwargs in (
        {"password_env": "INV_PW", "environ": {"INV_PW": pg.PASSWORD}},
        {"password": pg.PASSWORD},
        # the environment wins over the setting, as for the minter and mail
        {"password": "stale", "password_env": "INV_PW", "environ": {"INV_PW": pg.PASSWORD}},
    ):
        inv = Inventory.open(bare, **kwargs)
        assert inv.ark_for_local_id("demo", "l1") == ARK, kwargs
        inv.close()
    with pytest.raises(InventoryError) as err:
        Inventory.open(bare, password_env="INV_UNSET", environ={})
    assert "INV_UNSET" in str(err.value) and err.value.permanent


def test_from_config_reads_password_env(pg_server, url, monkeypatch):
    monkeypatch.setenv("ZKQ_TEST_INVENTORY_PW", pg.PASSWORD)
    bare = pg_server.url(dbname(url), password=False)
    cfg = load(environ={}, overrides={"inventory": {"url": bare,
                                                    "password_env": "ZKQ_TEST_INVENTORY_PW"}})
    inv = Inventory.from_config(cfg)
    assert inv.bind_local_id("demo", "l1", ARK) == ARK
    inv.close()


def test_errors_never_show_the_password(pg_server, url):
    wrong = "wr0ng-hunter2"
    bad_url = pg_server.url(dbname(url), password=False).replace(
        f"{pg.USER}@", f"{pg.USER}:{wrong}@")
    with pytest.raises(InventoryError) as err:
        Inventory.open(bad_url)
    text = str(err.value)
    assert "password authentication failed" in text
    assert wrong not in text and f"{pg.USER}:***@127.0.0.1" in text
    assert not err.value.permanent, "a password may be fixed without touching the inventory"

    with pytest.raises(InventoryError) as err:
        Inventory.open(pg_server.url(dbname(url), password=False), password=wrong)
    assert wrong not in str(err.value) and "authentication failed" in str(err.value)

    inv = Inventory.open(url)
    with pytest.raises(InventoryError) as err:
        inv.record_version(version(1, files=[FileRecord("a", None, "a", "k")]))
    text = str(err.value)
    assert "null value" in text and err.value.permanent
    assert pg.PASSWORD not in text and quote(pg.PASSWORD, safe="") not in text
    assert f"{pg.USER}:***@" in text
    inv.close()

    cfg = load(environ={}, overrides={"inventory": {"url": url}})
    assert pg.PASSWORD not in repr(cfg.redacted())
    assert quote(pg.PASSWORD, safe="") not in repr(cfg.redacted())
    assert cfg.redacted()["inventory"]["url"].startswith(f"postgresql://{pg.USER}:***@")


@pytest.mark.parametrize(
    "bad, why",
    [
        ("postgresql://u:hunter2@127.0.0.1:1", "names no database"),
        ("postgresql://u:hunter2@127.0.0.1/db?nonsense=1", "not valid"),
        # libpq quotes the bad token, here the password itself
        ("postgresql://u:hun%zzter2@127.0.0.1/db", "invalid percent-encoded token"),
    ],
)
def test_unusable_urls_are_refused_without_the_password(bad, why):
    with pytest.raises(InventoryError) as err:
        Inventory.open(bad)
    assert why in str(err.value) and "hunter2" not in str(err.value)
    assert "zzter" not in str(err.value) and "u:***@127.0.0.1" in str(err.value)
    assert err.value.permanent


# -- races between processes ---------------------------------------------------------------------


def _racer(url: str, i: int, barrier, results) -> None:
    """One process: open the (maybe still empty) database, then record and bind the same
    things as every other racer, under its own job id and ARKs."""
    barrier.wait(30)
    out = []
    try:
        inv = Inventory.open(url)
        for n in range(8):
            bound = inv.bind_local_id("demo", f"lid-{n}", f"ark:/99999/fk4-{i}-{n}")
            try:
                ok = inv.record_version(
                    version(1, job=f"jid-{i}", ark=f"ark:/99999/race{n}", local_id="")
                )
            except InventoryError as exc:
                ok = str(exc)
            out.append((n, bound, ok))
        inv.close()
    except Exception as exc:  # reported to the test, which fails on it
        out.append(("error", repr(exc), None))
    results.put((i, out))


def test_processes_racing_agree_on_one_winner(pg_server, url):
    ctx = multiprocessing.get_context("spawn")
    n_proc = 4
    barrier, results = ctx.Barrier(n_proc), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(url, i, barrier, results)) for i in range(n_proc)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    rows = [row for out in got.values() for row in out]
    assert not [r for r in rows if r[0] == "error"], rows
    assert len(rows) == n_proc * 8
    inv = Inventory.open(url)
    for n in range(8):
        mine = [(bound, ok) for m, bound, ok in rows if m == n]
        # bind_local_id race: every process got the one ARK that is bound
        assert {bound for bound, _ in mine} == {inv.ark_for_local_id("demo", f"lid-{n}")}
        winners = [ok for _, ok in mine if ok is True]
        assert len(winners) == 1, mine
        winner = inv.latest_version(f"ark:/99999/race{n}").job_id
        for _, ok in mine:
            if ok is not True:
                assert f"already recorded by job {winner}" in ok, ok
    inv.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_info").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM versions").fetchone() == (8,)
        assert conn.execute("SELECT COUNT(*) FROM version_files").fetchone() == (16,)


# -- writers of one ARK take turns --------------------------------------------------------------


def _hold(url: str, ark: str, n: int, job: str, new_object: bool) -> psycopg.Connection:
    """Another writer, half-way: version n of ark recorded by job, not yet committed."""
    conn = psycopg.connect(url)
    if new_object:
        conn.execute("INSERT INTO objects VALUES (%s, 'demo', '', 'now')", (ark,))
    conn.execute("SELECT 1 FROM objects WHERE ark = %s FOR UPDATE", (ark,))
    conn.execute(
        "INSERT INTO versions VALUES (%s, %s, 'demo', '', %s, 'bid1', 'add', 'now')", (ark, n, job)
    )
    return conn


def _in_thread(fn, *args) -> tuple[threading.Thread, list]:
    out: list = []

    def run() -> None:
        try:
            out.append(fn(*args))
        except InventoryError as exc:
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, out


@pytest.mark.parametrize("new_object", [True, False])
def test_a_second_writer_of_the_same_version_waits_and_loses(pg_server, url, new_object):
    inv = Inventory.open(url)
    n = 1 if new_object else 2
    if not new_object:
        inv.record_version(version(1, ark=ARK, local_id=""))
    other = _hold(url, ARK, n, "jid-first", new_object)
    t, out = _in_thread(inv.record_version, version(n, job="jid-second", ark=ARK, local_id=""))
    wait_for_lock_wait(pg_server, url)
    assert t.is_alive()
    other.commit()
    other.close()
    t.join(10)
    (err,) = out
    assert isinstance(err, InventoryError) and err.permanent
    assert "already recorded by job jid-first" in str(err)
    assert "job jid-second cannot record it again" in str(err)
    inv.close()


def test_a_second_writer_wins_when_the_first_rolls_back(pg_server, url):
    inv = Inventory.open(url)
    other = _hold(url, ARK, 1, "jid-first", True)
    t, out = _in_thread(inv.record_version, version(1, job="jid-second", ark=ARK, local_id=""))
    wait_for_lock_wait(pg_server, url)
    other.rollback()
    other.close()
    t.join(10)
    assert out == [True]
    assert inv.latest_version(ARK).job_id == "jid-second"
    inv.close()


def test_the_next_version_waits_for_the_one_in_flight(pg_server, url):
    # Without the lock, version 3 would be refused at once: "the latest recorded version is 1".
    inv = Inventory.open(url)
    inv.record_version(version(1, ark=ARK, local_id=""))
    other = _hold(url, ARK, 2, "jid-2", False)
    t, out = _in_thread(inv.record_version, version(3, job="jid-3", ark=ARK, local_id=""))
    wait_for_lock_wait(pg_server, url)
    other.commit()
    other.close()
    t.join(10)
    assert out == [True]
    assert [v.job_id for v in inv.versions(ARK)] == ["jid0000000001", "jid-2", "jid-3"]
    inv.close()


def test_a_lock_held_too_long_is_a_transient_error(pg_server, url, monkeypatch):
    monkeypatch.setattr(inventory_mod, "BUSY_TIMEOUT_SECONDS", 1)
    inv = Inventory.open(url)
    inv.record_version(version(1, ark=ARK, local_id=""))
    other = _hold(url, ARK, 2, "jid-2", False)
    started = time.monotonic()
    with pytest.raises(InventoryError) as err:
        inv.record_version(version(2, job="jid-x", ark=ARK, local_id=""))
    assert 0.9 < time.monotonic() - started < 10
    assert "lock timeout" in str(err.value) and not err.value.permanent
    other.rollback()
    other.close()
    assert inv.record_version(version(2, job="jid-x", ark=ARK, local_id="")) is True
    inv.close()


# -- connections ---------------------------------------------------------------------------------


def test_dropped_connections_are_replaced_and_close_closes_them(pg_server, url):
    inv = Inventory.open(url)
    inv.bind_local_id("demo", "l1", ARK)
    backends = zkqueue_backends(pg_server, url)
    assert len(backends) == 1, "one pooled connection, idle"
    with pg_server.admin() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (backends[0][0],))
    assert inv.ark_for_local_id("demo", "l1") == ARK
    assert inv.record_version(version(1, ark=ARK, local_id="l1")) is True

    threads = [threading.Thread(target=inv.versions, args=(ARK,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(zkqueue_backends(pg_server, url)) <= inventory_mod.IDLE_CONNECTIONS
    inv.close()
    deadline = time.monotonic() + 5
    while zkqueue_backends(pg_server, url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zkqueue_backends(pg_server, url) == []
