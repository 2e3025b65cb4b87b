"""Sign-in decisions without a page (console.signin) and the launcher (console.launch): when sign-in counts as
configured, where the console may listen without it, the generated cookie secret and the secrets file the
console starts with, and a signed-in person's claims turned into an actor's fields."""

from __future__ import annotations

import stat
import tomllib

import pytest

from console import launch, signin
from engine.core.errors import ConfigError

AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "client_id": "discovery-console",
    "client_secret": "s3cret",
    "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration",
}


def test_no_auth_table_means_sign_in_is_off():
    assert signin.signin_config({}) is None
    assert signin.signin_config({"other": {"x": 1}}) is None


def test_a_complete_auth_table_turns_sign_in_on_with_the_defaults():
    cfg = signin.signin_config({"auth": AUTH})
    assert cfg == signin.SigninConfig(provider="default", session_hours=12.0, groups_claim="groups")
    assert not cfg.has_cookie_secret
    assert signin.signin_config({"auth": {**AUTH, "cookie_secret": "x" * 40}}).has_cookie_secret


def test_the_signin_table_sets_provider_lifetime_and_groups_claim():
    doc = {
        "auth": {"redirect_uri": AUTH["redirect_uri"], "keycloak": {k: AUTH[k] for k in signin.PROVIDER_KEYS}},
        "signin": {"provider": "keycloak", "session_hours": 8, "groups_claim": "roles", "assume_email_verified": True},
    }
    cfg = signin.signin_config(doc)
    assert (cfg.provider, cfg.session_hours, cfg.groups_claim, cfg.assume_email_verified) == (
        "keycloak",
        8.0,
        "roles",
        True,
    )


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"auth": {k: v for k, v in AUTH.items() if k != "client_secret"}}, "missing client_secret"),
        ({"auth": {k: v for k, v in AUTH.items() if k != "redirect_uri"}}, "no redirect_uri"),
        ({"auth": AUTH, "signin": {"provider": "okta"}}, "no [auth.okta] table"),
        ({"auth": AUTH, "signin": {"session_hours": 0}}, "out of range"),
        ({"auth": AUTH, "signin": {"session_hours": "soon"}}, "not a number"),
        ({"auth": "on"}, "must be a table"),
    ],
)
def test_a_half_configured_sign_in_is_a_one_line_error_never_sign_in_off(doc, says):
    with pytest.raises(ConfigError) as err:
        signin.signin_config(doc)
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("", False),
        (None, False),
        ("192.168.1.5", False),
        ("ops-host.example.com", False),
        ("::", False),
    ],
)
def test_loopback_addresses(address, loopback):
    assert signin.is_loopback(address) is loopback


def test_the_console_refuses_a_non_loopback_address_without_sign_in_unless_told():
    assert signin.startup_refusal("127.0.0.1", signin_on=False, insecure=False) is None
    assert signin.startup_refusal("0.0.0.0", signin_on=True, insecure=False) is None
    assert signin.startup_refusal("0.0.0.0", signin_on=False, insecure=True) is None
    why = signin.startup_refusal("0.0.0.0", signin_on=False, insecure=False)
    assert why and "0.0.0.0" in why and "--insecure-no-auth" in why and "\n" not in why
    assert "every interface" in signin.startup_refusal("", signin_on=False, insecure=False)


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("yes", True), ("0", False), ("", False)])
def test_the_insecure_environment_variable(value, on):
    assert signin.insecure_requested({signin.INSECURE_ENV: value}) is on
    assert signin.insecure_requested({}) is False


def test_the_cookie_secret_is_generated_once_owner_only_and_differs_per_data_dir(tmp_path):
    a = signin.ensure_cookie_secret(tmp_path / "a")
    path = tmp_path / "a" / signin.AUTH_DIR / signin.COOKIE_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(a) >= 60 and signin.ensure_cookie_secret(tmp_path / "a") == a
    assert signin.ensure_cookie_secret(tmp_path / "b") != a


def test_the_console_secrets_file_repeats_auth_with_the_generated_secret(tmp_path):
    operator = tmp_path / "secrets.toml"
    operator.write_text(
        '[other]\nkey = "kept in the operator file"\n\n[auth]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in AUTH.items())
        + 'client_kwargs = { scope = "openid email profile groups", prompt = "select_account" }\n'
        + '\n[auth.google]\nclient_id = "g"\nclient_secret = "q\\"uote"\n'
        + 'server_metadata_url = "https://accounts.google.com/.well-known/openid-configuration"\n'
        + "\n[signin]\nsession_hours = 4\n"
    )
    files = signin.console_secrets_files(tmp_path / "data", operator)
    assert files[0] == operator.resolve() and len(files) == 2
    written = files[1]
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    auth = tomllib.loads(written.read_text())["auth"]
    original = tomllib.loads(operator.read_text())["auth"]
    assert auth.pop("cookie_secret") == signin.ensure_cookie_secret(tmp_path / "data")
    assert auth == original  # every key, nested tables and quotes included
    assert set(tomllib.loads(written.read_text())) == {"auth"}  # other tables stay in the operator's file only


def test_no_console_secrets_file_when_sign_in_is_off_or_the_operator_set_the_secret(tmp_path):
    operator = tmp_path / "secrets.toml"
    assert signin.console_secrets_files(tmp_path / "data", operator) == []  # no file at all
    operator.write_text("[auth]\n" + "".join(f'{k} = "{v}"\n' for k, v in AUTH.items()) + 'cookie_secret = "c"\n')
    assert signin.console_secrets_files(tmp_path / "data", operator) == []
    assert not (tmp_path / "data" / signin.AUTH_DIR).exists()


def test_an_unreadable_secrets_file_is_one_line(tmp_path):
    bad = tmp_path / "secrets.toml"
    bad.write_text("[auth\n")
    with pytest.raises(ConfigError) as err:
        signin.read_secrets(bad)
    assert "not readable TOML" in str(err.value) and "\n" not in str(err.value)


CLAIMS = {
    "iss": "http://127.0.0.1:9000",
    "sub": "u-17",
    "email": "Alice@Example.com",
    "email_verified": True,
    "name": "Alice",
    "iat": 1_000_000,
    "exp": 1_003_600,
    "groups": ["sre", "oncall"],
    "is_logged_in": True,
}


def test_claims_become_the_actor_fields_with_the_session_lifetime():
    got = signin.identity_claims(CLAIMS, signin.SigninConfig(session_hours=12))
    assert got == {
        "email": "Alice@Example.com",
        "email_verified": True,
        "issuer": "http://127.0.0.1:9000",
        "subject": "u-17",
        "name": "Alice",
        "groups": ("sre", "oncall"),
        "signed_in_at": 1_000_000.0,
        "expires_at": 1_000_000.0 + 12 * 3600,
    }
    assert signin.is_expired(got["expires_at"], now=1_000_000 + 12 * 3600)
    assert not signin.is_expired(got["expires_at"], now=1_000_000 + 12 * 3600 - 1)


def test_the_groups_claim_name_is_configurable_and_a_string_claim_splits():
    cfg = signin.SigninConfig(groups_claim="roles")
    assert signin.identity_claims({**CLAIMS, "roles": "ops, audit ops"}, cfg)["groups"] == ("ops", "audit")
    assert signin.identity_claims({k: v for k, v in CLAIMS.items() if k != "roles"}, cfg)["groups"] == ()


def test_an_e_mail_counts_as_verified_only_when_the_provider_says_so():
    unverified = {k: v for k, v in CLAIMS.items() if k != "email_verified"}
    assert signin.identity_claims(unverified, signin.SigninConfig())["email_verified"] is False
    assert signin.identity_claims({**CLAIMS, "email_verified": "true"}, signin.SigninConfig())["email_verified"]
    assert not signin.identity_claims({**CLAIMS, "email_verified": False}, signin.SigninConfig())["email_verified"]
    trusted = signin.SigninConfig(assume_email_verified=True)
    assert signin.identity_claims(unverified, trusted)["email_verified"] is True
    assert not signin.identity_claims({**CLAIMS, "email_verified": False}, trusted)["email_verified"]


def test_without_iat_the_session_starts_now():
    got = signin.identity_claims({"email": "a@b.co", "email_verified": True}, signin.SigninConfig(), now=50.0)
    assert got["signed_in_at"] == 50.0 and got["expires_at"] == 50.0 + 12 * 3600


def test_the_launcher_refuses_in_one_line_and_accepts_loopback(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(signin.INSECURE_ENV, raising=False)
    missing = tmp_path / "none.toml"
    assert launch.main(["--check", "--host", "0.0.0.0", "--secrets", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to serve the console on 0.0.0.0") and err.count("\n") == 1
    assert launch.main(["--check", "--host", "0.0.0.0", "--secrets", str(missing), "--insecure-no-auth"]) == 0
    monkeypatch.setenv(signin.INSECURE_ENV, "1")
    assert launch.main(["--check", "--host", "0.0.0.0", "--secrets", str(missing)]) == 0
    monkeypatch.delenv(signin.INSECURE_ENV)
    assert launch.main(["--check", "--host", "127.0.0.1", "--secrets", str(missing)]) == 0
    configured = tmp_path / "secrets.toml"
    configured.write_text("[auth]\n" + "".join(f'{k} = "{v}"\n' for k, v in AUTH.items()))
    assert launch.main(["--check", "--host", "0.0.0.0", "--secrets", str(configured)]) == 0
    half = tmp_path / "half.toml"
    half.write_text('[auth]\nredirect_uri = "http://x/oauth2callback"\n')
    assert launch.main(["--check", "--host", "127.0.0.1", "--secrets", str(half)]) == 2
    assert "missing client_id, client_secret, server_metadata_url" in capsys.readouterr().err


def test_the_launcher_starts_streamlit_with_the_console_secrets_files(tmp_path):
    cmd = launch.streamlit_command("0.0.0.0", 8600, [tmp_path / "a.toml", tmp_path / "b.toml"])
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == launch.APP
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0" and cmd[cmd.index("--server.port") + 1] == "8600"
    files = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--secrets.files"]
    assert files == [str(tmp_path / "a.toml"), str(tmp_path / "b.toml")]
    assert "--secrets.files" not in launch.streamlit_command("127.0.0.1", 8501, [])
