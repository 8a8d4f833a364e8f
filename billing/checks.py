"""`manage.py check` reports Stripe keys that the platform mode would refuse.

No keys at all in LIVE is not an error here: payments are then off and the pages say so.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from billing import gateway


@register("billing")
def stripe_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return [Error(problem, id="billing.E001") for problem in gateway.problems(missing_is_a_problem=False)]
