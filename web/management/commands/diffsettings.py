"""Django's `diffsettings`, with every value passed through the error pages' SecretsFilter first.

Django prints each setting's repr as it is, SECRET_KEY and the passwords in REDIS_URL and CACHES
included; an operator pasting the output into a ticket would leak them.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import diffsettings

from web.redaction import SecretsFilter


def _cleansed(module: Any) -> dict[str, str]:
    report_filter = SecretsFilter()
    return {name: repr(report_filter.cleanse_setting(name, getattr(module, name))) for name in dir(module) if name.isupper() and not name.startswith("_")}


class Command(diffsettings.Command):
    def handle(self, **options: Any) -> str:
        from django.conf import Settings, global_settings, settings

        if not settings.configured:
            settings._setup()
        user_settings = _cleansed(settings._wrapped)
        default_settings = _cleansed(Settings(options["default"]) if options["default"] else global_settings)
        output = {"hash": self.output_hash, "unified": self.output_unified}[options["output"]]
        return "\n".join(output(user_settings, default_settings, **options))
