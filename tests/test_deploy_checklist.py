"""Live mode passes Django's deployment checklist; sandbox keeps cookies safe as well."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_check(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "web.settings",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_live_mode_passes_the_deploy_checklist_with_no_warning() -> None:
    result = run_check(
        {
            "GPUBROKER_MODE": "live",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "gpubroker.example.com",
            "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example.com:587",
        }
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_sandbox_mode_is_flagged_by_the_checklist_as_not_for_production() -> None:
    # The checklist must be able to fail: sandbox serves plain HTTP with non-secure cookies.
    result = run_check({"GPUBROKER_MODE": "sandbox"})
    assert result.returncode != 0
    assert "SESSION_COOKIE_SECURE" in result.stderr + result.stdout
