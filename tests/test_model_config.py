"""`zoo serve --model_config_file`: several models, version policies and labels from TF
Serving's text-format ModelServerConfig, changed without a restart (file edits and gRPC
HandleReloadConfigRequest), and the Prometheus counters that count the requests.

The models are tiny TF2 SavedModels written here (y = x * version), so an answer says
which version served it.
"""

import http.client
import json
import os
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from zoo.errors import ZooError  # noqa: E402
from zoo.serving.server import ModelServer  # noqa: E402


def write_scaler(path, factor):
    """A SavedModel whose serving_default multiplies `x` by `factor`."""

    class Scaler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * factor}

    module = Scaler()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    for version in (1, 2, 3):
        write_scaler(base / "scaler" / str(version), float(version))
    write_scaler(base / "other" / "7", 70.0)
    return base


CONFIG = """
model_config_list {{
  config {{
    name: "scaler"
    base_path: "{base}/scaler"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: {stable} }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{
    name: "other"
    base_path: "{base}/other"
  }}
}}
"""


def call(server, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request(method, path, body=None if body is None else json.dumps(body))
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, text


def predict(server, path, values=(1.0,)):
    status, text = call(server, "POST", path, {"instances": list(values)})
    assert status == 200, text
    return json.loads(text)["predictions"]


def wait_for(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("the server did not pick up the change in time")


@pytest.fixture
def config_server(models, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(base=models, stable=1))
    server = ModelServer(model_config_file=config, port=0, grpc_port=0, poll_seconds=0.1).start()
    yield server, config
    server.stop()


def test_labels_reach_their_versions_and_a_file_edit_moves_them_without_a_restart(config_server, models):
    server, config = config_server
    assert predict(server, "/v1/models/scaler/labels/canary:predict") == [2.0]
    assert predict(server, "/v1/models/scaler/labels/stable:predict") == [1.0]
    assert predict(server, "/v1/models/scaler/versions/1:predict") == [1.0]
    # The specific policy serves 1 and 2, not the newer 3; a request without a version
    # gets the highest served.
    assert predict(server, "/v1/models/scaler:predict") == [2.0]
    status, text = call(server, "GET", "/v1/models/scaler")
    assert status == 200
    assert [s["version"] for s in json.loads(text)["model_version_status"]] == ["2", "1"]
    assert call(server, "POST", "/v1/models/scaler/versions/3:predict", {"instances": [1.0]})[0] == 404
    assert predict(server, "/v1/models/other:predict") == [70.0]
    status, text = call(server, "POST", "/v1/models/scaler/labels/nope:predict", {"instances": [1.0]})
    assert status == 400 and "Unrecognized servable version label: nope" in text  # TF Serving's 400

    config.write_text(CONFIG.format(base=models, stable=2))
    wait_for(lambda: predict(server, "/v1/models/scaler/labels/stable:predict") == [2.0])

    # A broken edit leaves the last good config serving.
    config.write_text("model_config_list { config { name: ")
    time.sleep(0.5)
    assert predict(server, "/v1/models/scaler/labels/stable:predict") == [2.0]

    # Dropping a model and switching the other to `all` versions.
    config.write_text(f'model_config_list {{ config {{ name: "scaler" base_path: "{models}/scaler" '
                      "model_version_policy { all {} } } }")
    wait_for(lambda: call(server, "GET", "/v1/models/other")[0] == 404)
    assert predict(server, "/v1/models/scaler/versions/3:predict") == [3.0]
    assert predict(server, "/v1/models/scaler/versions/1:predict") == [1.0]


def test_latest_n_policy_and_a_version_that_appears(models, tmp_path):
    base = tmp_path / "scaler"
    for version in (1, 2):
        write_scaler(base / str(version), float(version))
    config = tmp_path / "latest.config"
    config.write_text(f'model_config_list {{ config {{ name: "m" base_path: "{base}" '
                      "model_version_policy { latest { num_versions: 2 } } } }")
    with ModelServer(model_config_file=config, port=0, grpc_port=None, poll_seconds=0.1) as server:
        assert predict(server, "/v1/models/m/versions/1:predict") == [1.0]
        write_scaler(tmp_path / "v3", 3.0)
        os.rename(tmp_path / "v3", base / "3")  # as zoo export publishes a version
        wait_for(lambda: call(server, "GET", "/v1/models/m/versions/1")[0] == 404)
        assert predict(server, "/v1/models/m:predict") == [3.0]
        assert predict(server, "/v1/models/m/versions/2:predict") == [2.0]


def test_a_bad_config_file_is_one_clear_error(tmp_path):
    config = tmp_path / "bad.config"
    config.write_text('model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }')
    with pytest.raises(ZooError, match="multiple times"):
        ModelServer(model_config_file=config, port=0, grpc_port=None)
    config.write_text("not a config")
    with pytest.raises(ZooError, match="not a text-format ModelServerConfig"):
        ModelServer(model_config_file=config, port=0, grpc_port=None)


def test_grpc_model_service_status_and_reload_config(config_server, models):
    import grpc
    from google.protobuf import text_format
    from tensorflow_serving.apis import (get_model_status_pb2, model_management_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    server, _ = config_server
    channel = grpc.insecure_channel(server.grpc_target)
    models_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "scaler"
    statuses = models_stub.GetModelStatus(request, timeout=30).model_version_status
    assert sorted(s.version for s in statuses) == [1, 2]
    assert {s.state for s in statuses} == {get_model_status_pb2.ModelVersionStatus.AVAILABLE}

    def grpc_predict(label):
        predict = predict_pb2.PredictRequest()
        predict.model_spec.name = "scaler"
        predict.model_spec.version_label = label
        predict.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict, timeout=30)
        return response.model_spec.version.value, tf.make_ndarray(response.outputs["y"]).tolist()

    assert grpc_predict("canary") == (2, [2.0])
    reload = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(CONFIG.format(base=models, stable=2).replace('key: "canary" value: 2', 'key: "canary" value: 1'),
                      reload.config)
    assert models_stub.HandleReloadConfigRequest(reload, timeout=60).status.error_code == 0
    assert grpc_predict("canary") == (1, [1.0])
    # A label naming a version that is not served is refused, and nothing changes.
    bad = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(CONFIG.format(base=models, stable=3), bad.config)
    answer = models_stub.HandleReloadConfigRequest(bad, timeout=60)
    assert answer.status.error_code != 0 and "not currently available" in answer.status.error_message
    assert grpc_predict("canary") == (1, [1.0])
    channel.close()


def _counter(server, model, status="OK"):
    _, text = call(server, "GET", "/monitoring/prometheus/metrics")
    line = f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return int(found[0].rsplit(" ", 1)[1]) if found else 0


def test_metrics_count_exactly_the_requests_sent(config_server):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    server, _ = config_server
    ok, refused, missing = _counter(server, "scaler"), _counter(server, "scaler", "INVALID_ARGUMENT"), \
        _counter(server, "", "NOT_FOUND")
    for _ in range(7):
        predict(server, "/v1/models/scaler:predict")
    for _ in range(3):
        assert call(server, "POST", "/v1/models/scaler:predict", {"instances": ["text"]})[0] == 400
    assert call(server, "POST", "/v1/models/nope:predict", {"instances": [1.0]})[0] == 404
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_target))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "scaler"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    for _ in range(5):
        stub.Predict(request, timeout=30)
    assert _counter(server, "scaler") == ok + 12
    assert _counter(server, "scaler", "INVALID_ARGUMENT") == refused + 3
    # A name that is not served is counted under model_name="" (a client cannot add labels).
    assert _counter(server, "", "NOT_FOUND") == missing + 1
    _, text = call(server, "GET", "/monitoring/prometheus/metrics")
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert ':tensorflow:serving:request_latency_count{model_name="scaler",API="predict",entrypoint="GRPC"} 5' in text
    assert ':tensorflow:serving:model_version_available{model_name="scaler",version="2"} 1' in text
    assert 'status="success"' in text  # load attempts


@pytest.mark.large
def test_zoo_serve_takes_tf_servings_flags(models, tmp_path):
    """`zoo serve --model_config_file F --rest_api_port 0 ...` serves the config; neither
    a folder nor a config is one line (a bad config's one line: test_a_bad_config_file...)."""
    import re
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "zoo", "serve"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "--model-config-file" in done.stderr.strip().splitlines()[-1]

    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(base=models, stable=1))
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config {\n  enable: true\n  path: "/metrics"\n}\n')
    process = subprocess.Popen([*command, "--model_config_file", str(config), "--rest_api_port", "0",
                                "--grpc-port", "-1", "--file_system_poll_wait_seconds=0.5",
                                "--rest_api_enable_cors_support", "--enable_batching=false",
                                "--monitoring_config_file", str(monitoring)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = process.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/v1/models/scaler/labels/canary:predict", body='{"instances": [1.0]}')
        response = connection.getresponse()
        assert json.loads(response.read()) == {"predictions": [2.0]}
        assert response.getheader("Access-Control-Allow-Origin") == "*"
        # --monitoring_config_file: the metrics at its path, and not at the default one.
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        assert ':tensorflow:serving:request_count{model_name="scaler",status="OK"} 1' in response.read().decode()
        connection.request("GET", "/monitoring/prometheus/metrics")
        response = connection.getresponse()
        assert response.status == 404, response.read()
        response.read()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_an_unreadable_config_edit_is_logged_once_and_the_last_good_config_keeps_serving(models, tmp_path, caplog):
    """A config file that turns into something unreadable (not UTF-8, not a config) is one
    log line when it changes, not a traceback on every poll; the last good config serves."""
    import logging

    from zoo.serving.store import ModelStore

    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(base=models, stable=1))
    store = ModelStore(model_config_file=config, poll_seconds=0)
    store.start()
    try:
        assert sorted(store.names()) == ["other", "scaler"]
        caplog.set_level(logging.INFO, logger="zoo.serving")
        for bad, said in ((b"\xff\xfe model_config_list { }", "not UTF-8 text"),
                          (b"model_config_list { config { nonsense", "not a text-format ModelServerConfig")):
            caplog.clear()
            config.write_bytes(bad)
            for _ in range(5):  # five polls of an unchanged file
                store.refresh()
            records = [r for r in caplog.records if r.name == "zoo.serving"]
            assert len(records) == 1, [r.getMessage() for r in records]
            assert records[0].levelno == logging.ERROR and records[0].exc_info is None
            message = records[0].getMessage()
            assert said in message and str(config) in message and "\n" not in message, message
            assert message.endswith("serving the previous config")
            assert sorted(store.names()) == ["other", "scaler"]
            assert predict_with(store, "scaler", label="stable") == [1.0]
        caplog.clear()
        config.write_text(CONFIG.format(base=models, stable=2))
        store.refresh()
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert predict_with(store, "scaler", label="stable") == [2.0]
    finally:
        store.stop()


def predict_with(store, name, label=None):
    servable = store.get(name, label=label)
    outputs = servable.predict("serving_default", {"x": np.array([1.0], np.float32)})
    return [float(v) for v in np.asarray(outputs["y"]).reshape(-1)]


@pytest.mark.large
def test_zoo_serve_logs_a_config_file_that_is_not_utf8_once_without_a_traceback(models, tmp_path):
    """The same through `zoo serve`: its stderr has one line for the bad edit, no traceback,
    while the file stays bad over many polls; a good edit then serves again."""
    import re
    import signal
    import subprocess
    import sys

    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(base=models, stable=1))
    errors = tmp_path / "serve.err"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(errors, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--model_config_file", str(config),
                                    "--rest_api_port", "0", "--grpc-port", "-1",
                                    "--file_system_poll_wait_seconds=0.1"],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", process.stdout.readline()).group(1))
        config.write_bytes(b"\xff\xfe" + CONFIG.format(base=models, stable=2).encode())
        wait_for(lambda: "not UTF-8" in errors.read_text())
        time.sleep(1.0)  # ten more polls of the unchanged bad file: none may say anything
        config.write_text(CONFIG.format(base=models, stable=2))

        def stable():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", "/v1/models/scaler/labels/stable:predict", body='{"instances": [1.0]}')
            return json.loads(connection.getresponse().read())

        wait_for(lambda: stable() == {"predictions": [2.0]})  # the good edit serves (the label moved)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    text = errors.read_text()
    assert "Traceback" not in text, text
    bad = [line for line in text.splitlines() if "not UTF-8" in line]
    assert len(bad) == 1 and "serving the previous config" in bad[0], text


def test_the_readme_says_zoo_serve_listens_on_loopback_unless_host_says_otherwise(tmp_path):
    """README "Known differences": `zoo serve` binds 127.0.0.1 (TF Serving: every
    interface) unless --host, with the line for Docker/Kubernetes; and it does."""
    from pathlib import Path

    from zoo.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    known = readme.split("Known differences from TF Serving")[1].split("\n## ")[0]
    assert "`zoo serve` listens on 127.0.0.1" in known and "unless `--host` says otherwise" in known, known
    assert "TF Serving listens on every interface" in known
    assert "zoo serve models/ --host 0.0.0.0" in known and "docker run -p" in known and "Kubernetes" in known
    assert build_parser().parse_args(["serve", "models/"]).host == "127.0.0.1"
    config = tmp_path / "empty.config"
    config.write_text("model_config_list { }")
    with ModelServer(model_config_file=config, port=0, grpc_port=None, poll_seconds=0) as server:
        assert server.rest_url.startswith("http://127.0.0.1:")
        assert server._http.server_address[0] == "127.0.0.1"
