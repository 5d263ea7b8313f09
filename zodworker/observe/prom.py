"""The Prometheus backend (``pip install 'zodworker[metrics]'``, prometheus-client).

Counters and histograms are prometheus-client objects in the registry given (a fresh one by
default, so two clients in one process never clash); gauges come from a collector that asks
the recorder at scrape time. :func:`exposition` renders the registry in the format the
scraper asks for (Prometheus text or OpenMetrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ConfigError
from .instruments import BUCKETS, INSTRUMENTS
from .recorder import GaugeSamples, Labels

__all__ = ["PromBackend", "exposition"]


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "metrics", "needs prometheus-client: pip install 'zodworker[metrics]'"
        ) from exc
    return prometheus_client


class PromBackend:
    """zodworker's instruments in one prometheus-client registry."""

    def __init__(self, gauges: Callable[[], GaugeSamples], registry: Any = None) -> None:
        client = _client()
        self.registry = client.CollectorRegistry() if registry is None else registry
        self._metrics: dict[str, Any] = {}
        for instrument in INSTRUMENTS:
            if instrument.kind == "counter":
                metric = client.Counter(
                    instrument.name, instrument.help, instrument.labels, registry=self.registry
                )
            elif instrument.kind == "histogram":
                metric = client.Histogram(
                    instrument.name,
                    instrument.help,
                    instrument.labels,
                    registry=self.registry,
                    buckets=BUCKETS,
                )
            else:
                continue
            self._metrics[instrument.name] = metric
        self._children: dict[tuple[str, Labels], Any] = {}
        self._collector = _GaugeCollector(gauges)
        self.registry.register(self._collector)

    def close(self) -> None:
        """Take zodworker's metrics out of the registry (a registry of the user's lives on)."""
        for metric in self._metrics.values():
            self.registry.unregister(metric)
        self.registry.unregister(self._collector)

    def _child(self, name: str, labels: Labels) -> Any:
        key = (name, labels)
        child = self._children.get(key)
        if child is None:
            metric = self._metrics[name]
            child = metric.labels(*labels) if labels else metric
            self._children[key] = child
        return child

    def add(self, name: str, labels: Labels, amount: float) -> None:
        self._child(name, labels).inc(amount)

    def observe(self, name: str, labels: Labels, value: float) -> None:
        self._child(name, labels).observe(value)


class _GaugeCollector:
    """Yields the gauges' families at collection time."""

    def __init__(self, gauges: Callable[[], GaugeSamples]) -> None:
        self._gauges = gauges

    def describe(self) -> list[Any]:
        return []  # collected lazily; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        samples = self._gauges()
        for instrument in INSTRUMENTS:
            if instrument.kind != "gauge":
                continue
            family = GaugeMetricFamily(
                instrument.name, instrument.help, labels=list(instrument.labels)
            )
            for labels, value in samples.get(instrument.name, []):
                family.add_metric(list(labels), value)
            yield family


def exposition(registry: Any, accept: str | None) -> tuple[bytes, str]:
    """The registry rendered for a scraper's Accept header: (body, content type)."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
