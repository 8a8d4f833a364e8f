"""Deletes price history past its retention (30 days by default); the worker also runs it hourly."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.worker import prune


class Command(BaseCommand):
    help = "Delete price samples and one-minute aggregates older than the retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="retention in days (default 30)")

    def handle(self, *args: Any, days: int, **options: Any) -> None:
        if days < 1:
            raise CommandError("--days must be at least 1")
        self.stdout.write(f"pruned {prune(days)} rows older than {days} days")
