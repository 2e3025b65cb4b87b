"""Sign-in decisions and files, without a page: is sign-in configured, may the console start on this
address, the generated cookie secret, the secrets file the console is started with, and a signed-in
person's claims turned into the arguments of ``engine.store.access.signed_in_actor``.

Pure: plain Python over the secrets (a mapping read from ``.streamlit/secrets.toml``) and the data dir;
``console.identity`` draws the sign-in screen and the sidebar from these, ``console.launch`` starts the
console with them.

Sign-in is Streamlit's own OpenID Connect (``st.login``), configured in the ``[auth]`` table of
``.streamlit/secrets.toml``. Streamlit refuses to sign anyone in without ``auth.cookie_secret``; when the
operator leaves it out, the console generates one into the data dir on first use (owner-only, never in
the repository) and starts Streamlit with a second secrets file there holding the whole ``[auth]`` table
plus that secret (Streamlit merges secrets files by top-level table, later files winning, so the
``[auth]`` table cannot be split between two files).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError

#: the operator's secrets file, relative to where the console starts (Streamlit's own default)
OPERATOR_SECRETS = Path(".streamlit") / "secrets.toml"
#: the console's own table of sign-in settings in the same secrets file
SIGNIN_TABLE = "signin"
#: the data dir's sign-in folder: the generated cookie secret and the secrets file the console starts with
AUTH_DIR = "console-auth"
COOKIE_SECRET_FILE = "cookie_secret"
CONSOLE_SECRETS_FILE = "secrets.toml"
#: bytes of randomness in a generated cookie secret
COOKIE_SECRET_BYTES = 48
DEFAULT_SESSION_HOURS = 12.0
MAX_SESSION_HOURS = 24.0 * 30
DEFAULT_GROUPS_CLAIM = "groups"
#: set to 1 to serve a console without sign-in beyond loopback (what --insecure-no-auth sets)
INSECURE_ENV = "DISCOVERY_INSECURE_NO_AUTH"
INSECURE_FLAG = "--insecure-no-auth"
#: keys Streamlit needs for each provider
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")

BANNER = "Sign-in is off: everyone who can reach this console acts as local (admin)"
NO_COOKIE_SECRET = (
    "sign-in is configured but [auth] has no cookie_secret: start the console with `make run` "
    "(python -m console.launch generates one into the data dir) or set auth.cookie_secret"
)
EXPIRED = "session expired: sign out and in again"


@dataclass(frozen=True)
class SigninConfig:
    """What the console needs to know about a configured sign-in."""

    provider: str = "default"  # "default" (keys in [auth]) or the name of an [auth.<name>] table
    session_hours: float = DEFAULT_SESSION_HOURS
    groups_claim: str = DEFAULT_GROUPS_CLAIM
    #: for providers that send no email_verified claim (Microsoft Entra): treat the e-mail claim as verified
    assume_email_verified: bool = False
    has_cookie_secret: bool = False


def _number(value: object, name: str, low: float, high: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"[{SIGNIN_TABLE}] {name} = {value!r} is not a number: give hours, e.g. 12") from None
    if not low < number <= high:
        raise ConfigError(f"[{SIGNIN_TABLE}] {name} = {value!r} is out of range: give more than {low:g} up to {high:g}")
    return number


def signin_config(secrets_doc: Mapping[str, Any]) -> SigninConfig | None:
    """The sign-in configuration of a secrets document, or None when it has no ``[auth]`` table.

    An ``[auth]`` table that is there but incomplete is an error (one line naming what is missing),
    never a silent fall-back to the console without sign-in.
    """
    auth = secrets_doc.get("auth")
    if auth is None:
        return None
    if not isinstance(auth, Mapping):
        raise ConfigError("secrets: 'auth' must be a table ([auth]) with redirect_uri and the provider's keys")
    opts = secrets_doc.get(SIGNIN_TABLE) or {}
    if not isinstance(opts, Mapping):
        raise ConfigError(f"secrets: '{SIGNIN_TABLE}' must be a table ([{SIGNIN_TABLE}])")
    provider = str(opts.get("provider") or "default").strip()
    if not str(auth.get("redirect_uri") or "").strip():
        raise ConfigError(
            "secrets [auth] has no redirect_uri: set it to this console's URL + /oauth2callback, "
            "e.g. http://127.0.0.1:8501/oauth2callback"
        )
    section = auth if provider == "default" else auth.get(provider)
    if not isinstance(section, Mapping):
        raise ConfigError(f"secrets: [{SIGNIN_TABLE}] provider = {provider!r} but there is no [auth.{provider}] table")
    missing = [k for k in PROVIDER_KEYS if not str(section.get(k) or "").strip()]
    if missing:
        where = "[auth]" if provider == "default" else f"[auth.{provider}]"
        raise ConfigError(f"secrets {where} is missing {', '.join(missing)}: copy them from your OpenID provider")
    claim = str(opts.get("groups_claim") or DEFAULT_GROUPS_CLAIM).strip()
    return SigninConfig(
        provider=provider,
        session_hours=_number(opts.get("session_hours", DEFAULT_SESSION_HOURS), "session_hours", 0, MAX_SESSION_HOURS),
        groups_claim=claim,
        assume_email_verified=bool(opts.get("assume_email_verified", False)),
        has_cookie_secret=bool(str(auth.get("cookie_secret") or "").strip()),
    )


# --------------------------------------------------------------------------- where the console may listen


def is_loopback(address: str | None) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost).

    An empty address is not: Streamlit then listens on every interface.
    """
    text = str(address or "").strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def insecure_requested(env: Mapping[str, str]) -> bool:
    """Whether the operator asked to serve without sign-in beyond loopback (``DISCOVERY_INSECURE_NO_AUTH=1``)."""
    return str(env.get(INSECURE_ENV, "")).strip().lower() in ("1", "true", "yes", "on")


def startup_refusal(address: str | None, *, signin_on: bool, insecure: bool) -> str | None:
    """Why the console must not start on ``address`` (one line), or None when it may.

    Without sign-in every visitor acts as the built-in admin ``local``: fine on loopback, refused anywhere
    else unless the operator says so explicitly.
    """
    if signin_on or insecure or is_loopback(address):
        return None
    shown = str(address or "").strip() or "every interface"
    return (
        f"refusing to serve the console on {shown} without sign-in (everyone reaching it would act as admin): "
        f"configure [auth] in .streamlit/secrets.toml (README 'Sign-in and roles'), listen on 127.0.0.1, "
        f"or pass {INSECURE_FLAG} ({INSECURE_ENV}=1) to accept it"
    )


# --------------------------------------------------------------------------- secrets files


def read_secrets(path: str | Path) -> dict[str, Any]:
    """A secrets TOML file as a dict; an empty dict when it does not exist; one-line error when unreadable."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"secrets file {p} is not readable TOML ({str(exc).splitlines()[0]})") from None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` owner-only (0600), replacing it atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)  # md-safe: a file, not Markdown
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_cookie_secret(data_dir: str | Path) -> str:
    """The data dir's cookie secret, generated (owner-only file) on first use.

    It signs the console's sign-in cookie: whoever reads it could forge a session, so it stays in the
    private data dir and out of the repository. Deleting the file signs everyone out at the next start.
    """
    path = Path(data_dir) / AUTH_DIR / COOKIE_SECRET_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    secret = secrets.token_urlsafe(COOKIE_SECRET_BYTES)
    _write_private(path, secret + "\n")
    return secret


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"secrets: cannot write a value of type {type(value).__name__} back as TOML")


def to_toml(name: str, table: Mapping[str, Any]) -> str:
    """One TOML table (``[name]`` with its values, then its sub-tables ``[name.sub]``), for the console's file."""
    lines = [f"[{name}]"]
    subtables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    lines += [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
    text = "\n".join(lines) + "\n"
    for key, sub in subtables:
        text += "\n" + to_toml(f"{name}.{json.dumps(str(key))}", sub)
    return text


def console_secrets_files(data_dir: str | Path, operator_secrets: str | Path = OPERATOR_SECRETS) -> list[Path]:
    """The secrets files to start Streamlit with (``--secrets.files``), in order; [] for Streamlit's default.

    When the operator's ``[auth]`` has no ``cookie_secret``, the data dir's generated one is added: the
    console's own file (owner-only) repeats the ``[auth]`` table with it and comes after the operator's,
    so it wins for ``auth`` and every other table still comes from the operator's file.
    """
    doc = read_secrets(operator_secrets)
    config = signin_config(doc)
    if config is None or config.has_cookie_secret:
        return []
    auth = dict(doc["auth"])
    auth["cookie_secret"] = ensure_cookie_secret(data_dir)
    target = Path(data_dir) / AUTH_DIR / CONSOLE_SECRETS_FILE
    header = (
        f"# Written by the console at each start from {Path(operator_secrets)} plus the generated cookie secret.\n"
        "# Edit that file, not this one. Owner-only: it holds the provider's client secret.\n"
    )
    _write_private(target, header + to_toml("auth", auth))
    return [Path(operator_secrets).resolve(), target.resolve()]


# --------------------------------------------------------------------------- a signed-in person


def _groups(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[object] = list(value.replace(",", " ").split())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return ()
    return tuple(dict.fromkeys(str(g).strip() for g in items if str(g).strip()))


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def identity_claims(user: Mapping[str, Any], config: SigninConfig, *, now: float | None = None) -> dict[str, Any]:
    """The keyword arguments of ``signed_in_actor`` for a signed-in person's ID-token claims (``st.user``).

    The session starts at the token's ``iat`` (when the provider signed them in) and lasts
    ``session_hours``; an e-mail counts as verified only when the provider says so (``email_verified``),
    or when the operator declared this provider's addresses verified (``assume_email_verified``).
    """
    now = time.time() if now is None else now
    iat = user.get("iat")
    signed_in_at = float(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else now
    email = str(user.get("email") or "").strip()
    verified = "email_verified" in user and _truthy(user.get("email_verified"))
    if "email_verified" not in user and config.assume_email_verified:
        verified = True
    return {
        "email": email,
        "email_verified": bool(email) and verified,
        "issuer": str(user.get("iss") or ""),
        "subject": str(user.get("sub") or ""),
        "name": str(user.get("name") or ""),
        "groups": _groups(user.get(config.groups_claim)),
        "signed_in_at": signed_in_at,
        "expires_at": signed_in_at + config.session_hours * 3600.0,
    }


def is_expired(expires_at: float | None, *, now: float | None = None) -> bool:
    return expires_at is not None and (time.time() if now is None else now) >= expires_at


__all__ = [
    "BANNER",
    "DEFAULT_GROUPS_CLAIM",
    "DEFAULT_SESSION_HOURS",
    "EXPIRED",
    "INSECURE_ENV",
    "INSECURE_FLAG",
    "NO_COOKIE_SECRET",
    "SigninConfig",
    "console_secrets_files",
    "ensure_cookie_secret",
    "identity_claims",
    "insecure_requested",
    "is_expired",
    "is_loopback",
    "read_secrets",
    "signin_config",
    "startup_refusal",
    "to_toml",
]
