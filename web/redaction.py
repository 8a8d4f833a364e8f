"""What DEBUG error pages and `diffsettings` may show of the settings: no secrets.

Django's own filter hides settings whose *name* looks secret (KEY, SECRET, PASS, TOKEN…). Here it
also hides the CONFIG object whole (and CHANNEL_LAYERS' CONFIG), the provider credentials, and
the password inside any URL value wherever it sits (REDIS_URL, CACHES' LOCATION, the channel
layer's hosts, DATABASE_URL or EMAIL_URL in the request's environment).
"""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from web.config import redact_url


class SecretsFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(SafeExceptionReporterFilter.hidden_settings.pattern + "|CREDENTIALS|DSN|^CONFIG$", flags=re.I)

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        return redact_url(cleansed) if isinstance(cleansed, str) else cleansed
