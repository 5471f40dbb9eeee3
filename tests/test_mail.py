"""Mail through an outbox folder and through a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from zkqueue import zkserver
from zkqueue.mail import Mail, MailError, Outbox, SmtpMailer, open_mailer

PASSWORD = "s3cret-Pa55"


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def summary(**kw) -> Mail:
    fields = dict(
        to=["depositor@example.org", "curator@example.org"],
        subject="Batch bid0000000001 completed",
        body="2 jobs completed\n1 failed: line 3, file a.txt: digest mismatch\n",
        sender="zkqueue@repo.example.org",
    )
    fields.update(kw)
    return Mail(**fields)


# outbox ---------------------------------------------------------------------------------------


def test_outbox_writes_a_parseable_eml(tmp_path):
    path = Outbox(tmp_path / "outbox").send(summary(), "bid0000000001-report")
    assert path == tmp_path / "outbox" / "bid0000000001-report.eml"
    message = parse(path.read_bytes())
    assert message["To"] == "depositor@example.org, curator@example.org"
    assert message["From"] == "zkqueue@repo.example.org"
    assert message["Subject"] == "Batch bid0000000001 completed"
    assert message["Message-ID"] == "<bid0000000001-report.zkqueue@repo.example.org>"
    assert message["Date"]
    assert message.get_content() == summary().body
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_outbox_same_name_same_file_other_name_other_file(tmp_path):
    outbox = Outbox(tmp_path)
    first = outbox.send(summary(body="first\n"), "bid1")
    second = outbox.send(summary(body="second\n"), "bid1")
    other = outbox.send(summary(body="other\n"), "bid1.")
    assert first == second != other
    assert parse(first.read_bytes()).get_content() == "second\n"
    assert len(list(tmp_path.iterdir())) == 2


def test_outbox_names_cannot_escape_the_folder(tmp_path):
    outbox = Outbox(tmp_path / "box")
    path = outbox.send(summary(), "../../etc/evil")
    assert path.parent == tmp_path / "box"
    with pytest.raises(ValueError):
        outbox.send(summary(), "..")


def test_headers_cannot_be_injected(tmp_path):
    mail = summary(subject="Report\r\nBcc: attacker@example.com", to=["a@example.org\nBcc: x@y"])
    message = parse(Outbox(tmp_path).send(mail, "bid1").read_bytes())
    assert message["Bcc"] is None
    assert message["Subject"] == "Report Bcc: attacker@example.com"


def test_mail_without_recipients_is_refused(tmp_path):
    with pytest.raises(MailError) as err:
        Outbox(tmp_path).send(summary(to=["", " "]), "bid1")
    assert err.value.permanent


# SMTP -----------------------------------------------------------------------------------------


class Recorder:
    """An aiosmtpd handler that keeps what it receives and can be told to refuse."""

    def __init__(self) -> None:
        self.received: list = []
        self.data_replies: list[str] = []
        self.refuse_rcpt: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture
def smtp():
    handler = Recorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=zkserver.free_port(),
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    yield controller, handler
    controller.stop()


def test_smtp_delivers_with_message_id_from_the_name(smtp):
    controller, handler = smtp
    mailer = SmtpMailer(controller.hostname, controller.port, timeout=5)
    mailer.send(summary(sender="Zkqueue <zkqueue@repo.example.org>"), "bid0000000001-report")
    mailer.send(summary(), "bid0000000001-report")

    assert len(handler.received) == 2
    mail_from, rcpt_tos, content = handler.received[0]
    assert mail_from == "zkqueue@repo.example.org"
    assert rcpt_tos == ["depositor@example.org", "curator@example.org"]
    ids = [parse(c)["Message-ID"] for _, _, c in handler.received]
    assert ids[0] == ids[1] == "<bid0000000001-report.zkqueue@repo.example.org>"
    assert parse(content).get_content().replace("\r\n", "\n") == summary().body


def test_smtp_login(smtp):
    controller, handler = smtp
    SmtpMailer(controller.hostname, controller.port, user="zkq", password=PASSWORD).send(
        summary(), "bid1"
    )
    assert len(handler.received) == 1


def test_smtp_wrong_password_is_permanent_and_not_echoed(smtp):
    controller, handler = smtp
    mailer = SmtpMailer(controller.hostname, controller.port, user="zkq", password="wrong-pw-77")
    with pytest.raises(MailError) as err:
        mailer.send(summary(), "bid1")
    assert err.value.permanent
    assert "wrong-pw-77" not in str(err.value) and "wrong-pw-77" not in repr(mailer)
    assert handler.received == []


def test_smtp_refused_recipient_is_permanent_and_named(smtp):
    controller, handler = smtp
    handler.refuse_rcpt = {"depositor@example.org", "curator@example.org"}
    with pytest.raises(MailError) as err:
        SmtpMailer(controller.hostname, controller.port, backoff=0.01).send(summary(), "bid1")
    assert err.value.permanent
    assert "depositor@example.org" in str(err.value)


def test_smtp_temporary_refusal_is_retried(smtp):
    controller, handler = smtp
    handler.data_replies = ["451 4.3.0 try again later"]
    SmtpMailer(controller.hostname, controller.port, backoff=0.01).send(summary(), "bid1")
    assert len(handler.received) == 1


def test_smtp_gives_up_after_bounded_retries(smtp):
    controller, handler = smtp
    handler.data_replies = ["451 4.3.0 busy"] * 3
    with pytest.raises(MailError) as err:
        SmtpMailer(controller.hostname, controller.port, retries=1, backoff=0.01).send(
            summary(), "bid1"
        )
    assert not err.value.permanent and "451" in str(err.value)
    assert handler.data_replies == ["451 4.3.0 busy"]  # exactly two attempts were made


def test_smtp_unreachable_is_transient():
    port = zkserver.free_port()
    with pytest.raises(MailError) as err:
        SmtpMailer("127.0.0.1", port, retries=1, backoff=0.01, timeout=2).send(summary(), "b")
    assert not err.value.permanent
    assert str(port) in str(err.value)


# configuration --------------------------------------------------------------------------------


def test_open_mailer(tmp_path, monkeypatch):
    outbox = open_mailer({"outbox": "var/outbox"}, base_dir=tmp_path)
    assert isinstance(outbox, Outbox) and outbox.folder == tmp_path / "var" / "outbox"
    assert open_mailer({"outbox": str(tmp_path / "abs")}, base_dir=Path("/x")).folder == (
        tmp_path / "abs"
    )

    monkeypatch.setenv("ZKQ_SMTP_PW", PASSWORD)
    mailer = open_mailer(
        {
            "smtp": {
                "host": "mail.example.org",
                "port": 587,
                "user": "u",
                "starttls": True,
                "password_env": "ZKQ_SMTP_PW",
            }
        }
    )
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port, mailer.starttls) == ("mail.example.org", 587, True)
    assert mailer._password == PASSWORD

    for bad in (
        {},
        {"outbox": "a", "smtp": {"host": "h"}},
        {"smtp": {"port": 25}},
        {"smtp": {"host": "h", "pasword": "typo"}},
        {"smtp": {"host": "h", "password_env": "ZKQ_UNSET_VARIABLE"}},
    ):
        with pytest.raises(ValueError):
            open_mailer(bad)
