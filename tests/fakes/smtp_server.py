"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, with optional AUTH."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """aiosmtpd's Controller cannot bind port 0: take a free port from the OS and hand it over."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None
    tls: bool = False  # the message travelled over TLS (STARTTLS or implicit)


@dataclass
class FakeSmtp:
    username: str | None = None
    password: str | None = None
    refuse: set[str] = field(default_factory=set)  # recipients answered 550
    mails: list[ReceivedMail] = field(default_factory=list)
    controller: Controller | None = None
    port: int = 0
    # With a context: STARTTLS is offered and required before MAIL (or, with implicit_tls, TLS from the
    # first byte, as on port 465).
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        data = session.auth_data if session.authenticated else None
        login = data.decode() if isinstance(data, bytes) else data
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.mails.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed, login, tls))
        return "250 Message accepted for delivery"

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            ok = auth_data.login.decode() == self.username and auth_data.password.decode() == self.password
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)
        return AuthResult(success=False, handled=False)

    def start(self) -> FakeSmtp:
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if self.username:
            kwargs.update(
                authenticator=self._authenticate,
                # aiosmtpd only knows about TLS it negotiated itself (STARTTLS), not implicit TLS.
                auth_require_tls=self.tls_context is not None and not self.implicit_tls,
                auth_required=False,
            )
        if self.tls_context is not None and self.implicit_tls:
            kwargs["ssl_context"] = self.tls_context
        elif self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=True)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
