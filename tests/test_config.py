"""Configuration order, validation and generated secrets."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from authz import config
from authz.errors import ConfigError

PG = "postgresql://postgres@127.0.0.1:5432/test"


def load(tmp_path: Path, test_config=None, environ=None, instance_file: str | None = None):
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    if instance_file is not None:
        (instance / "config.py").write_text(instance_file)
    values: dict = {}
    config.load(values, str(instance), test_config, environ or {})
    return values


def test_defaults_and_generated_secrets_in_single_machine_mode(tmp_path):
    values = load(tmp_path)
    assert values["AUTHZ_ISSUER"] == "http://127.0.0.1:8000"
    assert values["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'instance' / 'authz.db'}"
    assert len(values["AUTHZ_KEK_BYTES"]) == 32
    for name in (config.SECRET_FILE, config.KEK_FILE):
        path = tmp_path / "instance" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load(tmp_path)  # the same secrets on the next start
    assert again["SECRET_KEY"] == values["SECRET_KEY"]
    assert again["AUTHZ_KEK_BYTES"] == values["AUTHZ_KEK_BYTES"]


def test_order_defaults_then_instance_file_then_environment_then_test_config(tmp_path):
    file = 'AUTHZ_LOG_LEVEL = "DEBUG"\nAUTHZ_KEY_RETIRE_AFTER = 60\nAUTHZ_TRUSTED_PROXIES = 1\n'
    values = load(tmp_path, instance_file=file, environ={"AUTHZ_KEY_RETIRE_AFTER": "120",
                                                          "AUTHZ_TRUSTED_PROXIES": "2"},
                  test_config={"AUTHZ_TRUSTED_PROXIES": 3})
    assert values["AUTHZ_LOG_LEVEL"] == "DEBUG"  # instance file over default
    assert values["AUTHZ_KEY_RETIRE_AFTER"] == 120  # environment over instance file
    assert values["AUTHZ_TRUSTED_PROXIES"] == 3  # test config over environment


def test_cookies_are_secure_only_with_an_https_issuer(tmp_path):
    assert load(tmp_path)["SESSION_COOKIE_SECURE"] is False
    secure = load(tmp_path, environ={"AUTHZ_ISSUER": "https://authz.example.jp"})
    assert secure["SESSION_COOKIE_SECURE"] is True
    assert secure["SESSION_COOKIE_HTTPONLY"] is True
    assert secure["SESSION_COOKIE_SAMESITE"] == "Lax"


@pytest.mark.parametrize(("environ", "message"), [
    ({"AUTHZ_ISSUER": "authz.example.jp"}, "absolute http"),
    ({"AUTHZ_ISSUER": "http://authz.example.jp"}, "https unless"),
    ({"AUTHZ_ISSUER": "https://authz.example.jp/?x=1"}, "query or fragment"),
    ({"AUTHZ_DEMO": "maybe"}, "AUTHZ_DEMO must be 0 or 1"),
    ({"AUTHZ_KEY_RETIRE_AFTER": "soon"}, "positive integer"),
    ({"AUTHZ_KEY_RETIRE_AFTER": "0"}, "positive integer"),
    ({"AUTHZ_TRUSTED_PROXIES": "-1"}, ">= 0"),
    ({"AUTHZ_LOG_LEVEL": "loud"}, "AUTHZ_LOG_LEVEL"),
    ({"AUTHZ_DATABASE_URL": "mysql://x/y"}, "sqlite:// or postgresql://"),
    ({"AUTHZ_REDIS_URL": "http://x"}, "redis://"),
    ({"AUTHZ_SECRET_KEY": "short"}, "at least 32"),
    ({"AUTHZ_KEY_ENCRYPTION_KEY": "not-32-bytes"}, "32 bytes"),
    ({"AUTHZ_DATABASE_URL": PG}, "AUTHZ_SECRET_KEY must be set"),
    ({"AUTHZ_DATABASE_URL": PG, "AUTHZ_SECRET_KEY": "s" * 40},
     "AUTHZ_KEY_ENCRYPTION_KEY must be set"),
])
def test_invalid_settings_fail_fast_with_one_line(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, environ=environ)
    assert "\n" not in caught.value.description.strip()


def test_postgresql_never_generates_secrets(tmp_path):
    with pytest.raises(ConfigError):
        load(tmp_path, environ={"AUTHZ_DATABASE_URL": PG})
    assert not (tmp_path / "instance" / config.SECRET_FILE).exists()


def test_a_broken_instance_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read .*config.py: SyntaxError"):
        load(tmp_path, instance_file="AUTHZ_DEMO = (\n")


def _generate(path: str) -> str:
    return config.read_or_create_secret(Path(path), lambda: __import__("secrets").token_hex(8))


def test_two_instances_generating_a_secret_at_once_agree(tmp_path):
    target = str(tmp_path / "secret")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        values = pool.map(_generate, [target] * 8)
    assert len(set(values)) == 1


def test_readme_documents_every_setting():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for setting in config.SETTINGS:
        assert f"`{setting.name}`" in readme, setting.name
