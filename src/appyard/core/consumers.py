"""The outbox's built-in consumers: who acts on which domain event.

* ``build.processed``, ``build.failed``: email the people the uploader asked to notify
  (:mod:`appyard.core.notifications`);
* every event: deliver it to the tenant's webhook endpoints that want it
  (:mod:`appyard.core.webhooks`).

Each consumer only writes rows (jobs) in the relay's transaction; the work itself is done by
the job's handler, with retries.
"""

from __future__ import annotations

from appyard.core import notifications, outbox, webhooks


def register() -> None:
    """Idempotent: registering again changes nothing."""
    outbox.consume("build.processed", notifications.on_build_event)
    outbox.consume("build.failed", notifications.on_build_event)
    outbox.consume("*", webhooks.on_event)
