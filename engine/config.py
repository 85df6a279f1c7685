"""Settings read once from the environment (prefix ``HEALTHMED_``).

Each setting is declared once, in :class:`Settings`, grouped by concern: its name (the field;
the variable is ``HEALTHMED_`` plus the name in capitals), its default, a one-line doc, and
how a value from the environment is read and checked. :func:`load_settings` walks those
declarations; nothing repeats a default.

Defaults serve the embedded mode: in-process Redis with Lua, SQLite and files under
``HEALTHMED_DATA_DIR``. Secrets missing in embedded mode are generated once into the data
directory with mode 0600; in production mode (``HEALTHMED_ENV=production``) a missing secret
stops the start with a clear message.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

Env = Literal["development", "production", "test"]
T = TypeVar("T")
N = TypeVar("N", int, float)

PREFIX = "HEALTHMED_"


class SettingsError(RuntimeError):
    """The environment cannot produce a valid configuration; the message says how to fix it."""


# -- how a value is read ------------------------------------------------------------------
# A reader gets the variable's name (for the message) and its non-empty text; an empty
# variable counts as unset everywhere.


def _number(name: str, raw: str, kind: Callable[[str], N], what: str) -> N:
    """``raw`` read by ``kind`` (``int``, ``float``); a message saying it must be ``what``
    if it cannot be."""
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from None


def _positive_int(name: str, raw: str) -> int:
    value = _number(name, raw, int, "an integer")
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def _positive_float(name: str, raw: str) -> float:
    value = _number(name, raw, float, "a number")
    if not value > 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _seconds(name: str, raw: str) -> float:
    value = _number(name, raw, float, "a number of seconds")
    if not 0 <= value <= 3600:
        raise SettingsError(f"{name} must be between 0 and 3600 seconds, got {value}")
    return value


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false, got {value!r}")


def _text(name: str, raw: str) -> str:
    return raw


def _choice(*choices: str) -> Callable[[str, str], str]:
    def read(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name} must be {' or '.join(choices)}, not {raw!r}")
        return raw

    return read


def _url(*schemes: str, shape: str) -> Callable[[str, str], str]:
    def read(name: str, raw: str) -> str:
        if not raw.startswith(schemes):
            raise SettingsError(f"{name} must be {shape}")
        return raw

    return read


def _base_url(name: str, raw: str) -> str:
    return raw.rstrip("/")


def _proxies(name: str, raw: str) -> frozenset[str]:
    proxies = frozenset(p.strip() for p in raw.split(",") if p.strip())
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(f"{name}: {proxy!r} is not an IP address or network") from None
    return proxies


def _minutes(name: str, raw: str) -> tuple[int, ...]:
    if raw.strip() == "":
        return REMINDER_MINUTES
    try:
        values = sorted({int(part) for part in raw.split(",") if part.strip()}, reverse=True)
    except ValueError:
        raise SettingsError(f"{name} must be comma-separated minutes, got {raw!r}") from None
    if any(not 0 < value <= 60 * 24 * 60 for value in values) or len(values) > 5:
        raise SettingsError(f"{name}: at most 5 values of 1 to 86400 minutes")
    return tuple(values)


def _mail_url(name: str, raw: str) -> str:
    from engine.notifications.mail_url import parse_mail_url

    try:
        parse_mail_url(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    return raw


def _mail_from(name: str, raw: str) -> str:
    from email.utils import parseaddr

    if "@" not in parseaddr(raw)[1] or "\n" in raw or "\r" in raw:
        raise SettingsError(f"{name} must be an address such as 'Name <a@b.c>', got {raw!r}")
    return raw


def _time_zone(name: str, raw: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}: unknown time zone {raw!r}") from None
    return raw


# -- how a setting is declared ------------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    """What a default may depend on: the data directory and the mode."""

    data_dir: Path
    production: bool


@dataclass(frozen=True)
class Spec:
    """A setting's doc, how its variable is read (None: not read from the environment, or
    read by :func:`load_settings` itself), and a default computed at load time if any."""

    doc: str
    read: Callable[[str, str], Any] | None
    derive: Callable[[_Base], Any] | None = None


def setting(
    default: T,
    doc: str,
    read: Callable[[str, str], Any] | None = _positive_int,
    *,
    derive: Callable[[_Base], Any] | None = None,
    secret: bool = False,
) -> T:
    """One setting: ``default`` (what ``Settings()`` holds), a one-line ``doc``, how its
    ``HEALTHMED_`` variable is read, and optionally a default that ``load_settings`` derives
    from the data directory or the mode instead."""
    spec = Spec(doc, read, derive)
    return field(default=default, repr=not secret, metadata={"setting": spec})


def _fixed(default: T, doc: str) -> T:
    """A setting that is not read from the environment (tests and benchmarks set it)."""
    return setting(default, doc, None)


REMINDER_MINUTES = (1440, 60)


@dataclass(frozen=True, kw_only=True)
class Settings:
    # --- deployment -----------------------------------------------------------------------
    env: Env = setting("development", "production refuses to start when a secret is missing", None)
    host: str = setting("127.0.0.1", "listen address", _text)
    port: int = setting(8000, "listen port")
    data_dir: Path = setting(Path("./var"), "SQLite file, blobs, generated secrets", None)
    redis_url: str | None = setting(None, "Redis URL; unset: in-process Redis", _text)
    redis_cluster: bool = setting(False, "the Redis URL is one seed node of a Redis Cluster", _flag)
    store_url: str = setting(
        "",
        "sqlite:///<path> or dynamodb://<table>",
        _url("sqlite:///", "dynamodb://", shape="sqlite:///<path> or dynamodb://<table>"),
        derive=lambda base: f"sqlite:///{base.data_dir / 'healthmed.sqlite3'}",
    )
    blob_url: str = setting(
        "",
        "file://<dir> or s3://<bucket>/<prefix>",
        _url("file://", "s3://", shape="file://<dir> or s3://<bucket>/<prefix>"),
        derive=lambda base: f"file://{base.data_dir / 'blobs'}",
    )
    # --- secrets and tokens ---------------------------------------------------------------
    jwt_secret: str = setting(
        "", "HS256 key of access tokens (32 characters or more)", None, secret=True
    )
    master_key: bytes = setting(
        b"", "32 bytes, base64url: wraps record data keys", None, secret=True
    )
    kms_key_id: str | None = setting(None, "wrap record data keys with AWS KMS instead", _text)
    jwt_issuer: str = _fixed("healthmed", "``iss`` of access tokens")
    jwt_audience: str = _fixed("healthmed-api", "``aud`` of access tokens")
    access_ttl_seconds: int = setting(900, "access-token lifetime")
    refresh_ttl_seconds: int = _fixed(30 * 86400, "refresh-token lifetime")
    # --- accounts: abuse limits -----------------------------------------------------------
    login_fail_limit_account: int = setting(
        5, "failed logins of one account (or one known device) before its waits begin (429)"
    )
    login_fail_limit_address: int = setting(
        50, "failed logins from one address (an IPv6 /64) per window"
    )
    login_fail_window_seconds: int = setting(900, "the failed-login window and longest wait")
    registration_limit_address: int = setting(
        3000, "registrations and reset requests from one address per window (429 past it)"
    )
    registration_window_seconds: int = setting(60, "the registration window")
    hash_concurrency: int = setting(
        2,
        "Argon2id hashes running at once, off the event loop (CPU count, at least 2)",
        derive=lambda base: max(2, os.cpu_count() or 2),
    )
    trusted_proxies: frozenset[str] = setting(
        frozenset(), "comma-separated peers whose X-Forwarded-For is believed", _proxies
    )
    # --- HTTP limits ----------------------------------------------------------------------
    max_body_bytes: int = _fixed(64 * 1024, "request body of every route but record uploads")
    record_max_bytes: int = setting(20 * 1024 * 1024, "largest health-record upload")
    max_header_bytes: int = setting(
        32 * 1024, "request line plus headers of one HTTP request (431 past it)"
    )
    header_timeout_seconds: int = setting(
        10, "time a client has to send a request's head (408 and close past it)"
    )
    # --- booking --------------------------------------------------------------------------
    meeting_base_url: str = setting(
        "https://meet.healthmed.local", "Jitsi-style meeting server", _base_url
    )
    meeting_secret: str = setting("", "signs per-participant meeting tokens", None, secret=True)
    meeting_minutes: int = setting(50, "consultation length")
    request_ttl_seconds: int = setting(7200, "how long a doctor has to decide a request")
    max_future_slots: int = setting(5000, "future slots one doctor may hold (409 slot_limit)")
    request_limit_per_doctor: int = setting(
        3, "undecided requests one patient may hold with one doctor (409 request_limit)"
    )
    request_limit_total: int = setting(10, "undecided requests one patient may hold in all")
    # --- websockets -----------------------------------------------------------------------
    ws_max_message_bytes: int = setting(4096, "largest client message (bad_message past it)")
    ws_max_topics: int = setting(50, "topics one connection may join (too_many_topics)")
    ws_queue_size: int = setting(256, "events queued for a slow client before it is closed")
    ws_idle_seconds: int = setting(60, "a websocket silent this long is closed (send ping)")
    ws_auth_seconds: float = setting(5.0, "a websocket must authenticate within this")
    ws_rate_per_second: int = setting(10, "client messages per second per connection")
    ws_rate_burst: int = setting(60, "burst of client messages per connection")
    sweep_interval_seconds: float = _fixed(1.0, "how often booking deadlines are swept")
    # --- operations -----------------------------------------------------------------------
    log_level: str = setting("INFO", "log level", _text)
    log_format: Literal["text", "json"] = setting(
        "text",
        "text, or json (one object a line); json in production",
        _choice("text", "json"),
        derive=lambda base: "json" if base.production else "text",
    )
    drain_seconds: float = setting(
        5.0, "on SIGTERM, how long the replica keeps serving while not ready", _seconds
    )
    # --- notifications (engine/notifications) ---------------------------------------------
    mail_url: str = setting(
        "",
        "where e-mail goes: smtp://, smtps://, ses://<region> or file://<folder> (default)",
        _mail_url,
        derive=lambda base: f"file://{base.data_dir / 'mail'}",
    )
    mail_from: str = setting("Health&Med <no-reply@healthmed.local>", "sender", _mail_from)
    mail_max_attempts: int = setting(8, "sends of one message before it is marked failed")
    mail_retry_seconds: float = setting(
        5.0,
        "first retry delay; doubled each attempt (capped at an hour), jittered down to half",
        _positive_float,
    )
    mail_lease_seconds: float = setting(
        60.0, "a replica's claim on a message; a send times out at half of it", _positive_float
    )
    mail_poll_seconds: float = setting(
        1.0, "how often every replica looks for due messages", _positive_float
    )
    mail_timezone: str = setting(
        "America/Sao_Paulo", "time zone of the times written in e-mails", _time_zone
    )
    reminder_minutes: tuple[int, ...] = setting(
        REMINDER_MINUTES,
        "reminders go this many minutes before a confirmed appointment starts",
        _minutes,
    )
    # --- waitlist (engine/waitlist) -------------------------------------------------------
    waitlist_hold_seconds: int = setting(
        600, "how long a freed slot is held for the waitlist entry it was offered to"
    )
    waitlist_limit: int = setting(
        10, "active waitlist entries one patient may hold (409 waitlist_limit past it)"
    )

    @property
    def production(self) -> bool:
        return self.env == "production"


def variable(name: str) -> str:
    """The environment variable of the setting ``name``."""
    return PREFIX + name.upper()


def declarations() -> dict[str, tuple[dataclasses.Field[Any], Spec]]:
    """Every setting by name, with its declaration (docs and tests read these)."""
    return {f.name: (f, f.metadata["setting"]) for f in dataclasses.fields(Settings)}


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


def _secrets(env: Mapping[str, str], data_dir: Path, production: bool) -> dict[str, Any]:
    """The JWT and meeting secrets and the master key: from the environment, else generated
    into the data directory (not in production, where a missing one stops the start)."""
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
    master = values.get("HEALTHMED_MASTER_KEY")
    master_key = _master_key(master) if master else b""
    if production:
        check_production_secrets(
            values["HEALTHMED_JWT_SECRET"], values["HEALTHMED_MEETING_SECRET"], master_key
        )
    return {
        "jwt_secret": values["HEALTHMED_JWT_SECRET"],
        "meeting_secret": values["HEALTHMED_MEETING_SECRET"],
        "master_key": master_key,
    }


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default ``os.environ``); raise ``SettingsError`` if invalid."""
    env = os.environ if env is None else env
    mode = env.get("HEALTHMED_ENV") or "development"
    if mode not in ("development", "production", "test"):
        raise SettingsError(f"HEALTHMED_ENV must be development, production or test, not {mode!r}")
    data_dir = Path(env.get("HEALTHMED_DATA_DIR") or "./var").resolve()
    base = _Base(data_dir=data_dir, production=mode == "production")
    values: dict[str, Any] = {"env": mode, "data_dir": data_dir}
    values.update(_secrets(env, data_dir, base.production))
    for name, (_, spec) in declarations().items():
        raw = env.get(variable(name))
        if spec.read is not None and raw:
            values[name] = spec.read(variable(name), raw)
        elif spec.derive is not None:
            values[name] = spec.derive(base)
    return Settings(**values)
