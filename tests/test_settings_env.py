"""Settings come from environment variables; a bad value stops start-up with
a message that names the variable."""

import os
import runpy
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

SETTINGS = Path(__file__).resolve().parent.parent / "portal" / "settings.py"
VARIABLES = ["DEBUG", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "REMOTE_ACCESS_SECRET_KEY",
             "REMOTE_ACCESS_CONNECTION_KEY_TTL", "REMOTE_ACCESS_PING_INTERVAL", "LOG_LEVEL", "SECURE_COOKIES",
             "SECRET_KEY_FILE"]


@pytest.fixture
def load(monkeypatch, tmp_path):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))

    def load_settings(**env: str) -> dict:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(SETTINGS))

    return load_settings


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DEBUG": "maybe"}, "DEBUG must be one of"),
        ({"REMOTE_ACCESS_CONNECTION_KEY_TTL": "soon"}, "REMOTE_ACCESS_CONNECTION_KEY_TTL must be a whole number"),
        ({"REMOTE_ACCESS_CONNECTION_KEY_TTL": "1"}, "REMOTE_ACCESS_CONNECTION_KEY_TTL must be at least 5"),
        ({"REMOTE_ACCESS_PING_INTERVAL": "-3"}, "REMOTE_ACCESS_PING_INTERVAL must be at least 5"),
        ({"REMOTE_ACCESS_SECRET_KEY": "not-a-key"}, "REMOTE_ACCESS_SECRET_KEY must be Fernet keys"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL must start with redis://"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be DEBUG, INFO"),
        ({"SECURE_COOKIES": "sometimes"}, "SECURE_COOKIES must be one of"),
        ({"DATABASE_URL": "postgres://db/x"}, "SECRET_KEY must be set when DATABASE_URL is set"),
        (
            {"DATABASE_URL": "postgres://db/x", "SECRET_KEY": "k" * 50},
            "REMOTE_ACCESS_SECRET_KEY must be set when DATABASE_URL is set",
        ),
        (
            {"DATABASE_URL": "nosuchdb://db/x", "SECRET_KEY": "k" * 50,
             "REMOTE_ACCESS_SECRET_KEY": Fernet.generate_key().decode()},
            "DATABASE_URL is not a database URL",
        ),
        ({"SECRET_KEY_FILE": "/nonexistent/secret"}, "SECRET_KEY_FILE: cannot read /nonexistent/secret"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(load, env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        load(**env)


def test_the_embedded_default_needs_nothing_set(load, tmp_path):
    settings = load()
    assert settings["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert settings["DEBUG"] is False


def test_generated_secrets_are_private_and_kept_across_starts(load, tmp_path):
    first = load()
    for name in ["secret_key", "remote_access_secret_key"]:
        mode = stat.S_IMODE(os.stat(tmp_path / "data" / name).st_mode)
        assert mode == 0o600
    second = load()
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["REMOTE_ACCESS_SECRET_KEYS"] == second["REMOTE_ACCESS_SECRET_KEYS"]
    Fernet(first["REMOTE_ACCESS_SECRET_KEYS"][0])


def test_a_shared_deployment_takes_postgres_and_redis_from_urls(load):
    key = Fernet.generate_key().decode()
    settings = load(
        DATABASE_URL="postgres://gw:pw@127.0.0.1:5432/gateway",
        SECRET_KEY="s" * 50,
        REMOTE_ACCESS_SECRET_KEY=key,
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert settings["DATABASES"]["default"]["NAME"] == "gateway"
    assert settings["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"


def test_cookies_are_secure_unless_served_on_loopback_or_in_debug(load):
    assert load()["SESSION_COOKIE_SECURE"] is False
    assert load(ALLOWED_HOSTS="gateway.example.com")["SESSION_COOKIE_SECURE"] is True
    assert load(ALLOWED_HOSTS="gateway.example.com")["CSRF_COOKIE_SECURE"] is True
    assert load(ALLOWED_HOSTS="gateway.example.com", DEBUG="1")["SESSION_COOKIE_SECURE"] is False
