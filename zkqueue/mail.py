"""Batch summaries by mail: files in an outbox folder (embedded default) or SMTP (production).

Guarantees: a mail is identified by its ``name`` (e.g. the batch id and report round); sending the
same name again rewrites the same outbox file, or re-sends with the same ``Message-ID`` so a
mail system can recognise the duplicate. Errors never contain the SMTP password.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential


class MailError(Exception):
    """A mail could not be sent; ``permanent`` says whether trying again can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class Mail:
    to: list[str]
    subject: str
    body: str
    sender: str = "zkqueue@localhost"


class Mailer(Protocol):
    def send(self, mail: Mail, name: str) -> Any: ...


def _safe_name(name: str) -> str:
    """An injective, file- and header-safe spelling of ``name``."""
    if not name or set(name) == {"."}:
        raise ValueError(f"not a usable mail name: {name!r}")
    return quote(name, safe="-_").replace(".", "%2E")


def _one_line(value: str) -> str:
    return " ".join(value.split())


def build_message(mail: Mail, name: str) -> EmailMessage:
    """The RFC 5322 message for ``mail``; its Message-ID depends only on ``name`` and the sender."""
    recipients = [r.strip() for r in mail.to if r and r.strip()]
    if not recipients:
        raise MailError(f"mail {name!r} has no recipient", permanent=True)
    address = parseaddr(mail.sender)[1]
    domain = address.rsplit("@", 1)[-1] if "@" in address else "localhost"
    message = EmailMessage()
    message["From"] = _one_line(mail.sender)
    message["To"] = ", ".join(_one_line(r) for r in recipients)
    message["Subject"] = _one_line(mail.subject)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = f"<{_safe_name(name)}.zkqueue@{_one_line(domain) or 'localhost'}>"
    message.set_content(mail.body)
    return message


class Outbox:
    """Mails as ``<name>.eml`` files in a folder; each file appears complete or not at all."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def send(self, mail: Mail, name: str) -> Path:
        data = build_message(mail, name).as_bytes()
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{_safe_name(name)}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".eml-tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, MailError) and not exc.permanent


class SmtpMailer:
    """Mail through an SMTP server, optionally with STARTTLS and login.

    Connection failures and 4xx replies are retried ``retries`` more times (exponential backoff
    with jitter); 5xx replies and refused logins fail at once.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30,
        retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        self.host, self.port = host, int(port)
        self.user, self._password = user, password
        self.starttls, self.timeout = starttls, timeout
        self.retries, self.backoff = retries, backoff

    def __repr__(self) -> str:
        return f"SmtpMailer({self.host}:{self.port}, user={self.user!r})"

    def send(self, mail: Mail, name: str) -> None:
        message = build_message(mail, name)
        sender = parseaddr(mail.sender)[1] or mail.sender
        recipients = [parseaddr(r)[1] or r.strip() for r in mail.to if r and r.strip()]
        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(1 + max(0, self.retries)),
            wait=wait_random_exponential(multiplier=self.backoff, max=30 * self.backoff),
            reraise=True,
        )
        retrying(self._send_once, message, sender, recipients)

    def _send_once(self, message: EmailMessage, sender: str, recipients: list[str]) -> None:
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self._password or "")
                refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(
                f"{where} refused the login of {self.user!r}: {exc.smtp_code}", permanent=True
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise self._refused(where, exc.recipients) from None
        except smtplib.SMTPResponseException as exc:
            text = self._clean(exc.smtp_error)
            raise MailError(
                f"{where} answered {exc.smtp_code} {text}", permanent=exc.smtp_code >= 500
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"{where} unreachable: {type(exc).__name__}: {exc}") from None
        if refused:
            raise self._refused(where, refused)

    def _refused(self, where: str, refused: dict) -> MailError:
        codes = {code for code, _ in refused.values()}
        listed = ", ".join(f"{r} ({code})" for r, (code, _) in sorted(refused.items()))
        return MailError(f"{where} refused recipients: {listed}", permanent=min(codes) >= 500)

    def _clean(self, raw: bytes | str) -> str:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if self._password:
            text = text.replace(self._password, "***")
        return _one_line(text)[:500]


def open_mailer(cfg: dict, base_dir: Path | None = None) -> Outbox | SmtpMailer:
    """The mailer a ``mail:`` configuration asks for.

    ``{"outbox": PATH}`` (relative to base_dir, default the current directory) or
    ``{"smtp": {"host", "port", "user", "password" | "password_env", "starttls", "timeout"}}``;
    ``password_env`` names an environment variable, so the password need not sit in the file.
    """
    if ("outbox" in cfg) == ("smtp" in cfg):
        raise ValueError("mail configuration needs exactly one of 'outbox' or 'smtp'")
    if "outbox" in cfg:
        folder = Path(cfg["outbox"])
        if not folder.is_absolute():
            folder = Path(base_dir if base_dir is not None else Path.cwd()) / folder
        return Outbox(folder)
    smtp = dict(cfg["smtp"] or {})
    if not smtp.get("host"):
        raise ValueError("mail.smtp needs a host")
    password = smtp.pop("password", None)
    env_name = smtp.pop("password_env", None)
    if env_name:
        password = os.environ.get(env_name)
        if password is None:
            raise ValueError(f"mail.smtp.password_env names {env_name}, which is not set")
    known = {"host", "port", "user", "starttls", "timeout", "retries", "backoff"}
    unknown = sorted(set(smtp) - known)
    if unknown:
        raise ValueError(f"unknown mail.smtp settings: {', '.join(unknown)}")
    return SmtpMailer(password=password, **smtp)
