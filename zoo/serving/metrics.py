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

Label values come only from what the server serves, never from what a client sends
(TF Serving labels with the model name a request names, so 2,000 requests for made-up
names of 60 KB grow its page without bound; zoo's page grew to 360 MiB that way):

- `model_name` is the name of a model this process serves or has served; any other
  name (a 404 for an unknown model, a 4 MiB name sent over gRPC) is counted under
  `model_name=""`, the value requests that name no model (a malformed path) already
  had. `Metrics` learns the names from its `available` callable: a name it has seen
  is a set lookup; an unknown one asks `available` again (a model may have just
  loaded), so the first request to a new model is counted under its name.
- `status` is one of the canonical codes (`OK`, `INVALID_ARGUMENT`, ...), anything
  else `UNKNOWN`; `API` one of `predict`, `classify`, `regress`, `multi_inference`,
  `metadata` or `""`; `entrypoint` `REST` or `GRPC`; `runtime` at most 64
  characters.

So the page's size depends on the models served, not on the traffic: under the flood
above it stays a few KiB.

`read_monitoring_config` reads TF Serving's `--monitoring_config_file`.
"""

from __future__ import annotations

import bisect
import re
import threading
from pathlib import Path

from zoo.errors import ZooError

# TF Serving's buckets for both latency samplers: 10 µs × 1.8^i, 33 of them (~20 min).
LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))


def _labels(names, values):
    return ",".join(f'{name}="{_escape(str(value))}"' for name, value in zip(names, values))


def _escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    return repr(float(value)) if isinstance(value, float) else str(value)


# The values a label a client influences may take (anything else collapses).
UNKNOWN_MODEL = ""
STATUSES = frozenset((
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
))
APIS = frozenset(("predict", "classify", "regress", "multi_inference", "metadata", ""))
ENTRYPOINTS = frozenset(("REST", "GRPC"))
_MAX_RUNTIME_CHARS = 64


class Metrics:
    """The server's counters and histograms; `render()` is Prometheus' text format.

    `available` (set by the server) lists the `(model, version)` pairs being served;
    it decides which model names are label values (see the module docstring).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = {}  # (model, status) -> count
        self.latency = {}  # (model, api, entrypoint) -> [bucket counts..., sum, count]
        self.runtime = {}  # (model, api, runtime) -> same
        self.loads = {}  # (path, status) -> count
        self.available = None  # callable -> [(model, version)]
        self._served = frozenset()  # every model name `available` has listed: replaced, never mutated

    def model_label(self, model):
        """`model` when this process serves or has served a model of that name, else
        `UNKNOWN_MODEL`."""
        if not isinstance(model, str):
            return UNKNOWN_MODEL
        if model in self._served:  # the hot path: one set lookup, no lock
            return model
        return model if model in self._learn_served() else UNKNOWN_MODEL

    def _learn_served(self, names=None):
        """Add the names served now (asking `available` unless given) to those known.
        Called outside `_lock`: `available` takes the store's lock."""
        if names is None:
            available = self.available
            if available is None:
                return self._served
            try:
                names = [name for name, _ in available()]
            except Exception:  # noqa: BLE001  (a store being closed: keep what is known)
                return self._served
        names = {name for name in names if isinstance(name, str)}
        if not names <= self._served:
            with self._lock:
                self._served = self._served | names
        return self._served

    def count_request(self, model, status, api, entrypoint, seconds):
        model = self.model_label(model)
        status = status if status in STATUSES else "UNKNOWN"
        api = api if api in APIS else ""
        entrypoint = entrypoint if entrypoint in ENTRYPOINTS else ""
        with self._lock:
            key = (model, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self._observe(self.latency, (model, api, entrypoint), seconds * 1e6)

    def observe_runtime(self, model, api, runtime, seconds):
        model = self.model_label(model)
        api = api if api in APIS else ""
        runtime = str(runtime)[:_MAX_RUNTIME_CHARS]
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
        available = sorted(self.available() if self.available else [])
        self._learn_served([name for name, _ in available])
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
        for model, version in available:
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


# ------------------------------------------------------------------ monitoring config
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath
_monitoring_class = None


def _monitoring_config_proto():
    """The `tensorflow.serving.MonitoringConfig` message class (monitoring_config.proto:
    `prometheus_config { bool enable = 1; string path = 2; }`), built from its
    descriptor in a pool of its own: tensorflow-serving-api does not ship it."""
    global _monitoring_class
    if _monitoring_class is not None:
        return _monitoring_class
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    Field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="zoo/monitoring_config.proto", package="tensorflow.serving",
                                               syntax="proto3")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=Field.TYPE_BOOL, label=Field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=Field.TYPE_MESSAGE, label=Field.LABEL_OPTIONAL,
                         type_name=".tensorflow.serving.PrometheusConfig")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    _monitoring_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))
    return _monitoring_class


def read_monitoring_config(path):
    """TF Serving's `--monitoring_config_file` → the path to serve Prometheus metrics
    at, or None when the file does not enable them. The file is a text-format
    `MonitoringConfig`:

        prometheus_config {
          enable: true
          path: "/monitoring/prometheus/metrics"
        }

    As in TF Serving, an enabled config without `path` serves
    `/monitoring/prometheus/metrics`, and a file without `enable: true` (an empty
    one too) serves none. A file that cannot be read, is not a `MonitoringConfig`
    (bad syntax, an unknown field), or names a path a request could not reach (not
    starting with "/", with a query, a fragment or white space) or one under /v1/
    (TF Serving's API) raises `ZooError`, one line naming the file and the problem.
    """
    from google.protobuf import text_format

    from zoo.io import read_config_text

    path = Path(path)
    text = read_config_text(path, "monitoring config file")
    message = _monitoring_config_proto()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        detail = " ".join(str(error).split()).replace('Message type "tensorflow.serving.', 'Message type "')
        detail = re.sub(r"^(\d+):(\d+) : ", r"line \1, column \2: ", detail)
        if len(detail) > 300:
            detail = detail[:300] + "..."
        raise ZooError(f"Monitoring config file {path} is not a text-format MonitoringConfig: {detail}") from None
    config = message.prometheus_config
    if not config.enable:
        return None
    metrics_path = config.path or DEFAULT_METRICS_PATH
    problem = None
    if not metrics_path.startswith("/"):
        problem = "must start with '/'"
    elif any(c in metrics_path for c in "?#") or any(c.isspace() or not c.isprintable() for c in metrics_path):
        problem = "must be a plain URL path (no '?', '#', white space or control characters)"
    elif metrics_path.lower().rstrip("/") == "/v1" or metrics_path.lower().startswith("/v1/"):
        problem = "must not be under /v1/, where the model API is served"
    if problem:
        raise ZooError(f"Monitoring config file {path}: prometheus_config.path {problem}. "
                       f"Received: {metrics_path[:200]!r}")
    return metrics_path
