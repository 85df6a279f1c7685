"""Settings read once from the environment (prefix ``HEALTHMED_``).

Defaults serve the embedded mode: in-process Redis with Lua, SQLite and files under
``HEALTHMED_DATA_DIR``. Secrets missing in embedded mode are generated once into the data
directory with mode 0600; in production mode (``HEALTHMED_ENV=production``) a missing secret
stops the start with a clear message.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

Env = Literal["development", "production", "test"]


class SettingsError(RuntimeError):
    """The environment cannot produce a valid configuration; the message says how to fix it."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    env: Env = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./var")
    redis_url: str | None = None
    store_url: str = ""
    blob_url: str = ""
    jwt_secret: str = field(default="", repr=False)
    master_key: bytes = field(default=b"", repr=False)
    kms_key_id: str | None = None
    jwt_issuer: str = "healthmed"
    jwt_audience: str = "healthmed-api"
    access_ttl_seconds: int = 900
    refresh_ttl_seconds: int = 30 * 86400
    meeting_base_url: str = "https://meet.healthmed.local"
    meeting_secret: str = field(default="", repr=False)
    meeting_minutes: int = 50
    request_ttl_seconds: int = 7200
    record_max_bytes: int = 20 * 1024 * 1024
    max_body_bytes: int = 64 * 1024
    login_fail_limit_account: int = 5
    login_fail_limit_address: int = 50
    login_fail_window_seconds: int = 900
    hash_concurrency: int = 2
    trusted_proxies: frozenset[str] = frozenset()
    ws_max_message_bytes: int = 4096
    ws_max_topics: int = 50
    ws_queue_size: int = 256
    ws_idle_seconds: int = 60
    ws_auth_seconds: float = 5.0
    ws_rate_per_second: int = 10
    ws_rate_burst: int = 60
    sweep_interval_seconds: float = 1.0
    registration_limit_address: int = 3000
    """Registrations and reset requests from one address per window (429 past it)."""
    registration_window_seconds: int = 60
    max_future_slots: int = 5000
    request_limit_per_doctor: int = 3
    """Undecided requests one patient may hold with one doctor (409 ``request_limit``)."""
    request_limit_total: int = 10
    """Undecided requests one patient may hold in all."""
    """Future slots one doctor may hold (409 ``slot_limit`` past it)."""
    max_header_bytes: int = 32 * 1024
    """Request line plus headers of one HTTP request (431 past it)."""
    header_timeout_seconds: int = 10
    """Time a client has to send a request's head (408 and close past it)."""
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    drain_seconds: float = 5.0
    redis_cluster: bool = False
    # --- notifications (engine/notifications) ---
    mail_url: str = ""
    """Where e-mail goes: smtp://, smtps://, ses://<region> or file://<folder> (default)."""
    mail_from: str = "Health&Med <no-reply@healthmed.local>"
    mail_max_attempts: int = 8
    """Sends of one message before it is marked ``failed``."""
    mail_retry_seconds: float = 5.0
    """First retry delay; doubled each attempt (capped at an hour), jittered down to half."""
    mail_lease_seconds: float = 60.0
    """How long a replica's claim on a message hides it from the others (a send times out at
    half of it); a replica killed mid-send lets another one resend after this."""
    mail_poll_seconds: float = 1.0
    """How often every replica looks for due messages (at once after a local change)."""
    mail_timezone: str = "America/Sao_Paulo"
    """Time zone of the times written in e-mails (the iCalendar parts are in UTC)."""
    reminder_minutes: tuple[int, ...] = (1440, 60)
    """Reminders go this many minutes before a confirmed appointment starts."""
    # --- waitlist (engine/waitlist) ---
    waitlist_hold_seconds: int = 600
    """How long a freed slot is held for the waitlist entry it was offered to."""
    waitlist_limit: int = 10
    """Active waitlist entries one patient may hold (409 ``waitlist_limit`` past it)."""

    @property
    def production(self) -> bool:
        return self.env == "production"


def _secret_file(data_dir: Path, name: str, make: Callable[[], str]) -> str:
    """Read a generated secret from the data directory, creating it (mode 0600) on first use."""
    path = data_dir / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _minutes(raw: str | None) -> tuple[int, ...]:
    if raw is None or raw.strip() == "":
        return (1440, 60)
    try:
        values = sorted({int(part) for part in raw.split(",") if part.strip()}, reverse=True)
    except ValueError:
        raise SettingsError(
            f"HEALTHMED_REMINDER_MINUTES must be comma-separated minutes, got {raw!r}"
        ) from None
    if any(not 0 < value <= 60 * 24 * 60 for value in values) or len(values) > 5:
        raise SettingsError("HEALTHMED_REMINDER_MINUTES: at most 5 values of 1 to 86400 minutes")
    return tuple(values)


def _mail(env: Mapping[str, str], data_dir: Path) -> tuple[str, str, str]:
    """``HEALTHMED_MAIL_URL``, ``HEALTHMED_MAIL_FROM``, ``HEALTHMED_MAIL_TIMEZONE``, checked."""
    from email.utils import parseaddr
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from engine.notifications import parse_mail_url

    url = env.get("HEALTHMED_MAIL_URL") or f"file://{data_dir / 'mail'}"
    try:
        parse_mail_url(url)
    except ValueError as exc:
        raise SettingsError(f"HEALTHMED_MAIL_URL: {exc}") from None
    sender = env.get("HEALTHMED_MAIL_FROM") or "Health&Med <no-reply@healthmed.local>"
    if "@" not in parseaddr(sender)[1] or "\n" in sender or "\r" in sender:
        raise SettingsError(
            f"HEALTHMED_MAIL_FROM must be an address such as 'Name <a@b.c>', got {sender!r}"
        )
    zone = env.get("HEALTHMED_MAIL_TIMEZONE") or "America/Sao_Paulo"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"HEALTHMED_MAIL_TIMEZONE: unknown time zone {zone!r}") from None
    return url, sender, zone


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 3600:
        raise SettingsError(f"{name} must be between 0 and 3600 seconds, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "false").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _log_format(env: Mapping[str, str], production: bool) -> Literal["text", "json"]:
    raw = env.get("HEALTHMED_LOG_FORMAT") or ("json" if production else "text")
    if raw not in ("text", "json"):
        raise SettingsError(f"HEALTHMED_LOG_FORMAT must be text or json, not {raw!r}")
    return raw  # type: ignore[return-value]


def _master_key(raw: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError:
        raise SettingsError("HEALTHMED_MASTER_KEY must be 32 bytes, base64url-encoded") from None
    if len(key) != 32:
        raise SettingsError("HEALTHMED_MASTER_KEY must be 32 bytes, base64url-encoded")
    return key


SECRET_MIN_BYTES = 32


def _weak(raw: bytes) -> str | None:
    """Why ``raw`` cannot be a random secret of 32 bytes or more, or None if it can: too short,
    too few distinct values (all zeros, ``aaaa...``), or a short pattern repeated."""
    if len(raw) < SECRET_MIN_BYTES:
        return f"is {len(raw)} bytes; at least {SECRET_MIN_BYTES} random bytes are needed"
    if len(set(raw)) < 12:
        return "repeats too few distinct values to be random"
    for period in range(1, len(raw) // 2 + 1):
        if len(raw) % period == 0 and raw == raw[:period] * (len(raw) // period):
            return "is a short pattern repeated"
    return None


def check_production_secrets(jwt_secret: str, meeting_secret: str, master_key: bytes) -> None:
    """Production refuses secrets that are short, all zeros, repeated patterns or shared:
    each secret must look like at least 32 random bytes and the JWT and meeting secrets differ
    (one leaked must not forge the other)."""
    checks = [("HEALTHMED_JWT_SECRET", jwt_secret.encode()),
              ("HEALTHMED_MEETING_SECRET", meeting_secret.encode())]  # fmt: skip
    if master_key:
        checks.append(("HEALTHMED_MASTER_KEY", master_key))
    for name, raw in checks:
        reason = _weak(raw)
        if reason is not None:
            raise SettingsError(
                f"{name} {reason} (generate one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
    if jwt_secret == meeting_secret:
        raise SettingsError("HEALTHMED_JWT_SECRET and HEALTHMED_MEETING_SECRET must differ")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default ``os.environ``); raise ``SettingsError`` if invalid."""
    env = os.environ if env is None else env
    mode = env.get("HEALTHMED_ENV", "development")
    if mode not in ("development", "production", "test"):
        raise SettingsError(f"HEALTHMED_ENV must be development, production or test, not {mode!r}")
    data_dir = Path(env.get("HEALTHMED_DATA_DIR") or "./var").resolve()
    production = mode == "production"

    secrets_needed: dict[str, Callable[[], str]] = {
        "HEALTHMED_JWT_SECRET": lambda: secrets.token_urlsafe(48),
        "HEALTHMED_MEETING_SECRET": lambda: secrets.token_urlsafe(48),
        "HEALTHMED_MASTER_KEY": lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    if production:
        missing = [name for name in secrets_needed if not env.get(name)]
        if env.get("HEALTHMED_KMS_KEY_ID") and "HEALTHMED_MASTER_KEY" in missing:
            missing.remove("HEALTHMED_MASTER_KEY")
        if missing:
            raise SettingsError(
                "production mode needs these secrets in the environment: "
                + ", ".join(missing)
                + " (generate each with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
    values: dict[str, str] = {}
    for name, make in secrets_needed.items():
        given = env.get(name)
        if given:
            values[name] = given
        elif not production:
            values[name] = _secret_file(data_dir, name.removeprefix("HEALTHMED_").lower(), make)
    if len(values.get("HEALTHMED_JWT_SECRET", "")) < 32 and values.get("HEALTHMED_JWT_SECRET"):
        raise SettingsError("HEALTHMED_JWT_SECRET must be at least 32 characters")

    store_url = env.get("HEALTHMED_STORE_URL") or f"sqlite:///{data_dir / 'healthmed.sqlite3'}"
    if not store_url.startswith(("sqlite:///", "dynamodb://")):
        raise SettingsError("HEALTHMED_STORE_URL must be sqlite:///<path> or dynamodb://<table>")
    blob_url = env.get("HEALTHMED_BLOB_URL") or f"file://{data_dir / 'blobs'}"
    if not blob_url.startswith(("file://", "s3://")):
        raise SettingsError("HEALTHMED_BLOB_URL must be file://<dir> or s3://<bucket>/<prefix>")
    proxies = frozenset(
        p.strip() for p in env.get("HEALTHMED_TRUSTED_PROXIES", "").split(",") if p.strip()
    )
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(
                f"HEALTHMED_TRUSTED_PROXIES: {proxy!r} is not an IP address or network"
            ) from None
    master = values.get("HEALTHMED_MASTER_KEY")
    if production:
        check_production_secrets(
            values["HEALTHMED_JWT_SECRET"],
            values["HEALTHMED_MEETING_SECRET"],
            _master_key(master) if master else b"",
        )
    mail_url, mail_from, mail_timezone = _mail(env, data_dir)
    return Settings(
        env=mode,  # type: ignore[arg-type]
        host=env.get("HEALTHMED_HOST") or "127.0.0.1",
        port=_int(env, "HEALTHMED_PORT", 8000),
        data_dir=data_dir,
        redis_url=env.get("HEALTHMED_REDIS_URL") or None,
        store_url=store_url,
        blob_url=blob_url,
        jwt_secret=values["HEALTHMED_JWT_SECRET"],
        master_key=_master_key(master) if master else b"",
        kms_key_id=env.get("HEALTHMED_KMS_KEY_ID") or None,
        meeting_base_url=(
            env.get("HEALTHMED_MEETING_BASE_URL") or "https://meet.healthmed.local"
        ).rstrip("/"),
        meeting_secret=values["HEALTHMED_MEETING_SECRET"],
        meeting_minutes=_int(env, "HEALTHMED_MEETING_MINUTES", 50),
        request_ttl_seconds=_int(env, "HEALTHMED_REQUEST_TTL_SECONDS", 7200),
        record_max_bytes=_int(env, "HEALTHMED_RECORD_MAX_BYTES", 20 * 1024 * 1024),
        access_ttl_seconds=_int(env, "HEALTHMED_ACCESS_TTL_SECONDS", 900),
        login_fail_limit_account=_int(env, "HEALTHMED_LOGIN_FAIL_LIMIT_ACCOUNT", 5),
        login_fail_limit_address=_int(env, "HEALTHMED_LOGIN_FAIL_LIMIT_ADDRESS", 50),
        login_fail_window_seconds=_int(env, "HEALTHMED_LOGIN_FAIL_WINDOW_SECONDS", 900),
        hash_concurrency=_int(env, "HEALTHMED_HASH_CONCURRENCY", max(2, os.cpu_count() or 2)),
        trusted_proxies=proxies,
        ws_queue_size=_int(env, "HEALTHMED_WS_QUEUE_SIZE", 256),
        ws_idle_seconds=_int(env, "HEALTHMED_WS_IDLE_SECONDS", 60),
        ws_auth_seconds=_int(env, "HEALTHMED_WS_AUTH_SECONDS", 5),
        ws_max_message_bytes=_int(env, "HEALTHMED_WS_MAX_MESSAGE_BYTES", 4096),
        ws_max_topics=_int(env, "HEALTHMED_WS_MAX_TOPICS", 50),
        ws_rate_per_second=_int(env, "HEALTHMED_WS_RATE_PER_SECOND", 10),
        ws_rate_burst=_int(env, "HEALTHMED_WS_RATE_BURST", 60),
        log_level=env.get("HEALTHMED_LOG_LEVEL") or "INFO",
        log_format=_log_format(env, production),
        drain_seconds=_seconds(env, "HEALTHMED_DRAIN_SECONDS", 5.0),
        redis_cluster=_flag(env, "HEALTHMED_REDIS_CLUSTER"),
        mail_url=mail_url,
        mail_from=mail_from,
        mail_timezone=mail_timezone,
        mail_max_attempts=_int(env, "HEALTHMED_MAIL_MAX_ATTEMPTS", 8),
        mail_retry_seconds=_float(env, "HEALTHMED_MAIL_RETRY_SECONDS", 5.0),
        mail_lease_seconds=_float(env, "HEALTHMED_MAIL_LEASE_SECONDS", 60.0),
        mail_poll_seconds=_float(env, "HEALTHMED_MAIL_POLL_SECONDS", 1.0),
        reminder_minutes=_minutes(env.get("HEALTHMED_REMINDER_MINUTES")),
        registration_limit_address=_int(env, "HEALTHMED_REGISTRATION_LIMIT_ADDRESS", 3000),
        registration_window_seconds=_int(env, "HEALTHMED_REGISTRATION_WINDOW_SECONDS", 60),
        max_future_slots=_int(env, "HEALTHMED_MAX_FUTURE_SLOTS", 5000),
        request_limit_per_doctor=_int(env, "HEALTHMED_REQUEST_LIMIT_PER_DOCTOR", 3),
        request_limit_total=_int(env, "HEALTHMED_REQUEST_LIMIT_TOTAL", 10),
        max_header_bytes=_int(env, "HEALTHMED_MAX_HEADER_BYTES", 32 * 1024),
        header_timeout_seconds=_int(env, "HEALTHMED_HEADER_TIMEOUT_SECONDS", 10),
        waitlist_hold_seconds=_int(env, "HEALTHMED_WAITLIST_HOLD_SECONDS", 600),
        waitlist_limit=_int(env, "HEALTHMED_WAITLIST_LIMIT", 10),
    )
