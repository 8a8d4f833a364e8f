"""DEBUG error pages, `diffsettings` and the CONFIG object's repr never show a configured secret."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.views.debug import technical_500_response

from web.config import load_config

SECRETS = {
    "SECRET_KEY": "redaction-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "db": "db-password-redaction-7d1c",
    "redis": "redis-password-redaction-93af",
    "smtp": "smtp-password-redaction-5e20",
}
ENV = {
    "GPUBROKER_MODE": "live",
    "SECRET_KEY": SECRETS["SECRET_KEY"],
    "DATABASE_URL": f"postgres://app:{SECRETS['db']}@db.internal:5432/gpubroker",
    "REDIS_URL": f"redis://:{SECRETS['redis']}@cache.internal:6379/0",
    "ALLOWED_HOSTS": "gpubroker.example.com",
    "EMAIL_URL": f"smtp+tls://mailer:{SECRETS['smtp']}@smtp.example.com:587",
}


@pytest.fixture
def secret_settings(settings, tmp_path: Path):
    config = load_config(ENV, tmp_path)
    settings.DEBUG = True
    settings.CONFIG = config
    settings.SECRET_KEY = config.secret_key
    settings.REDIS_URL = config.redis_url
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": config.redis_url}}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [config.redis_url]}}}
    settings.EMAIL_HOST_PASSWORD = config.email["EMAIL_HOST_PASSWORD"]
    return config


def leaked(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def test_the_config_objects_repr_names_what_is_configured_but_no_secret(tmp_path: Path) -> None:
    config = load_config(ENV, tmp_path)
    shown = repr(config) + str(config)
    assert leaked(shown) == []
    assert "cache.internal:6379" in shown and "db.internal" in shown and "smtp.example.com" in shown


def test_the_debug_error_page_shows_no_secret_from_config_redis_url_caches_or_channel_layers(secret_settings, db: None) -> None:
    request = RequestFactory().get("/boom", HTTP_X_TRACE=ENV["REDIS_URL"])
    request.META["DATABASE_URL"] = ENV["DATABASE_URL"]  # as WSGI servers copy the environment in
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        page = technical_500_response(request, *sys.exc_info()).content.decode()
    assert "REDIS_URL" in page and "CHANNEL_LAYERS" in page  # the settings table is there
    assert leaked(page) == []


def test_diffsettings_shows_no_secret(secret_settings) -> None:
    out = io.StringIO()
    call_command("diffsettings", stdout=out)
    text = out.getvalue()
    assert "SECRET_KEY" in text and "CACHES" in text
    assert leaked(text) == []
