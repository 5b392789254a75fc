"""Prometheus metrics for `zoo serve`, named and labelled as TF Serving exports them at
`/monitoring/prometheus/metrics` (TF's `/tensorflow/serving/request_count` becomes
`:tensorflow:serving:request_count`), so the same dashboards and alerts work:

- `:tensorflow:serving:request_count{model_name, status}`: requests answered, by
  canonical status ("OK", "INVALID_ARGUMENT", "NOT_FOUND", ...).
- `:tensorflow:serving:request_latency{model_name, API, entrypoint}`: a histogram of
  whole-request wall time in microseconds (API: predict, classify, regress,
  multi_inference; entrypoint: REST or GRPC).
- `:tensorflow:serving:runtime_latency{model_name, API, runtime}`: the model's own time.
- `:tensorflow:cc:saved_model:load_attempt_count{model_path, status}`: load attempts.
- `:tensorflow:serving:model_version_available{model_name, version}`: 1 for each version
  being served (zoo's; TF Serving reports load state through its status API only).

Counters are exact: each request moves `request_count` by one, whatever its outcome.
"""

from __future__ import annotations

import bisect
import threading

# TF Serving's buckets for both latency samplers: 10 µs × 1.8^i, 33 of them (~20 min).
LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))


def _labels(names, values):
    return ",".join(f'{name}="{_escape(str(value))}"' for name, value in zip(names, values))


def _escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    return repr(float(value)) if isinstance(value, float) else str(value)


class Metrics:
    """The server's counters and histograms; `render()` is Prometheus' text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = {}  # (model, status) -> count
        self.latency = {}  # (model, api, entrypoint) -> [bucket counts..., sum, count]
        self.runtime = {}  # (model, api, runtime) -> same
        self.loads = {}  # (path, status) -> count
        self.available = None  # callable -> [(model, version)]

    def count_request(self, model, status, api, entrypoint, seconds):
        with self._lock:
            key = (model, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self._observe(self.latency, (model, api, entrypoint), seconds * 1e6)

    def observe_runtime(self, model, api, runtime, seconds):
        with self._lock:
            self._observe(self.runtime, (model, api, runtime), seconds * 1e6)

    def count_load(self, path, ok):
        with self._lock:
            key = (str(path), "success" if ok else "fail")
            self.loads[key] = self.loads.get(key, 0) + 1

    @staticmethod
    def _observe(table, key, microseconds):
        row = table.get(key)
        if row is None:
            row = table[key] = [0] * (len(LATENCY_BUCKETS_US) + 1) + [0.0, 0]
        row[bisect.bisect_left(LATENCY_BUCKETS_US, microseconds)] += 1
        row[-2] += microseconds
        row[-1] += 1

    def render(self):
        """Every metric in Prometheus' text exposition format (version 0.0.4)."""
        with self._lock:
            lines = ["# TYPE :tensorflow:serving:request_count counter"]
            for (model, status), count in sorted(self.requests.items()):
                lines.append(f":tensorflow:serving:request_count{{{_labels(('model_name', 'status'), (model, status))}}} {count}")
            self._render_histogram(lines, ":tensorflow:serving:request_latency",
                                   ("model_name", "API", "entrypoint"), self.latency)
            self._render_histogram(lines, ":tensorflow:serving:runtime_latency",
                                   ("model_name", "API", "runtime"), self.runtime)
            lines.append("# TYPE :tensorflow:cc:saved_model:load_attempt_count counter")
            for (path, status), count in sorted(self.loads.items()):
                lines.append(f":tensorflow:cc:saved_model:load_attempt_count{{{_labels(('model_path', 'status'), (path, status))}}} {count}")
        lines.append("# TYPE :tensorflow:serving:model_version_available gauge")
        for model, version in sorted(self.available() if self.available else []):
            lines.append(f":tensorflow:serving:model_version_available{{{_labels(('model_name', 'version'), (model, version))}}} 1")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _render_histogram(lines, name, label_names, table):
        lines.append(f"# TYPE {name} histogram")
        for key, row in sorted(table.items()):
            labels = _labels(label_names, key)
            cumulative = 0
            for bound, count in zip(LATENCY_BUCKETS_US, row):
                cumulative += count
                lines.append(f'{name}_bucket{{{labels},le="{_number(bound)}"}} {cumulative}')
            lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {row[-1]}')
            lines.append(f"{name}_sum{{{labels}}} {_number(row[-2])}")
            lines.append(f"{name}_count{{{labels}}} {row[-1]}")
