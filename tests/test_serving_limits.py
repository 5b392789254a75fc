"""What a hostile client cannot do to `zoo serve`'s metrics (issue 23), and TF Serving's
`--monitoring_config_file` (`zoo.serving.metrics.read_monitoring_config`).

The metrics tests drive `Metrics` as REST and gRPC do (`count_request` with the model
name a request named), with the server's `available` callable listing what is served.
"""

import os
import time
from pathlib import Path

import pytest

from zoo.errors import ZooError
from zoo.serving.metrics import Metrics, read_monitoring_config

MiB = 1 << 20


def counter(page, model, status="OK"):
    prefix = f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}} '
    found = [line for line in page.splitlines() if line.startswith(prefix)]
    return int(found[0].rsplit(" ", 1)[1]) if found else 0


def served_metrics(*models):
    metrics = Metrics()
    served = [(name, 1) for name in models]
    calls = []

    def available():
        calls.append(1)
        return list(served)

    metrics.available = available
    return metrics, served, calls


# ------------------------------------------------------------------------- metrics
def test_a_flood_of_made_up_model_names_leaves_the_metrics_page_small_and_exact():
    """Issue 23: 2,000 unknown model names, 96 names of 60 KB (REST 404s) and one of
    4 MiB over gRPC grew the page from 47 KiB to 360 MiB (2 s a scrape). Now they
    are all counted under model_name="", the page stays a few KiB, a scrape is fast,
    and the served model's counters are exact."""
    metrics, _, _ = served_metrics("lenet")
    for _ in range(7):
        metrics.count_request("lenet", "OK", "predict", "REST", 0.002)
    metrics.count_request("lenet", "INVALID_ARGUMENT", "predict", "GRPC", 0.001)
    before = len(metrics.render().encode())

    for i in range(2000):
        metrics.count_request(f"model-{i}", "NOT_FOUND", "predict", "REST", 0.0001)
    for i in range(96):
        metrics.count_request(f"{i:03d}" + "n" * 60_000, "NOT_FOUND", "predict", "REST", 0.0001)
    metrics.count_request("g" * (4 * MiB), "NOT_FOUND", "predict", "GRPC", 0.0001)
    for _ in range(3):
        metrics.count_request("lenet", "OK", "predict", "REST", 0.002)

    start = time.perf_counter()
    page = metrics.render()
    seconds = time.perf_counter() - start
    size = len(page.encode())
    assert size < MiB and size < before + 16 * 1024, (before, size)
    assert seconds < 0.1, seconds
    assert counter(page, "lenet") == 10 and counter(page, "lenet", "INVALID_ARGUMENT") == 1
    assert counter(page, "", "NOT_FOUND") == 2000 + 96 + 1
    assert "model-1" not in page and "nnnn" not in page and "gggg" not in page
    assert ':tensorflow:serving:request_latency_count{model_name="",API="predict",entrypoint="GRPC"} 1' in page
    assert ':tensorflow:serving:model_version_available{model_name="lenet",version="1"} 1' in page
    # What is kept does not grow either: one row per served name and status.
    assert len(metrics.requests) == 3 and len(metrics.latency) == 4


def test_labels_a_client_influences_come_from_fixed_sets():
    """status, API and entrypoint: anything outside the canonical values collapses,
    so a path like /v1/models/lenet:<60 KB> adds no label value."""
    metrics, _, _ = served_metrics("lenet")
    metrics.count_request("lenet", "s" * 60_000, "a" * 60_000, "e" * 60_000, 0.001)
    metrics.count_request("lenet", "INVALID_ARGUMENT", "PrEdIcT", "REST", 0.001)
    metrics.observe_runtime("x" * 60_000, "predict", "r" * 60_000, 0.001)
    page = metrics.render()
    assert len(page) < 64 * 1024
    assert counter(page, "lenet", "UNKNOWN") == 1 and counter(page, "lenet", "INVALID_ARGUMENT") == 1
    assert ':tensorflow:serving:request_latency_count{model_name="lenet",API="",entrypoint=""} 1' in page
    assert ':tensorflow:serving:request_latency_count{model_name="lenet",API="",entrypoint="REST"} 1' in page
    assert ':tensorflow:serving:runtime_latency_count{model_name="",API="predict",runtime="' + "r" * 64 + '"} 1' \
        in page


def test_a_model_loaded_later_is_counted_under_its_name_from_its_first_request_and_keeps_it():
    metrics, served, calls = served_metrics("lenet")
    metrics.count_request("resnet", "NOT_FOUND", "predict", "REST", 0.001)  # not served yet
    served.append(("resnet", 1))  # it loads
    metrics.count_request("resnet", "OK", "predict", "REST", 0.001)
    served.remove(("resnet", 1))  # and is unloaded: its counters keep its name
    metrics.count_request("resnet", "NOT_FOUND", "predict", "REST", 0.001)
    page = metrics.render()
    assert counter(page, "", "NOT_FOUND") == 1
    assert counter(page, "resnet") == 1 and counter(page, "resnet", "NOT_FOUND") == 1
    assert 'model_version_available{model_name="resnet"' not in page
    # A name already known costs a set lookup: `available` is not asked again.
    calls.clear()
    for _ in range(1000):
        metrics.count_request("lenet", "OK", "predict", "GRPC", 0.001)
    assert calls == []  # lenet was learned with the first unknown name
    assert counter(metrics.render(), "lenet") == 1000


def test_without_a_list_of_served_models_every_name_is_unknown():
    metrics = Metrics()
    metrics.count_request("lenet", "OK", "predict", "REST", 0.001)
    page = metrics.render()
    assert counter(page, "") == 1 and "lenet" not in page


# --------------------------------------------------------------- monitoring config
def write(tmp_path, text, name="monitoring.config"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n',
     "/monitoring/prometheus/metrics"),
    ('prometheus_config {\n  enable: true\n  path: "/metrics"\n}\n', "/metrics"),
    ("# TF Serving's default path\nprometheus_config { enable: true }\n", "/monitoring/prometheus/metrics"),
    ('prometheus_config { enable: false path: "/metrics" }\n', None),
    ("prometheus_config { }\n", None),
    ("", None),
])
def test_read_monitoring_config_gives_the_path_to_serve_or_none(tmp_path, text, expected):
    assert read_monitoring_config(write(tmp_path, text)) == expected


@pytest.mark.parametrize("text, problem", [
    ("prometheus_config { enabled: true }\n", 'line 1, column 21: Message type "PrometheusConfig" has no field '
                                              'named "enabled"'),
    ("prometheus_config { enable: true\n", 'Expected "}"'),
    ("prometheus_config: true\n", 'Expected "{"'),
    ('prometheus_config { enable: "yes" }\n', "enable"),
    ("max_batch_size { value: 32 }\n", 'no field named "max_batch_size"'),
    ('prometheus_config { enable: true path: "metrics" }\n', "prometheus_config.path must start with '/'"),
    ('prometheus_config { enable: true path: "/metrics?x=1" }\n', "prometheus_config.path must be a plain URL path"),
    ('prometheus_config { enable: true path: "/v1/models/lenet" }\n', "must not be under /v1/"),
])
def test_a_malformed_monitoring_config_is_one_line_naming_the_file_and_the_problem(tmp_path, text, problem):
    path = write(tmp_path, text)
    with pytest.raises(ZooError) as caught:
        read_monitoring_config(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and problem in message, message
    assert len(message) < 600


def test_an_unreadable_monitoring_config_is_one_line(tmp_path):
    with pytest.raises(ZooError, match=r"^Cannot read the monitoring config file .*nope.config: No such file"):
        read_monitoring_config(tmp_path / "nope.config")
    path = tmp_path / "binary.config"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ZooError, match=r"^Cannot read the monitoring config file .*binary.config"):
        read_monitoring_config(path)
    with pytest.raises(ZooError, match=r"^Monitoring config file .*long.config is not a text-format") as caught:
        read_monitoring_config(write(tmp_path, "x" * 100_000, "long.config"))
    assert len(str(caught.value)) < 600


@pytest.mark.parametrize("flag", ["--monitoring_config_file", "--batching_parameters_file"])
def test_zoo_serve_refuses_a_bad_config_file_in_one_line_before_tensorflow_starts(tmp_path, flag):
    """A config file that never ends (/dev/zero) or is not a config: one line, exit 1,
    in the time the command line takes, not TensorFlow's start-up."""
    import subprocess
    import sys
    import time

    config = tmp_path / "models.config"
    config.write_text("model_config_list {}\n")
    for bad, problem in (("/dev/zero", "larger than 1048576 bytes"), (write(tmp_path, "nonsense {"), "")):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "zoo", "serve", "--model_config_file", str(config), flag, bad,
                               "--rest_api_port", "0", "--grpc-port", "-1"],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert str(bad) in lines[0] and problem in lines[0] and "Traceback" not in done.stderr, lines
        assert "tensorflow" not in done.stderr.lower(), done.stderr
        assert time.monotonic() - started < 30
