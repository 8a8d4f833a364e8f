#!/usr/bin/env python
"""Django's command-line utility for GPUBROKER."""

import os
import sys
from importlib import import_module


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
    from web.config import ConfigError

    try:
        # Load the settings first so a bad variable stops us with one line, not a traceback.
        import_module(os.environ["DJANGO_SETTINGS_MODULE"])
    except ConfigError as exc:
        sys.exit(f"GPUBROKER configuration error: {exc}")

    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
