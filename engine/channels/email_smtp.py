"""E-mail through SMTP (stdlib smtplib): STARTTLS, implicit TLS or plain per settings.smtp_security; every
message carries a plain-text part and, when the template has one, an HTML part; an acknowledge link is added
when settings.public_base_url is set."""

from __future__ import annotations

import html
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from engine.channels.base import Capabilities, OutgoingMessage, SendError, SendResult, StatusResult, scrub


class SmtpEmailSender:
    name = "email"
    simulated = False
    capabilities = Capabilities(supports_html=True)

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        username: str,
        password: str | None,
        from_address: str,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in {"starttls", "ssl", "none"}:
            raise ValueError(f"smtp_security must be starttls, ssl or none, not {security!r}")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.from_address = from_address or f"watchkeeper@{socket.getfqdn()}"
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()

    def build(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = formataddr(("Watchkeeper", self.from_address))
        mail["To"] = message.address
        mail["Subject"] = (
            message.subject or message.body.splitlines()[0][:120] if message.body else "Watchkeeper"
        )
        domain = self.from_address.partition("@")[2] or None
        mail["Message-ID"] = make_msgid(idstring=f"wk{message.id}", domain=domain)
        if message.idempotency_key:
            mail["X-Watchkeeper-Key"] = message.idempotency_key
        text = message.body
        if message.ack_url:
            text += f"\n\nAcknowledge: {message.ack_url}\n"
        mail.set_content(text)
        body_html = message.body_html
        if body_html is None and message.ack_url:
            body_html = "<p>" + html.escape(message.body).replace("\n", "<br>") + "</p>"
        if body_html is not None:
            if message.ack_url:
                link = html.escape(message.ack_url, quote=True)
                body_html += f'\n<p><a href="{link}">Acknowledge</a></p>'
            mail.add_alternative(body_html, subtype="html")
        return mail

    def send(self, message: OutgoingMessage) -> SendResult:
        mail = self.build(message)
        try:
            smtp: smtplib.SMTP
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.ssl_context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self.ssl_context)
                if self.username and self._password:
                    smtp.login(self.username, self._password)
                refused = smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise SendError(
                self._text(f"SMTP login refused ({exc.smtp_code})"), retryable=False, code="auth"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            retryable = all(400 <= c < 500 for c in codes)
            raise SendError(
                self._text(f"recipient refused by the mail server ({codes})"),
                retryable=retryable,
                code=str(codes[0]) if codes else "refused",
            ) from None
        except smtplib.SMTPResponseException as exc:
            retryable = 400 <= exc.smtp_code < 500
            raise SendError(
                self._text(f"mail server answered {exc.smtp_code}: {exc.smtp_error!r}"),
                retryable=retryable,
                code=str(exc.smtp_code),
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise SendError(
                self._text(
                    f"the mail server {self.host}:{self.port} has a certificate this machine does not trust "
                    f"({exc.verify_message}); add its CA to the system trust store"
                ),
                retryable=True,
                code="tls_certificate",
            ) from None
        except ssl.SSLError as exc:
            raise SendError(
                self._text(f"TLS with the mail server {self.host}:{self.port} failed ({exc.reason})"),
                retryable=True,
                code="tls",
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            # e.g. AUTH offered only after STARTTLS while smtp_security is "none": a setting to fix.
            raise SendError(
                self._text(f"the mail server refused: {exc}; check smtp_security (starttls, ssl or none)"),
                retryable=False,
                code="not_supported",
            ) from None
        except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
            raise SendError(
                self._text(f"cannot reach the mail server {self.host}:{self.port}: {type(exc).__name__}"),
                retryable=True,
                code="connection",
            ) from None
        if refused:
            raise SendError(f"recipient refused: {', '.join(refused)}", retryable=False, code="refused")
        return SendResult(
            provider_id=str(mail["Message-ID"]), status="sent", detail="accepted by mail server"
        )

    def fetch_status(self, provider_id: str) -> StatusResult:
        return StatusResult(provider_id=provider_id, status="sent")

    def _text(self, text: str) -> str:
        return scrub(text, [self._password])
