"""Observing a running process: Prometheus metrics (mirrored to OpenTelemetry), the
``/metrics``, ``/healthz`` and ``/readyz`` endpoint, and the JSON log format.

::

    instruments  the metric table (names, kinds, labels, help)
    recorder     events -> counters and histograms; the gauges' state
    state        the bounded count of the jobs table behind the state gauges
    prom, otel   the two backends
    http         the endpoint (a thread: a blocked event loop is seen, not hidden)
    observer     the component the service runs: all of the above for one process
    logs         the log formats (text, JSON) the command line sets up

This layer sits beside ``worker`` and ``cron``: it reads the vocabulary (events, options),
the database layer and the worker pool's stats; only the face (the service) wires it in.
"""

from .instruments import INSTRUMENTS, Instrument
from .observer import Observer

__all__ = ["INSTRUMENTS", "Instrument", "Observer"]
