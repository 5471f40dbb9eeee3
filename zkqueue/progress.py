"""A terminal progress bar of jobs settled by a worker (tqdm, on stderr)."""

from __future__ import annotations

from tqdm import tqdm

from .states import JOB_SETTLED


def attach(worker) -> tqdm:
    bar = tqdm(desc="jobs settled", unit="job", total=None, file=None, dynamic_ncols=True)

    def on_change(kind: str, ident: str, frm: str, to: str) -> None:
        if kind == "job" and to in JOB_SETTLED:
            bar.update(1)
        bar.set_postfix_str(f"{ident} {frm}->{to}", refresh=True)

    worker.listeners.append(on_change)
    return bar
