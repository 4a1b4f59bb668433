"""Reading a Prometheus exposition in tests, strictly: asking for a metric that is not exported,
or for a series with label names the metric does not have, fails the test instead of reading 0
(a renamed or dropped metric would otherwise pass every `== 0` check)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("_count", "_sum", "_created"), "gauge": ("",), "info": ("_info",), "unknown": ("",)}

Series = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Exposition:
    """The samples of one scrape, and which sample names each exported family may carry."""

    samples: dict[Series, float] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)          # every sample name a family declares
    label_names: dict[str, set[frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Exposition":
        exposition = cls()
        for family in text_string_to_metric_families(text):
            exposition.names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
            exposition.names.add(family.name)
            for sample in family.samples:
                exposition.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
                exposition.label_names.setdefault(sample.name, set()).add(frozenset(sample.labels))
        return exposition

    def value(self, name: str, **labels: str) -> float:
        """The series' value; 0 for a series of an exported metric that has not been observed yet
        (a labelled counter has no series until its first increment)."""
        if name not in self.names:
            raise AssertionError(f"metric {name} is not exported; exported: {sorted(self.names)}")
        known = self.label_names.get(name)
        if known and frozenset(labels) not in known:
            raise AssertionError(f"metric {name} has labels {sorted(map(sorted, known))}, not {sorted(labels)}")
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def delta(self, before: "Exposition", name: str, **labels: str) -> float:
        """How much a series moved since ``before`` (both scrapes checked as in ``value``)."""
        return self.value(name, **labels) - before.value(name, **labels)
