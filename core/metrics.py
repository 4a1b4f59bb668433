"""Cheap in-process measurements for the audio path (benchmarks and /healthz read them)."""

from __future__ import annotations

import math
from array import array

HIST_BIN_MS = 0.01


class Samples:
    """A bounded ring of float samples (e.g. milliseconds) with percentiles. Single precision
    (7 digits, ample for 0.01 ms bins): four full rings are 64 KiB of a call's memory, not 128."""

    __slots__ = ("_data", "_cap", "_next", "count")

    def __init__(self, capacity: int = 4096) -> None:
        self._data = array("f")
        self._cap = capacity
        self._next = 0
        self.count = 0

    def add(self, value: float) -> None:
        if len(self._data) < self._cap:
            self._data.append(value)
        else:
            self._data[self._next] = value
            self._next = (self._next + 1) % self._cap
        self.count += 1

    def values(self) -> list[float]:
        return list(self._data)

    def since(self, seen: int) -> list[float]:
        """The samples added after the first ``seen`` (oldest first), as many as are still kept."""
        new = min(self.count - seen, len(self._data))
        if new <= 0:
            return []
        end = self._next if len(self._data) == self._cap else len(self._data)  # one past the newest
        if new <= end:
            return list(self._data[end - new:end])
        return list(self._data[len(self._data) - (new - end):]) + list(self._data[:end])

    def percentile(self, q: float) -> float | None:
        return percentile(self._data, q)

    def summary(self) -> dict[str, float | int | None]:
        return {"n": self.count, "p50": self.percentile(50), "p99": self.percentile(99),
                "max": max(self._data) if self._data else None}

    def histogram(self, bin_ms: float = HIST_BIN_MS) -> dict[int, int]:
        """Sparse histogram {bin index: count} of the kept samples; mergeable across calls."""
        bins: dict[int, int] = {}
        for value in self._data:
            index = int(value / bin_ms + 1e-9)  # upper bin edge = (index + 1) * bin_ms
            bins[index] = bins.get(index, 0) + 1
        return bins


def histogram_percentile(bins: dict[int, int], q: float, bin_ms: float = HIST_BIN_MS) -> float | None:
    """Nearest-rank percentile of a sparse histogram {bin index: count} (upper bin edges)."""
    total = sum(bins.values())
    if not total:
        return None
    rank, seen = q / 100 * total, 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return (index + 1) * bin_ms
    return None


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile of a sequence (None when empty)."""
    data = sorted(values)
    if not data:
        return None
    rank = max(0, min(len(data) - 1, math.ceil(q / 100 * len(data)) - 1))
    return data[rank]


class CallMetrics:
    """Per-call audio-path figures, all in milliseconds."""

    def __init__(self) -> None:
        self.pacing_lateness = Samples()     # RTP frame sent − its absolute deadline
        self.send_intervals = Samples()      # interval between consecutive frames of a talk-spurt
        self.first_frame_latency = Samples() # AI delta received while idle → its first RTP frame sent
        self.inbound_latency = Samples()     # caller RTP received → the frame sent to the speech backend
        self.pacing_slips = 0                # times the pacer fell > 3 frames behind and re-anchored

    def series(self) -> dict[str, Samples]:
        return {"pacing_lateness_ms": self.pacing_lateness, "send_interval_ms": self.send_intervals,
                "first_frame_latency_ms": self.first_frame_latency, "inbound_latency_ms": self.inbound_latency}

    def summary(self, histograms: bool = False) -> dict[str, object]:
        """p50/p99/max per series; with ``histograms`` also mergeable 0.01 ms histograms."""
        out: dict[str, object] = {name: s.summary() for name, s in self.series().items()}
        out["pacing_slips"] = self.pacing_slips
        if histograms:
            out["histograms"] = {name: s.histogram() for name, s in self.series().items()}
        return out
