"""Filters that show provider data as people read it (providers.regions); presentation only."""

from django import template

from providers.regions import instance_label as _instance_label
from providers.regions import region_label as _region_label

register = template.Library()


@register.filter
def region_label(raw: str) -> str:
    return _region_label(raw)


@register.filter
def instance_label(name: str) -> str:
    return _instance_label(name)
