"""Settings from the environment, and the embedded defaults."""

from __future__ import annotations

import stat

import pytest

from portal import create_app
from portal.core.config import ConfigError, normalise_database_url


def test_embedded_defaults_keep_a_generated_key_and_sqlite_in_the_instance(tmp_path):
    app = create_app()
    instance = tmp_path / "instance"
    key_file = instance / "secret_key"
    assert app.instance_path == str(instance)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert app.config["SECRET_KEY"] == key_file.read_text().strip()
    assert len(app.config["SECRET_KEY"]) >= 32
    assert app.config["DATABASE_URL"] == f"sqlite:///{instance / 'portal.db'}"
    assert app.config["MAIL_SERVER"] is None
    # The same key on the next start.
    assert create_app().config["SECRET_KEY"] == app.config["SECRET_KEY"]


def test_settings_come_from_portal_environment_variables(monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("PORTAL_DATABASE_URL", "postgresql://user@db.example.test/portal")
    monkeypatch.setenv("PORTAL_BASE_URL", "https://portal.example.test/")
    monkeypatch.setenv("PORTAL_MAIL_SERVER", "smtp.example.test")
    monkeypatch.setenv("PORTAL_MAIL_PORT", "587")
    monkeypatch.setenv("PORTAL_MAIL_DEFAULT_SENDER", "portal@example.test")
    monkeypatch.setenv("PORTAL_SECRET_KEY_FALLBACKS", '["' + "o" * 40 + '"]')
    app = create_app()
    config = app.config
    assert config["SECRET_KEY"] == "k" * 40
    assert config["DATABASE_URL"] == "postgresql+psycopg://user@db.example.test/portal"
    assert config["BASE_URL"] == "https://portal.example.test"
    assert config["MAIL_SERVER"] == "smtp.example.test"
    assert config["MAIL_PORT"] == 587
    assert config["MAIL_DEFAULT_SENDER"] == "portal@example.test"
    assert config["SECRET_KEY_FALLBACKS"] == ["o" * 40]
    assert config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(("value", "word"), [("", "empty"), ("short", "too short")])
def test_empty_or_short_secret_key_is_refused(monkeypatch, value, word):
    monkeypatch.setenv("PORTAL_SECRET_KEY", value)
    with pytest.raises(ConfigError, match=f"PORTAL_SECRET_KEY is set but {word}"):
        create_app()


def test_cookie_is_secure_outside_plain_http_development():
    assert (
        create_app({"BASE_URL": "http://127.0.0.1:8000"}).config["SESSION_COOKIE_SECURE"] is False
    )
    assert create_app({"BASE_URL": "https://x.example.test"}).config["SESSION_COOKIE_SECURE"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://h/db", "postgresql+psycopg://h/db"),
        ("postgres://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_uses_psycopg3(given, expected):
    assert normalise_database_url(given) == expected
