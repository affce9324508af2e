"""E-mail over TLS to a real SMTP server on loopback: STARTTLS (port 587 style) and implicit TLS (port 465
style), the server's certificate checked against the trust store the product uses (the system's, which
SSL_CERT_FILE points at here), and a server whose certificate is not trusted refused without sending."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from engine.channels.base import OutgoingMessage, SendError
from engine.channels.email_smtp import SmtpEmailSender
from tests.fakes.smtp_server import FakeSmtp

PASSWORD = "smtp-pw-tls-51c0"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The site's CA in the trust store OpenSSL reads by default."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def _server(ca: trustme.CA, *, implicit: bool) -> FakeSmtp:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return FakeSmtp(username="watchkeeper", password=PASSWORD, tls_context=context, implicit_tls=implicit)


@pytest.fixture(params=["starttls", "ssl"])
def tls_server(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[tuple[str, FakeSmtp]]:
    server = _server(ca, implicit=request.param == "ssl").start()
    try:
        yield request.param, server
    finally:
        server.stop()


def _sender(security: str, port: int) -> SmtpEmailSender:
    return SmtpEmailSender(
        host="127.0.0.1",
        port=port,
        security=security,
        username="watchkeeper",
        password=PASSWORD,
        from_address="watchkeeper@dispatch.example.org",
        timeout=10,
    )


MESSAGE = OutgoingMessage(
    id=1,
    channel="email",
    address="thandi@example.org",
    subject="CRITICAL: Pump station 7 offline",
    body="Pump station 7 offline since 02:14.",
)


def test_mail_goes_out_encrypted_and_logged_in(tls_server: tuple[str, FakeSmtp], trusted: None) -> None:
    security, server = tls_server
    result = _sender(security, server.port).send(MESSAGE)
    assert result.status == "sent"
    [mail] = server.mails
    assert mail.tls, "the message crossed the network in clear text"
    assert mail.login == "watchkeeper"
    assert mail.recipients == ["thandi@example.org"]
    assert mail.message["Subject"] == "CRITICAL: Pump station 7 offline"


def test_an_untrusted_certificate_is_refused_before_anything_is_sent(
    tls_server: tuple[str, FakeSmtp],
) -> None:
    # No `trusted` fixture: the server's certificate comes from a CA this machine does not know.
    security, server = tls_server
    with pytest.raises(SendError) as caught:
        _sender(security, server.port).send(MESSAGE)
    assert caught.value.retryable  # the page stays queued while the administrator fixes the trust store
    assert "certificate" in str(caught.value).lower()
    assert PASSWORD not in str(caught.value)
    assert server.mails == []


def test_starttls_required_by_the_server_is_not_skipped(ca: trustme.CA, trusted: None) -> None:
    """A sender configured without TLS is refused by a server that requires STARTTLS: no clear-text login."""
    server = _server(ca, implicit=False).start()
    try:
        with pytest.raises(SendError) as caught:
            _sender("none", server.port).send(MESSAGE)
        assert not caught.value.retryable  # a setting to fix, not a message to retry for ever
        assert "smtp_security" in str(caught.value)
        assert server.mails == []
    finally:
        server.stop()
