"""The deploy wizard's Configure step, and the scale form: every field checked with a reason."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from django import forms

from pods.images import TEMPLATES
from providers.models import Offer

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
MAX_DISK_GB = 2000
MAX_DURATION_HOURS = 720


def validate_ssh_key(value: str) -> str:
    """A real OpenSSH public key (`ssh-ed25519 AAAA… comment`), parsed, not pattern-matched."""
    text = " ".join(value.split())
    if not text:
        raise forms.ValidationError("Paste your SSH public key (the contents of ~/.ssh/id_ed25519.pub).")
    if "PRIVATE KEY" in text:
        raise forms.ValidationError("That is a private key: never share it. Paste the public key (the .pub file).")
    try:
        load_ssh_public_key(text.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        reason = "its type is not supported" if isinstance(exc, UnsupportedAlgorithm) else "it does not parse"
        raise forms.ValidationError(f"This is not a valid OpenSSH public key ({reason}); it looks like “ssh-ed25519 AAAA… you@host”.") from None
    return text


def sibling_offers(offer: Offer) -> list[Offer]:
    """The provider's offers of the same GPU type: the counts and regions the wizard can choose."""
    return list(Offer.objects.filter(provider=offer.provider, gpu_type=offer.gpu_type).order_by("region", "gpu_count", "price_per_hour"))


def _style(form: forms.Form) -> None:
    """The design system's input class and the aria links from each input to its help and errors."""
    for name, field in form.fields.items():
        if not isinstance(field.widget, (forms.RadioSelect, forms.CheckboxInput)):
            field.widget.attrs.setdefault("class", "field__input")
        described = [f"id_{name}_help"] if field.help_text else []
        if form.is_bound and name in form.errors:
            field.widget.attrs["aria-invalid"] = "true"
            described.append(f"id_{name}_errors")
        if described:
            field.widget.attrs["aria-describedby"] = " ".join(described)


class ConfigureForm(forms.Form):
    name = forms.CharField(max_length=40, help_text="Lower-case letters, digits and dashes, e.g. llama-finetune")
    gpu_count = forms.TypedChoiceField(coerce=int, label="GPU count")
    region = forms.ChoiceField()
    template = forms.ChoiceField(choices=[(t.slug, t.name) for t in TEMPLATES.values()])
    disk_gb = forms.IntegerField(label="Disk (GB)", min_value=10, max_value=MAX_DISK_GB)
    run_mode = forms.ChoiceField(choices=[("until_stopped", "Until I stop it"), ("duration", "For a fixed time")], widget=forms.RadioSelect)
    duration_hours = forms.IntegerField(required=False, min_value=1, max_value=MAX_DURATION_HOURS, label="Duration (hours)")
    spend_cap = forms.DecimalField(required=False, min_value=Decimal("1"), max_digits=10, decimal_places=2, label="Spend cap for this pod (USD, optional)")
    ssh_public_key = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="SSH public key")
    allow_failover = forms.BooleanField(required=False, label="If this provider fails, move to the next equivalent offer automatically")

    def __init__(self, *args: Any, offer: Offer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offer = offer
        self.siblings = sibling_offers(offer)
        counts = sorted({o.gpu_count for o in self.siblings if o.region == offer.region})
        self.fields["gpu_count"].choices = [(c, f"{c} GPU{'s' if c != 1 else ''}") for c in counts]
        regions = sorted({o.region for o in self.siblings})
        self.fields["region"].choices = [(r, r or "any region") for r in regions]
        _style(self)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip().lower()
        if not NAME_PATTERN.match(name):
            raise forms.ValidationError("Use 1-40 lower-case letters, digits and dashes, starting and ending with a letter or digit.")
        return name

    def clean_ssh_public_key(self) -> str:
        return validate_ssh_key(self.cleaned_data["ssh_public_key"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        template = TEMPLATES.get(data.get("template", ""))
        if template and data.get("disk_gb") is not None and data["disk_gb"] < template.min_disk_gb:
            self.add_error("disk_gb", f"{template.name} needs at least {template.min_disk_gb} GB.")
        if data.get("run_mode") == "duration" and not data.get("duration_hours"):
            self.add_error("duration_hours", "Say how many hours the pod should run (1-720).")
        if "gpu_count" in data and "region" in data:
            match = [o for o in self.siblings if o.region == data["region"] and o.gpu_count == data["gpu_count"]]
            if not match:
                self.add_error("gpu_count", f"{self.offer.provider.name} has no {data['gpu_count']} × {self.offer.gpu_type} in {data['region'] or 'that region'}.")
            else:
                data["target_offer"] = min(match, key=lambda o: o.price_per_hour)
        return data

    def draft_data(self) -> dict[str, Any]:
        """What the Draft keeps (JSON)."""
        data = {k: v for k, v in self.cleaned_data.items() if k != "target_offer"}
        data["spend_cap"] = str(data["spend_cap"]) if data.get("spend_cap") is not None else None
        data["offer_id"] = self.cleaned_data["target_offer"].pk
        return data


class ScaleForm(forms.Form):
    gpu_count = forms.TypedChoiceField(coerce=int, label="New GPU count")

    def __init__(self, *args: Any, counts: list[int], current: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gpu_count"].choices = [(c, f"{c} GPU{'s' if c != 1 else ''}") for c in counts if c != current]
        _style(self)
