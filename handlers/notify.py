"""notify: tell the submitter (callback POST, if one was given), then remove the working folder.

The callback carries JSON ``{job_id, batch_id, status, ark, version, local_id}``; with a
``callback_secret`` in the profile it is signed (``X-Zkqueue-Signature: sha256=<hmac>``).
Transient failures are retried with backoff a bounded number of times; then the job fails with
the callback's error, its object safely stored and recorded (a requeue only notifies again).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil

import requests
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from handlers.context import JobContext, Outcome, StepFailed
from handlers.fetch import redact


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code >= 500
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


def post_callback(url: str, body: dict, secret: str | None, http: dict) -> None:
    data = json.dumps(body, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "zkqueue"}
    if secret:
        sig = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
        headers["X-Zkqueue-Signature"] = f"sha256={sig}"
    for attempt in Retrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(int(http["retries"]) + 1),
        wait=wait_random_exponential(multiplier=float(http["backoff_initial"]),
                                     max=float(http["backoff_max"])),
        reraise=True,
    ):
        with attempt:
            r = requests.post(url, data=data, headers=headers, timeout=float(http["timeout"]))
            r.raise_for_status()


def notify(ctx: JobContext) -> Outcome:
    sub = ctx.submission
    url = sub.get("callback_url")
    ark, version = ctx.read("ark"), ctx.read("version")
    note = f"ingested as {ark} version {version}"
    if url:
        body = {"job_id": ctx.ident, "batch_id": ctx.conf["batch_id"], "status": "completed",
                "ark": ark, "version": version, "local_id": ctx.conf.get("local_id") or ""}
        profile = (ctx.cfg.get("profiles") or {}).get(ctx.conf["profile"]) or {}
        try:
            post_callback(url, body, profile.get("callback_secret"), ctx.cfg["http"])
        except requests.RequestException as e:
            code = getattr(getattr(e, "response", None), "status_code", None)
            why = f"HTTP {code}" if code else type(e).__name__
            raise StepFailed(f"callback to {redact(url)} failed: {why}", "callback") from e
        note += "; callback sent"
    shutil.rmtree(ctx.workdir, ignore_errors=True)
    return Outcome("completed", message=note)
