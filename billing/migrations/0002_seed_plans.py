"""Seeds the three plans of the product spec; staff edit them afterwards (prices and limits are data)."""

from django.db import migrations

PLANS = [
    {"slug": "free", "name": "Free", "tagline": "Live prices, ranking and one pod to try things.", "price_cents": 0, "requests_per_second": 10, "max_pods": 1, "webhooks": False, "sort_order": 0},
    {"slug": "pro", "name": "Pro", "tagline": "For engineers running real jobs every week.", "price_cents": 4900, "requests_per_second": 100, "max_pods": 10, "webhooks": False, "sort_order": 1},
    {"slug": "enterprise", "name": "Enterprise", "tagline": "High throughput, unlimited pods and signed webhooks.", "price_cents": 49900, "requests_per_second": 1000, "max_pods": None, "webhooks": True, "sort_order": 2},
]


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for plan in PLANS:
        # Never overwrite what staff already changed.
        Plan.objects.get_or_create(slug=plan["slug"], defaults=plan)


def unseed(apps, schema_editor):
    apps.get_model("billing", "Plan").objects.filter(slug__in=[p["slug"] for p in PLANS], subscriptions__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
