"""The scheduled expiry of lapsed holds, in bounded batches."""

from __future__ import annotations

from collections.abc import Callable

from tickets.observability import count
from tickets.store import db

BATCH_SIZE = 500
# Stop starting batches when less than this is left of the invocation's time.
SAFETY_MARGIN_MS = 5_000


def expire_lapsed_holds(remaining_ms: Callable[[], int], batch_size: int = BATCH_SIZE) -> int:
    """Expires every lapsed hold (while time allows) and returns how many were expired.

    Each batch is one transaction over one tier; running this twice at once is safe, since
    each run skips the rows and tiers the other holds.
    """
    expired = 0
    while remaining_ms() > SAFETY_MARGIN_MS:
        batch = int(db.call("expire_lapsed_holds", batch_size))
        if batch == 0:
            break
        expired += batch
    if expired:
        count("ReservationsExpired", expired)
    return expired
