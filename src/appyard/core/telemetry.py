"""What core counts, without a metrics library: core names what happened (``upload.started``,
``upload.ended``, ``job.lease_expired``, ``mail.delivery``, ``webhook.delivery``) and the
:class:`~appyard.core.ports.Meter` the running process installed (``appyard.metrics``: the
Prometheus counters) counts it once the transaction that recorded it has committed; a rolled
back transaction counts nothing. Domain events (``build.uploaded``, ``build.processed``, ...)
are counted by the metrics module's outbox consumers instead; this is for what has no event.
"""

from __future__ import annotations

from appyard.core.ports import Meter, UnitOfWork


class NoMeter:
    """Counts nothing: a process that serves no metrics (an admin command, a test)."""

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        return None


_meter: Meter = NoMeter()


def install(meter: Meter) -> None:
    """Count with ``meter`` from now on (the process's metrics)."""
    global _meter
    _meter = meter


def count(uow: UnitOfWork, name: str, amount: float = 1.0, **labels: str) -> None:
    """Count ``name`` once ``uow`` commits."""
    meter = _meter
    uow.after_commit(lambda: meter.count(name, amount, **labels))
