"""The OpenTelemetry mirror (``pip install 'zodworker[otel]'``): the same instruments as
the Prometheus backend, as OpenTelemetry counters, histograms and observable gauges of the
meter ``zodworker`` (names in :mod:`.instruments`; label names become attributes). Without
an SDK configured the API's no-op provider makes this cost next to nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .instruments import BUCKETS, INSTRUMENTS, Instrument
from .recorder import GaugeSamples, Labels

__all__ = ["OtelBackend", "otel_available"]


def otel_available() -> bool:
    """Whether the OpenTelemetry API can be imported."""
    try:
        import opentelemetry.metrics  # noqa: F401
    except ImportError:
        return False
    return True


class OtelBackend:
    """zodworker's instruments on an OpenTelemetry meter."""

    def __init__(self, gauges: Callable[[], GaugeSamples], meter_provider: Any = None) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter("zodworker", meter_provider=meter_provider)
        self._instruments: dict[str, tuple[Any, tuple[str, ...]]] = {}
        self._attributes: dict[tuple[str, Labels], dict[str, str]] = {}
        self._gauges = gauges
        for instrument in INSTRUMENTS:
            made = self._make(meter, instrument)
            if made is not None:
                self._instruments[instrument.name] = (made, instrument.labels)

    def _make(self, meter: Any, instrument: Instrument) -> Any:
        common = {"name": instrument.otel, "unit": instrument.unit, "description": instrument.help}
        if instrument.kind == "counter":
            return meter.create_counter(**common)
        if instrument.kind == "histogram":
            return meter.create_histogram(**common, explicit_bucket_boundaries_advisory=BUCKETS)
        name, labels = instrument.name, instrument.labels
        meter.create_observable_gauge(callbacks=[self._observer(name, labels)], **common)
        return None

    def _observer(self, name: str, labels: tuple[str, ...]) -> Callable[[Any], Iterator[Any]]:
        from opentelemetry.metrics import Observation

        def observe(options: Any) -> Iterator[Any]:
            for values, value in self._gauges().get(name, []):
                yield Observation(value, dict(zip(labels, values, strict=True)))

        return observe

    def _attrs(self, name: str, labels: Labels) -> tuple[Any, dict[str, str]]:
        instrument, names = self._instruments[name]
        key = (name, labels)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = dict(zip(names, labels, strict=True))
        return instrument, attributes

    def add(self, name: str, labels: Labels, amount: float) -> None:
        instrument, attributes = self._attrs(name, labels)
        instrument.add(amount, attributes)

    def observe(self, name: str, labels: Labels, value: float) -> None:
        instrument, attributes = self._attrs(name, labels)
        instrument.record(value, attributes)
