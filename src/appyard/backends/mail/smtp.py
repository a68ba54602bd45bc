"""SMTP, from one URL (``APPYARD_SMTP_URL``):

    smtp://[user:password@]host[:port]            plain SMTP (port 25), or
    smtp://...?starttls=true                       upgraded with STARTTLS (port 587), or
    smtps://[user:password@]host[:port]            implicit TLS (port 465)

Each message is sent on its own connection (notifications are rare; a connection held open
would need keep-alive handling for nothing). Text and HTML parts go as one
multipart/alternative message. A refused or failed send becomes ``DeliveryFailed`` with the
server's reason; the password never reaches a log line or an error message.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from appyard import errors
from appyard.core.ports import MailMessage

TIMEOUT = 30.0


class SmtpMailer:
    configured = True

    def __init__(self, url: str, *, sender: str, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("The SMTP URL must look like smtp://user:pass@host:587?starttls=true")
        self.implicit_tls = parts.scheme == "smtps"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.starttls = query.get("starttls", "").lower() in ("1", "true", "yes")
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 587 if self.starttls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.sender = sender
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SmtpMailer(host={self.host!r}, port={self.port}, tls={self.implicit_tls})"

    def _message(self, message: MailMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain="appyard")
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        return mail

    def send(self, message: MailMessage) -> None:
        mail = self._message(message)
        context = ssl.create_default_context()
        try:
            client: smtplib.SMTP = (
                smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
                if self.implicit_tls
                else smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            )
            with client:
                if self.starttls:
                    client.starttls(context=context)
                if self.user is not None:
                    client.login(self.user, self._password or "")
                client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = ", ".join(f"{code} {text!r}" for code, text in exc.recipients.values())
            raise errors.DeliveryFailed(
                f"The mail server refused the recipient ({codes})."
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise errors.DeliveryFailed(
                f"The mail server answered {exc.smtp_code}: {exc.smtp_error!r}."
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise errors.DeliveryFailed(
                f"Could not talk to the mail server {self.host}:{self.port} "
                f"({type(exc).__name__}: {exc})."
            ) from None
