"""Sending one message to one channel: a JSON webhook, a Slack-compatible incoming webhook, or e-mail.

``render`` turns an outbox message into what people read: the subject, the
facts one per line, and the console link (the configured base URL + the
message's page). ``deliver`` sends it and returns the receiver's status, or
raises DeliveryFailed with a one-line reason in which no URL token or password
appears (engine.notify.store.redact_channel, engine.core.secrets.redact).

Every message carries its idempotency key (``idempotency_key``: derived from
the outbox key, so a re-send after a crash carries the same one): the
``Idempotency-Key`` header of an HTTP post, the ``Message-ID`` and
``X-Idempotency-Key`` headers of a mail. A receiver that honours it sees a
message once however often it is sent.

E-mail goes over SMTP with STARTTLS (the default; a channel may turn it off
only for a server on the same machine or network it trusts). The user name and
password come from the environment variables the channel names, read at the
moment of sending, and are never sent without TLS. ``DISCOVERY_SMTP_CA_FILE``
names a CA bundle for a server with a private certificate.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import httpx

from engine.core.secrets import redact
from engine.notify.store import Channel, ChannelKind, page_url, redact_channel, smtp_credentials
from engine.store.outbox import TOPICS, Message, figure

#: seconds one HTTP post or SMTP conversation may take before it counts as a failed attempt
SEND_TIMEOUT_S = 10.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "discovery-ops-notify/1"
SMTP_CA_FILE_ENV = "DISCOVERY_SMTP_CA_FILE"
SUBJECT_PREFIX = "[Discovery Ops]"
#: longest error text kept per attempt (the delivery log shows it in a table cell)
MAX_ERROR_CHARS = 300


class DeliveryFailed(Exception):
    """One attempt failed; ``str`` is a one-line reason with every secret masked, ``status`` what the receiver
    answered (an HTTP status or SMTP reply code), empty when it never answered."""

    def __init__(self, reason: str, status: str = ""):
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Rendered:
    """A message as people read it."""

    key: str  # the idempotency key
    subject: str
    text: str
    url: str
    payload: dict[str, Any]


def idempotency_key(message: Message) -> str:
    """The key receivers see: a digest of the outbox key (same event, same key, whatever the text holds)."""
    return "dops-" + hashlib.sha256(message.key.encode("utf-8")).hexdigest()[:32]


def fact_lines(facts: Mapping[str, Any]) -> list[str]:
    """One "label: value" line per fact; a fact without a value (an empty text) is left out."""
    return [f"{label}: {figure(value)}" for label, value in facts.items() if value not in ("", None)]


def render(message: Message, base_url: str) -> Rendered:
    url = page_url(base_url, message.link)
    lines = [message.subject, "", *fact_lines(message.facts), "", f"Open the console: {url}"]
    text = "\n".join(lines)
    key = idempotency_key(message)
    payload = {
        "key": key,
        "event": message.key,
        "topic": message.topic,
        "title": TOPICS.get(message.topic, message.topic),
        "subject": message.subject,
        "text": text,
        "facts": {k: figure(v) for k, v in message.facts.items()},
        "link": url,
        "at": message.at,
        "at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(message.at)),
    }
    return Rendered(key, message.subject, text, url, payload)


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters as entities (a name with ``<`` must not become a link)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(r: Rendered, message: Message) -> dict[str, Any]:
    facts = "\n".join(f"• {_slack_escape(line)}" for line in fact_lines(message.facts))
    text = f"*{_slack_escape(r.subject)}*\n{facts}\n<{r.url}|Open the console>"
    return {"text": text}


# --------------------------------------------------------------------------- transports


def _post(url: str, body: dict[str, Any], key: str, timeout: float, client: httpx.Client | None) -> str:
    headers = {IDEMPOTENCY_HEADER: key, "User-Agent": USER_AGENT}
    try:
        if client is not None:
            response = client.post(url, json=body, headers=headers, timeout=timeout)
        else:
            with httpx.Client(timeout=timeout, follow_redirects=False) as own:
                response = own.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(redact_channel(f"{type(exc).__name__}: {exc}", url)) from None
    status = str(response.status_code)
    if not 200 <= response.status_code < 300:
        reply = " ".join(response.text.split())[:120]
        raise DeliveryFailed(redact_channel(f"HTTP {status}: {reply or response.reason_phrase}", url), status)
    return status


def _smtp_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    cafile = environ.get(SMTP_CA_FILE_ENV) or None
    return ssl.create_default_context(cafile=cafile)


def send_email(
    config: Mapping[str, Any],
    r: Rendered,
    message: Message,
    *,
    environ: Mapping[str, str] | None = None,
    timeout: float = SEND_TIMEOUT_S,
) -> str:
    env = os.environ if environ is None else environ
    creds = smtp_credentials(config, env)
    secrets = [s for s in (creds or ()) if s]
    mail = EmailMessage()
    mail["Subject"] = f"{SUBJECT_PREFIX} {r.subject}"
    mail["From"] = str(config["sender"])
    mail["To"] = ", ".join(config["to"])
    mail["Date"] = formatdate(message.at, usegmt=True)
    mail["Message-ID"] = f"<{r.key}@discovery-ops>"
    mail["X-Idempotency-Key"] = r.key
    mail.set_content(r.text)
    host, port = str(config["host"]), int(config["port"])
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.ehlo()
            if config.get("starttls", True):
                if not smtp.has_extn("starttls"):
                    raise DeliveryFailed(f"{host}:{port} does not offer STARTTLS; nothing was sent")
                smtp.starttls(context=_smtp_context(env))
                smtp.ehlo()
            elif creds:
                raise DeliveryFailed(
                    "refusing to send SMTP credentials without STARTTLS: turn STARTTLS on for this channel"
                )
            if creds:
                smtp.login(*creds)
            refused = smtp.send_message(mail)
            code = "250"
    except DeliveryFailed:
        raise
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryFailed(
            redact_channel(f"SMTP {exc.smtp_code}: {redact(text)}", None, secrets), str(exc.smtp_code)
        ) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryFailed(redact_channel(f"{type(exc).__name__}: {redact(str(exc))}", None, secrets)) from None
    if refused:
        raise DeliveryFailed(f"the server refused {len(refused)} recipient(s): {', '.join(sorted(refused))}")
    return code


def deliver(
    channel: Channel,
    message: Message,
    base_url: str,
    *,
    environ: Mapping[str, str] | None = None,
    timeout: float = SEND_TIMEOUT_S,
    client: httpx.Client | None = None,
) -> str:
    """Send ``message`` on ``channel``; the receiver's status, or DeliveryFailed (one line, secrets masked)."""
    r = render(message, base_url)
    if channel.kind is ChannelKind.EMAIL:
        return send_email(channel.config, r, message, environ=environ, timeout=timeout)
    body = slack_body(r, message) if channel.kind is ChannelKind.SLACK else r.payload
    return _post(str(channel.config["url"]), body, r.key, timeout, client)


def short_error(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"
