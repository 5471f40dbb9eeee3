"""The ``zkqueue`` command line.

Exit codes: 0 done, 1 failed (the message is on stderr), 2 usage error. With ``--json`` stdout
carries only the JSON document; everything else goes to stderr.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

from . import zkserver
from .config import Config, ConfigError, load


class Failure(click.ClickException):
    exit_code = 1


def emit(doc, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        click.echo(text if text is not None else json.dumps(doc, indent=2, default=str))


def get_cfg(ctx: click.Context) -> Config:
    obj = ctx.find_root().obj
    if "cfg" not in obj:
        over: dict = {}
        if obj.get("zk"):
            over.setdefault("zookeeper", {})["hosts"] = obj["zk"]
        if obj.get("root"):
            over.setdefault("zookeeper", {})["root"] = obj["root"]
        try:
            obj["cfg"] = load(obj.get("config"), overrides=over)
        except ConfigError as e:
            raise Failure(str(e)) from e
        from .logs import setup

        lg = obj["cfg"]["logging"]
        setup(lg.get("level", "INFO"), lg.get("format", "json"))
    return obj["cfg"]


def open_queue(ctx: click.Context):
    from kazoo.handlers.threading import KazooTimeoutError

    from .queue import Queue

    cfg = get_cfg(ctx)
    try:
        return Queue.connect(cfg)
    except KazooTimeoutError as e:
        raise Failure(f"cannot reach ZooKeeper at {cfg.zk_hosts} (is it running? try"
                      f" 'zkqueue zk start')") from e


class LazyGroup(click.Group):
    """Subcommand groups from other packages, imported when first used (they import this
    module's helpers, so importing them here at load time would be circular)."""

    lazy = {"admin": "admin.cli:admin"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", envvar="ZKQUEUE_CONFIG", type=click.Path(dir_okay=False),
              help="YAML configuration file (env ZKQUEUE_CONFIG).")
@click.option("--zk", help="ZooKeeper connect string, e.g. host1:2181,host2:2181 (env ZKQUEUE_ZK).")
@click.option("--root", help="Root znode of the queue (env ZKQUEUE_ROOT).")
@click.version_option(package_name="zkqueue")
@click.pass_context
def main(ctx: click.Context, config: str | None, zk: str | None, root: str | None) -> None:
    """A ZooKeeper-coordinated ingest queue for digital-preservation repositories."""
    ctx.obj = {"config": config, "zk": zk, "root": root}


# -- zk ----------------------------------------------------------------------------------------
@main.group()
def zk() -> None:
    """Run a local standalone ZooKeeper server (Debian's package)."""


@zk.command("start")
@click.option("--port", type=int, help="Client port (default from zk_server.port, 2181).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the server keeps data.")
@click.pass_context
def zk_start(ctx: click.Context, port: int | None, data_dir: str | None) -> None:
    """Start the server in the background; print its connect string."""
    cfg = get_cfg(ctx)
    d = Path(data_dir) if data_dir else cfg.path("zk_server", "data_dir")
    try:
        server = zkserver.start(d, port=port or int(cfg["zk_server"]["port"]))
    except zkserver.ZooKeeperUnavailable as e:
        raise Failure(str(e)) from e
    click.echo(server.connect_string)


@zk.command("stop")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.pass_context
def zk_stop(ctx: click.Context, data_dir: str | None) -> None:
    """Stop the server started with 'zk start'."""
    cfg = get_cfg(ctx)
    d = Path(data_dir) if data_dir else cfg.path("zk_server", "data_dir")
    if not zkserver.stop(d):
        raise Failure(f"no ZooKeeper server recorded in {d}")
    click.echo("stopped", err=True)


# -- submit / status / list --------------------------------------------------------------------
@main.command()
@click.argument("payload_url")
@click.option("--profile", required=True, help="Configured profile (collection).")
@click.option("--submitter", default="", help="Who submits (shown in reports).")
@click.option("--priority", type=int, help="00 (first) .. 99 (last); default from the profile.")
@click.option("--uuid", help="Idempotency key: the same uuid always gives the same batch.")
@click.option("--callback", "callback_url", help="URL to POST each job's outcome to.")
@click.option("--notify-email", help="Where the batch summary is mailed.")
@click.option("--mode", "submission_mode", type=click.Choice(["add", "update"]), default="add",
              help="add: new version = previous files + these; update: exactly these files.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"batch_id\": ...} only.")
@click.pass_context
def submit(ctx, payload_url, profile, submitter, priority, uuid, callback_url, notify_email,
           submission_mode, as_json) -> None:
    """Queue a batch for PAYLOAD_URL (a checkm manifest or a single file)."""
    from .queue import SubmissionError

    with open_queue(ctx) as q:
        try:
            bid = q.submit(payload_url, profile, submitter, priority=priority, uuid=uuid,
                           callback_url=callback_url, notify_email=notify_email,
                           submission_mode=submission_mode)
        except SubmissionError as e:
            raise Failure(str(e)) from e
    emit({"batch_id": bid}, as_json, bid)


def status_table(doc: dict) -> str:
    lines = [f"batch {doc['batch_id']}: {doc['status']}"
             + (f" ({doc['message']})" if doc.get("message") else "")]
    lines.append("counts: " + (", ".join(f"{s}={n}" for s, n in sorted(doc["counts"].items()))
                               or "no jobs yet"))
    if doc["jobs"]:
        lines.append(f"{'job':<14} {'status':<13} {'local id':<18} {'ark':<24} message")
        for j in doc["jobs"]:
            lines.append(f"{j['job_id']:<14} {j['status']:<13} {(j['local_id'] or '-'):<18}"
                         f" {(j['ark'] or '-'):<24} {j['message']}")
    return "\n".join(lines)


@main.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx, batch_id: str, as_json: bool) -> None:
    """Progress of a batch: its status, counts per job status, and every job."""
    with open_queue(ctx) as q:
        doc = q.batch_status(batch_id)
    if doc is None:
        doc = archived_status(ctx, batch_id)
    if doc is None:
        raise Failure(f"no batch {batch_id}")
    emit(doc, as_json, status_table(doc))


def archived_status(ctx, batch_id: str) -> dict | None:
    """A batch already cleaned out of ZooKeeper answers from the inventory database."""
    from .inventory import Inventory

    cfg = get_cfg(ctx)
    inv = Inventory.from_config(cfg)
    try:
        doc = inv.batch_summary(batch_id)
    finally:
        inv.close()
    if doc:
        doc = dict(doc, archived=True)
    return doc


@main.command("list")
@click.argument("what", type=click.Choice(["batches", "jobs"]))
@click.option("--status", "status_", help="Only items in this status.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx, what: str, status_: str | None, as_json: bool) -> None:
    """List batches or jobs, optionally of one status."""
    with open_queue(ctx) as q:
        try:
            rows = q.list_batches(status_) if what == "batches" else q.list_jobs(status_)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
    if as_json:
        emit(rows, True)
        return
    key = "batch_id" if what == "batches" else "job_id"
    for r in rows:
        extra = r.get("ark") or r.get("profile") or ""
        click.echo(f"{r[key]:<14} {r['status']:<16} {extra:<24} {r.get('message', '')}")
    click.echo(f"{len(rows)} {what}", err=True)


# -- worker --------------------------------------------------------------------------------------
@main.command()
@click.option("--threads", type=int, help="Worker threads (default worker.threads).")
@click.option("--states", "states_spec",
              help="Served states, e.g. pending,estimating,batch-reporting (default: all).")
@click.option("--drain", is_flag=True, help="Exit 0 once nothing it serves is left to do.")
@click.option("--progress", is_flag=True, help="Show a progress bar of jobs settled.")
@click.pass_context
def worker(ctx, threads: int | None, states_spec: str | None, drain: bool, progress: bool) -> None:
    """Claim and run batches and jobs until stopped (SIGTERM stops cleanly)."""
    from kazoo.handlers.threading import KazooTimeoutError

    from .worker import Worker

    cfg = get_cfg(ctx)
    try:
        w = Worker(cfg, threads=threads, states_spec=states_spec, drain=drain)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    except KazooTimeoutError as e:
        raise Failure(f"cannot reach ZooKeeper at {cfg.zk_hosts}") from e
    bar = None
    if progress:
        from .progress import attach

        bar = attach(w)
    try:
        code = w.run()
    except ConfigError as e:
        w.close()
        raise Failure(str(e)) from e
    if bar:
        bar.close()
    sys.exit(code)


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="var/demo",
              help="Where the demo keeps its ZooKeeper, deposit, storage and outbox.")
@click.option("--threads", type=int, default=4)
@click.pass_context
def demo(ctx, workdir: str, threads: int) -> None:
    """Ingest a small sample deposit end to end on the embedded defaults."""
    from .demo import run_demo

    root = ctx.find_root().obj
    sys.exit(run_demo(Path(workdir), threads=threads, zk=root.get("zk"), root=root.get("root")))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.pass_context
def serve(ctx, host: str, port: int) -> None:
    """HTTP submission/progress API and the queue's /metrics."""
    from .api import serve as run_api

    sys.exit(run_api(get_cfg(ctx), host=host, port=port))


def run() -> None:
    main(obj={})


if __name__ == "__main__":
    run()
