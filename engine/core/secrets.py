"""Credentials never shown: the one place that masks a store URL or an error text for display.

``FALKORDB_URL`` may carry a password in any form redis-py accepts: userinfo
(``redis://:PW@host``, ``redis://user:PW@host``, ``rediss://...``,
``unix://:PW@/path.sock``), a lone userinfo that is sent as the AUTH secret
(``redis://TOKEN@host``), or a query argument (``?password=PW``,
``&password=PW``; redis-py percent-decodes both keys and values). Every
message, page, log line and audit row that names the store goes through
``mask_url`` (a URL) or ``redact`` (free text such as an exception message),
so a secret cannot reach a terminal, a browser or a file in the data dir.

What stays visible is what an operator needs to tell which server it is:
scheme, user name, host, port, socket path and db. Masking errs on the side
of hiding: when a password itself contains ``@``, ``/``, ``?`` or ``#`` the
userinfo is taken up to the *last* ``@`` of the URL, which at worst hides a
path segment too.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

MASK = "***"

#: query or ``key=value`` names whose value is a secret (compared lower-case, percent-decoded)
SECRET_KEYS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "token", "auth", "access_token", "api_key", "apikey"}
)
#: a known secret shorter than this is not searched for as a literal in free text (it would mask
#: unrelated characters everywhere); URL and key=value forms are masked whatever their length
MIN_LITERAL = 3

_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
#: a URL inside free text: a scheme, ``://`` and everything up to the next whitespace
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
#: ``key=value`` pairs (query arguments, or loose in an error message); the value ends at a
#: separator, whitespace or a quote
_KEY_VALUE = re.compile(r"(?P<key>[^\s=&?#;'\"/:@,()<>\[\]{}]+)=(?P<value>[^\s&#;'\",()<>\[\]{}]*)")


def mask_url(url: str | None) -> str:
    """``url`` with every credential replaced by ``***``; scheme, user, host, port, path and db kept.

    >>> mask_url("redis://:hunter2@db.example:6390/0")
    'redis://:***@db.example:6390/0'
    >>> mask_url("redis://db.example:6390?password=hunter2&db=1")
    'redis://db.example:6390?password=***&db=1'
    """
    if not url:
        return ""
    match = _SCHEME.match(url)
    if match is None:
        return _mask_key_values(url)
    head, rest = url[: match.end()], url[match.end() :]
    if not rest.startswith("/") and "@" in rest:
        # userinfo runs to the last "@": a password may hold "@", "/", "?" or "#" unencoded
        userinfo, _, location = rest.rpartition("@")
        rest = f"{_mask_userinfo(userinfo)}@{location}"
    return head + _mask_key_values(rest)


def _mask_userinfo(userinfo: str) -> str:
    if not userinfo:
        return userinfo
    user, colon, _password = userinfo.partition(":")
    if not colon:
        # a lone userinfo (``redis://TOKEN@host``) is sent as the AUTH secret
        return MASK
    return f"{user}:{MASK}"


def _mask_key_values(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        if unquote(m.group("key")).lower() in SECRET_KEYS and m.group("value"):
            return f"{m.group('key')}={MASK}"
        return m.group(0)

    return _KEY_VALUE.sub(repl, text)


def secrets_in(url: str | None) -> list[str]:
    """The literal secrets ``url`` carries, as written and percent-decoded (longest first)."""
    if not url:
        return []
    found: set[str] = set()
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    if match and not rest.startswith("/") and "@" in rest:
        userinfo = rest.rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        found.add(password if colon else user)
    for m in _KEY_VALUE.finditer(rest):
        if unquote(m.group("key")).lower() in SECRET_KEYS:
            found.add(m.group("value"))
    variants = {v for raw in found for v in (raw, unquote(raw), unquote_plus(raw))}
    return sorted((v for v in variants if v), key=len, reverse=True)


def redact(text: str, *known_urls: str | None) -> str:
    """``text`` (an error message, a log line) with credentials masked.

    Masks every URL in it that carries credentials, every ``password=...``-like
    pair, and any literal occurrence of the secrets of ``known_urls`` (the
    configured ``FALKORDB_URL``): a client library may quote a password
    decoded, outside any URL.
    """
    if not text:
        return text
    masked = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    masked = _mask_key_values(masked)
    for secret in (s for url in known_urls for s in secrets_in(url)):
        if len(secret) >= MIN_LITERAL:
            masked = masked.replace(secret, MASK)
    return masked
