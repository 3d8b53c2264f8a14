"""Configuration: code defaults -> instance ``config.py`` -> ``AUTHZ_*`` environment -> test dict.

Every setting is declared once in :data:`SETTINGS` with its parser and documentation; the README's
configuration reference lists the same names (a test keeps the two in step). Loading fails fast
with a one-line :class:`~authz.errors.ConfigError`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authz.errors import ConfigError

KEK_BYTES = 32
SECRET_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
KEK_FILE = "key_encryption_key"
LOOPBACK_NAMES = frozenset({"localhost"})
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and literal loopback addresses (RFC 8252 §7.3, §8.3)."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be 0 or 1, got {value!r}")


def _whole_number(name: str, value: Any, minimum: int, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return number


def parse_positive_int(name: str, value: Any) -> int:
    return _whole_number(name, value, 1, "a positive integer")


def parse_non_negative_int(name: str, value: Any) -> int:
    return _whole_number(name, value, 0, "a whole number >= 0")


def parse_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_issuer(name: str, value: Any) -> str:
    text = str(value).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name} must be an absolute http(s) URL, got {value!r}")
    if parts.query or parts.fragment or "#" in text:
        # RFC 8414 §2: the issuer has no query or fragment component.
        raise ConfigError(f"{name} must not have a query or fragment, got {value!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(f"{name} must use https unless its host is loopback, got {value!r}")
    return text


def parse_database_url(name: str, value: Any) -> str | None:
    text = parse_text(name, value)
    if text is None:
        return None
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    scheme = text.split(":", 1)[0].split("+", 1)[0]
    if scheme not in {"sqlite", "postgresql"}:
        raise ConfigError(f"{name} must be a sqlite:// or postgresql:// URL")
    return text


def parse_redis_url(name: str, value: Any) -> str | None:
    text = parse_text(name, value)
    if text is not None and urlsplit(text).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL")
    return text


def parse_log_level(name: str, value: Any) -> str:
    text = str(value).strip().upper()
    if text not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"{name} must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return text


def parse_paths(name: str, value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list | tuple):
        paths = tuple(str(v).strip() for v in value if str(v).strip())
    else:
        paths = tuple(p.strip() for p in str(value).split(",") if p.strip())
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"{name}: no such file {path!r}")
    return paths or None


def parse_oids(name: str, value: Any) -> frozenset[str]:
    items = value if isinstance(value, list | tuple | frozenset | set) else str(value).split(",")
    oids = frozenset(str(o).strip() for o in items if str(o).strip())
    if not oids or not all(_OID.fullmatch(o) for o in oids):
        raise ConfigError(f"{name} must be dotted OIDs separated by commas, got {value!r}")
    return oids


def parse_http_url(name: str, value: Any) -> str | None:
    text = parse_text(name, value)
    if text is not None:
        parts = urlsplit(text)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return text


def parse_status_method(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in {"ocsp", "crl"}:
        raise ConfigError(f"{name} must be ocsp or crl, got {value!r}")
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str, Any], Any]
    default: Any
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("AUTHZ_ISSUER", parse_issuer, "http://127.0.0.1:8000",
            "Public base URL; https unless loopback. `authz serve` defaults it from"
            " --host/--port."),
    Setting("AUTHZ_DATABASE_URL", parse_database_url, None,
            "sqlite:///PATH or postgresql://...; default: authz.db in the instance folder."),
    Setting("AUTHZ_DEMO", parse_bool, False,
            "1 runs in demo mode: fictitious demo institutions are registered at start."),
    Setting("AUTHZ_SECRET_KEY", parse_text, None,
            "Session signing secret (>= 32 chars). Generated into the instance folder on SQLite;"
            " required, and shared by every instance, on PostgreSQL."),
    Setting("AUTHZ_KEY_ENCRYPTION_KEY", parse_text, None,
            "32 random bytes, base64url: encrypts private keys at rest. Generated like the"
            " secret key on SQLite; required on PostgreSQL."),
    Setting("AUTHZ_REDIS_URL", parse_redis_url, None,
            "Redis for shared rate-limit counters; without it limits are per process."),
    Setting("AUTHZ_LOG_LEVEL", parse_log_level, "INFO", "DEBUG, INFO, WARNING or ERROR."),
    Setting("AUTHZ_TRUSTED_PROXIES", parse_non_negative_int, 0,
            "How many reverse proxies set X-Forwarded-For/-Proto in front of the service."),
    Setting("AUTHZ_KEY_RETIRE_AFTER", parse_positive_int, 86400,
            "Seconds a rotated-out signing key stays in the JWKS before it is retired."),
    Setting("AUTHZ_REQUIRE_PAR", parse_bool, False,
            "1 refuses authorization requests that were not pushed first (RFC 9126; FAPI 2.0)."),
    Setting("AUTHZ_DPOP_NONCE", parse_bool, True,
            "1 demands a server nonce in DPoP proofs at the token, PAR and UserInfo endpoints"
            " (RFC 9449 §8, §9)."),
    Setting("AUTHZ_SERVICE_NAME", parse_text, "authz",
            "Name the card app shows beside the short code."),
    Setting("AUTHZ_JPKI_SIGN_ANCHORS", parse_paths, None,
            "PEM files of the signature-certificate CAs (comma-separated, one per generation);"
            " demo mode uses the simulator's."),
    Setting("AUTHZ_JPKI_AUTH_ANCHORS", parse_paths, None,
            "PEM files of the authentication-certificate CAs; demo mode uses the simulator's."),
    Setting("AUTHZ_JPKI_SIGN_POLICIES", parse_oids, "1.2.392.200149.8.5.1.1.20",
            "Accepted certificate policy OIDs of signature certificates (comma-separated)."),
    Setting("AUTHZ_JPKI_AUTH_POLICIES", parse_oids, "1.2.392.200149.8.5.1.3.30",
            "Accepted certificate policy OIDs of authentication certificates."),
    Setting("AUTHZ_JPKI_STATUS_URL", parse_http_url, None,
            "OCSP responder of the platform operator; unset in demo mode: the simulator,"
            " in-process."),
    Setting("AUTHZ_JPKI_STATUS_METHOD", parse_status_method, "ocsp",
            "ocsp or crl (crl with the in-process simulator only); no fallback between them."),
    Setting("AUTHZ_JPKI_LINK_URL", parse_http_url, None,
            "Link service (certificate-to-person links) of the platform operator; unset in"
            " demo mode: the simulator, in-process."),
    Setting("AUTHZ_JPKI_TRUST_FRAMEWORK", parse_text, None,
            "trust_framework of verified claims; default ISSUER/trust-frameworks/jpki-sim."),
    Setting("AUTHZ_AUDIT_CHECKPOINT_FILE", parse_text, None,
            "File every signed audit checkpoint is appended to (JSON lines), outside the"
            " database; default audit-checkpoints.jsonl in the instance folder."),
    Setting("AUTHZ_AUDIT_RETENTION_DAYS", parse_positive_int, 2557,
            "Days audit events stay in the database before `authz audit retain` may move"
            " whole sealed ranges to an export (default about 7 years)."),
)
SETTING_NAMES = frozenset(s.name for s in SETTINGS)


def load(config: dict[str, Any], instance_path: str, test_config: Mapping[str, Any] | None,
         environ: Mapping[str, str] | None = None) -> None:
    """Fill ``config`` (a Flask config) in the documented order and validate it."""
    env = os.environ if environ is None else environ
    for setting in SETTINGS:
        config.setdefault(setting.name, setting.default)
    instance_file = Path(instance_path) / "config.py"
    if instance_file.is_file():
        config.update(_read_instance_file(instance_file))
    config.update({name: env[name] for name in SETTING_NAMES if name in env})
    if test_config:
        config.update(test_config)
    for setting in SETTINGS:
        raw = config.get(setting.name)
        config[setting.name] = setting.default if raw is None else setting.parse(setting.name, raw)
    _derive(config, Path(instance_path))


def _read_instance_file(path: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__file__": str(path)}
    try:
        exec(compile(path.read_bytes(), str(path), "exec"), namespace)  # noqa: S102 - operator's file
    except Exception as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    return {k: v for k, v in namespace.items() if k.isupper()}


def _derive(config: dict[str, Any], instance: Path) -> None:
    url = config["AUTHZ_DATABASE_URL"] or f"sqlite:///{instance / 'authz.db'}"
    config["AUTHZ_DATABASE_URL"] = url
    config["SQLALCHEMY_DATABASE_URI"] = url
    single_machine = url.startswith("sqlite")
    for name, filename, generate in (
        ("AUTHZ_SECRET_KEY", SECRET_FILE, lambda: secrets.token_urlsafe(48)),
        ("AUTHZ_KEY_ENCRYPTION_KEY", KEK_FILE, lambda: _b64(secrets.token_bytes(KEK_BYTES))),
    ):
        if config[name] is None:
            if not single_machine:
                raise ConfigError(
                    f"{name} must be set in the environment when AUTHZ_DATABASE_URL is PostgreSQL"
                    " (every instance needs the same value)")
            config[name] = read_or_create_secret(instance / filename, generate)
    if len(config["AUTHZ_SECRET_KEY"]) < 32:
        raise ConfigError("AUTHZ_SECRET_KEY must be at least 32 characters")
    config["AUTHZ_KEK_BYTES"] = decode_kek(config["AUTHZ_KEY_ENCRYPTION_KEY"])
    config["AUTHZ_AUDIT_CHECKPOINT_FILE"] = (config["AUTHZ_AUDIT_CHECKPOINT_FILE"]
                                             or str(instance / "audit-checkpoints.jsonl"))
    config["SECRET_KEY"] = config["AUTHZ_SECRET_KEY"]
    issuer_https = config["AUTHZ_ISSUER"].startswith("https://")
    config.update(
        SESSION_COOKIE_NAME="authz_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=issuer_https,
        PREFERRED_URL_SCHEME="https" if issuer_https else "http",
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(url),
        RATELIMIT_STORAGE_URI=config["AUTHZ_REDIS_URL"] or "memory://",
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_STRATEGY="moving-window",
    )


def engine_options(url: str) -> dict[str, Any]:
    """Engine options for a database URL; SQLite pragmas are set by ``authz.database``."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    # pool_pre_ping lets /readyz and requests recover by themselves after a database restart.
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5, "pool_timeout": 5,
            "connect_args": {"connect_timeout": 5}}


def decode_kek(value: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEK_BYTES:
        raise ConfigError("AUTHZ_KEY_ENCRYPTION_KEY must be 32 bytes in base64url"
                          " (python -c 'import secrets,base64;"
                          " print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())')")
    return raw


def read_or_create_secret(path: Path, generate: Callable[[], str]) -> str:
    """Read a generated secret, creating it atomically if absent (two instances may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, generate().encode())
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(tmp, path)  # fails if another process created it first: theirs wins
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"{path} is empty; delete it to generate a new one")
    return value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
