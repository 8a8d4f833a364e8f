"""The rental state machine: which moves are allowed, and one history row per move.

    draft -> provisioning -> awaiting_activation -> running <-> stopped -> terminated
    provisioning -> running (a re-provision of a pod already activated: scale, failover)
    provisioning -> failed; every state but terminated -> terminated

`transition` checks the move under the rental's row lock and writes the event in the same
transaction; the page and websocket hear of it after commit.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from pods.models import Rental, RentalEvent, State

ALLOWED: dict[str, frozenset[str]] = {
    State.DRAFT: frozenset({State.PROVISIONING, State.TERMINATED}),
    State.PROVISIONING: frozenset({State.AWAITING_ACTIVATION, State.RUNNING, State.FAILED, State.TERMINATED}),
    State.AWAITING_ACTIVATION: frozenset({State.RUNNING, State.STOPPED, State.TERMINATED}),
    State.RUNNING: frozenset({State.STOPPED, State.PROVISIONING, State.TERMINATED}),
    State.STOPPED: frozenset({State.RUNNING, State.PROVISIONING, State.TERMINATED}),
    State.FAILED: frozenset({State.PROVISIONING, State.TERMINATED}),
    State.TERMINATED: frozenset(),
}


class TransitionRefused(Exception):
    """A move the state machine does not allow from the rental's current state."""

    def __init__(self, rental: Rental, to: str) -> None:
        self.from_state, self.to_state = rental.state, to
        super().__init__(f"a pod that is {State(rental.state).label.lower()} cannot become {State(to).label.lower()}")


def can(rental: Rental, to: str) -> bool:
    return to in ALLOWED[rental.state]


def record(rental: Rental, kind: str, message: str, **fields: Any) -> RentalEvent:
    event = RentalEvent.objects.create(rental=rental, kind=kind, message=message[:400], **fields)
    transaction.on_commit(lambda: _announce(rental.pk))
    return event


def transition(rental: Rental, to: str, message: str, **changes: Any) -> Rental:
    """Moves the rental to `to` (with `changes` to its fields) or raises TransitionRefused."""
    now = timezone.now()
    with transaction.atomic():
        locked = Rental.objects.select_for_update().get(pk=rental.pk)
        if not can(locked, to):
            raise TransitionRefused(locked, to)
        before = locked.state
        if before == State.RUNNING and locked.running_since:
            locked.uptime_seconds += max(0, int((now - locked.running_since).total_seconds()))
            locked.running_since = None
        if to == State.RUNNING:
            locked.running_since = now
        if to == State.TERMINATED:
            locked.terminated_at = now
        locked.state = to
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save()
        record(locked, RentalEvent.Kind.TRANSITION, message, from_state=before, to_state=to, at=now)
    rental.refresh_from_db()
    return rental


def _announce(rental_id: int) -> None:
    from pods.live import announce

    announce(rental_id)
