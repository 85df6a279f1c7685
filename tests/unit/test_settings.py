"""Settings from the environment: embedded defaults, generated secrets, production refusals."""

from __future__ import annotations

import base64
import secrets
import stat
from pathlib import Path

import pytest

from engine.config import Settings, SettingsError, declarations, load_settings, variable


def test_embedded_defaults_use_the_data_directory(tmp_path: Path) -> None:
    """With nothing set, the store and blobs live under the data directory."""
    settings = load_settings({"HEALTHMED_DATA_DIR": str(tmp_path)})
    assert settings.store_url == f"sqlite:///{tmp_path / 'healthmed.sqlite3'}"
    assert settings.blob_url == f"file://{tmp_path / 'blobs'}"
    assert settings.redis_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_generated_secrets_are_private_files(tmp_path: Path) -> None:
    """Missing secrets are generated once into ``secrets/`` with mode 0600."""
    load_settings({"HEALTHMED_DATA_DIR": str(tmp_path)})
    files = sorted((tmp_path / "secrets").iterdir())
    assert [f.name for f in files] == ["jwt_secret", "master_key", "meeting_secret"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_generated_secrets_are_stable_across_loads(tmp_path: Path) -> None:
    """A restart reads the same secrets back, so issued tokens stay valid."""
    env = {"HEALTHMED_DATA_DIR": str(tmp_path)}
    first, second = load_settings(env), load_settings(env)
    assert first.jwt_secret == second.jwt_secret
    assert first.master_key == second.master_key
    assert len(first.master_key) == 32
    assert len(first.jwt_secret) >= 32


def test_secrets_from_the_environment_win(tmp_path: Path) -> None:
    """A secret given in the environment is used and nothing is written for it."""
    secret = "e" * 40
    settings = load_settings({"HEALTHMED_DATA_DIR": str(tmp_path), "HEALTHMED_JWT_SECRET": secret})
    assert settings.jwt_secret == secret
    assert not (tmp_path / "secrets" / "jwt_secret").exists()


def test_production_refuses_missing_secrets_naming_them(tmp_path: Path) -> None:
    """Production mode stops with a message naming every missing secret and how to make one."""
    with pytest.raises(SettingsError) as info:
        load_settings({"HEALTHMED_ENV": "production", "HEALTHMED_DATA_DIR": str(tmp_path)})
    message = str(info.value)
    for name in ("HEALTHMED_JWT_SECRET", "HEALTHMED_MEETING_SECRET", "HEALTHMED_MASTER_KEY"):
        assert name in message
    assert "token_urlsafe" in message
    assert not (tmp_path / "secrets").exists()


def test_production_starts_with_every_secret(tmp_path: Path) -> None:
    """Given all secrets, production mode loads."""
    settings = load_settings(
        {
            "HEALTHMED_ENV": "production",
            "HEALTHMED_DATA_DIR": str(tmp_path),
            **_strong_secrets(),
        }
    )
    assert settings.production
    assert len(settings.master_key) == 32


def _strong_secrets() -> dict[str, str]:
    return {
        "HEALTHMED_JWT_SECRET": secrets.token_urlsafe(32),
        "HEALTHMED_MEETING_SECRET": secrets.token_urlsafe(32),
        "HEALTHMED_MASTER_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        pytest.param("HEALTHMED_JWT_SECRET", "j" * 40, "distinct", id="jwt-repeated-char"),
        pytest.param("HEALTHMED_JWT_SECRET", "abcdefghijklmnop" * 3, "pattern", id="jwt-pattern"),
        pytest.param("HEALTHMED_MEETING_SECRET", "0123456789abcdefghijk", "bytes", id="short"),
        pytest.param(
            "HEALTHMED_MASTER_KEY",
            base64.urlsafe_b64encode(bytes(32)).decode(),
            "distinct",
            id="zero-master-key",
        ),
        pytest.param(
            "HEALTHMED_MASTER_KEY",
            base64.urlsafe_b64encode(bytes(range(16)) * 2).decode(),
            "pattern",
            id="repeated-master-key",
        ),
    ],
)
def test_production_refuses_weak_secrets(
    tmp_path: Path, name: str, value: str, reason: str
) -> None:
    """All-zero, repeated or short secrets stop a production start, naming the variable."""
    env = {"HEALTHMED_ENV": "production", "HEALTHMED_DATA_DIR": str(tmp_path), **_strong_secrets()}
    env[name] = value
    with pytest.raises(SettingsError, match=reason) as info:
        load_settings(env)
    assert name in str(info.value)


def test_production_refuses_one_secret_for_jwt_and_meetings(tmp_path: Path) -> None:
    """The JWT and meeting secrets must differ in production."""
    env = {"HEALTHMED_ENV": "production", "HEALTHMED_DATA_DIR": str(tmp_path), **_strong_secrets()}
    env["HEALTHMED_MEETING_SECRET"] = env["HEALTHMED_JWT_SECRET"]
    with pytest.raises(SettingsError, match="differ"):
        load_settings(env)


def test_short_jwt_secret_is_refused(tmp_path: Path) -> None:
    """A JWT secret under 32 characters is too weak for HS256."""
    with pytest.raises(SettingsError, match="at least 32"):
        load_settings({"HEALTHMED_DATA_DIR": str(tmp_path), "HEALTHMED_JWT_SECRET": "short"})


@pytest.mark.parametrize("value", ["abc", "1.5", "0", "-3"])
def test_bad_integer_names_the_variable(tmp_path: Path, value: str) -> None:
    """A non-integer or non-positive number is refused with the variable's name."""
    with pytest.raises(SettingsError, match="HEALTHMED_PORT"):
        load_settings({"HEALTHMED_DATA_DIR": str(tmp_path), "HEALTHMED_PORT": value})


def test_unknown_env_mode_is_refused(tmp_path: Path) -> None:
    """``HEALTHMED_ENV`` is one of development, production, test."""
    with pytest.raises(SettingsError, match="HEALTHMED_ENV"):
        load_settings({"HEALTHMED_DATA_DIR": str(tmp_path), "HEALTHMED_ENV": "staging"})


def test_login_limits_are_read(tmp_path: Path) -> None:
    """Failed-login limits come from the environment."""
    settings = load_settings(
        {
            "HEALTHMED_DATA_DIR": str(tmp_path),
            "HEALTHMED_LOGIN_FAIL_LIMIT_ACCOUNT": "3",
            "HEALTHMED_LOGIN_FAIL_WINDOW_SECONDS": "60",
        }
    )
    assert (settings.login_fail_limit_account, settings.login_fail_window_seconds) == (3, 60)


def test_operations_settings_default_by_mode(tmp_path: Path) -> None:
    """Logs are text in development and JSON in production; the drain lasts 5 s and Redis is
    not a cluster unless told."""
    base = {"HEALTHMED_DATA_DIR": str(tmp_path)}
    dev = load_settings(base)
    prod = load_settings(
        {
            **base,
            "HEALTHMED_ENV": "production",
            "HEALTHMED_JWT_SECRET": secrets.token_urlsafe(40),
            "HEALTHMED_MEETING_SECRET": secrets.token_urlsafe(40),
            "HEALTHMED_MASTER_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        }
    )
    assert (dev.log_format, prod.log_format) == ("text", "json")
    assert dev.drain_seconds == 5.0
    assert dev.redis_cluster is False


def test_operations_settings_are_read_and_checked(tmp_path: Path) -> None:
    """HEALTHMED_LOG_FORMAT, HEALTHMED_DRAIN_SECONDS and HEALTHMED_REDIS_CLUSTER are read;
    a value outside their choices is refused naming the variable."""
    base = {"HEALTHMED_DATA_DIR": str(tmp_path)}
    settings = load_settings(
        {
            **base,
            "HEALTHMED_LOG_FORMAT": "json",
            "HEALTHMED_DRAIN_SECONDS": "0.5",
            "HEALTHMED_REDIS_CLUSTER": "true",
        }
    )
    assert (settings.log_format, settings.drain_seconds, settings.redis_cluster) == (
        "json",
        0.5,
        True,
    )
    for name, value in (
        ("HEALTHMED_LOG_FORMAT", "xml"),
        ("HEALTHMED_DRAIN_SECONDS", "soon"),
        ("HEALTHMED_DRAIN_SECONDS", "-1"),
        ("HEALTHMED_REDIS_CLUSTER", "maybe"),
    ):
        with pytest.raises(SettingsError, match=name):
            load_settings({**base, name: value})


def test_unset_variables_give_the_declared_defaults(tmp_path: Path) -> None:
    """Each setting's default is written once: with nothing set, ``load_settings`` returns the
    declared default of every setting whose default is not derived from the data directory."""
    loaded = load_settings({"HEALTHMED_DATA_DIR": str(tmp_path)})
    declared = Settings()
    checked = 0
    for name, (_, spec) in declarations().items():
        if spec.derive is None and spec.read is not None:
            assert getattr(loaded, name) == getattr(declared, name), name
            checked += 1
    assert checked > 30


def test_every_setting_read_from_the_environment_is_in_the_readme() -> None:
    """The README's configuration tables name every variable ``load_settings`` reads."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [
        variable(name)
        for name, (_, spec) in declarations().items()
        if (spec.read is not None or name in {"env", "data_dir"} or "secret" in name)
        and f"`{variable(name)}`" not in readme
    ]
    assert missing == []


def test_a_declared_variable_is_read(tmp_path: Path) -> None:
    """A variable is read through its declaration: each kind of reader takes its value."""
    settings = load_settings(
        {
            "HEALTHMED_DATA_DIR": str(tmp_path),
            "HEALTHMED_WS_MAX_TOPICS": "7",
            "HEALTHMED_MAIL_POLL_SECONDS": "0.25",
            "HEALTHMED_REMINDER_MINUTES": "30,120",
            "HEALTHMED_MEETING_BASE_URL": "https://meet.example/",
            "HEALTHMED_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
        }
    )
    assert settings.ws_max_topics == 7
    assert settings.mail_poll_seconds == 0.25
    assert settings.reminder_minutes == (120, 30)
    assert settings.meeting_base_url == "https://meet.example"
    assert settings.trusted_proxies == frozenset({"10.0.0.0/8", "127.0.0.1"})
