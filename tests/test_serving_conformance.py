"""Conformance with TF Serving's REST API: TF Serving's own REST test cases, as data
(`tests/helpers/tf_serving_cases.py`), replayed against one `zoo serve` server.

The server runs TF Serving's test models (built here, `tests/helpers/tf_serving_models.py`)
from a TF Serving text-format ModelServerConfig file, with CORS on, on free ports. Each
case sends one request with http.client and compares status, headers and body with what
TF Serving answers. A case with `known_difference` is an accepted difference (xfail).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import time
import urllib.parse

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.helpers import tf_serving_models  # noqa: E402
from tests.helpers.tf_serving_cases import CASES, MISSING, MODELS  # noqa: E402

READY_TIMEOUT = 60.0  # seconds for every configured model to answer its status
READY_STALL = 5.0  # ... but give up once no further model has come up for this long


# ------------------------------------------------------------------------- the server
def write_model_config(path, base_paths):
    """MODELS as a TF Serving text-format ModelServerConfig at `path`."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name, (base, policy, labels) in MODELS.items():
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = str(base_paths[base])
        entry.model_platform = "tensorflow"
        if policy == "all":
            entry.model_version_policy.all.SetInParent()
        elif policy is not None:
            entry.model_version_policy.specific.versions.extend(policy)
        for label, version in labels.items():
            entry.version_labels[label] = version
    path.write_text(text_format.MessageToString(config))
    return path


def wait_until_served(url, names):
    """Block until every model answers GET /v1/models/NAME with 200 (or loading stalls)."""
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    pending, start = set(names), time.monotonic()
    last_progress = start
    while pending and time.monotonic() - start < READY_TIMEOUT:
        for name in sorted(pending):
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                connection.request("GET", "/v1/models/" + urllib.parse.quote(name, safe=""))
                if connection.getresponse().status == 200:
                    pending.discard(name)
                    last_progress = time.monotonic()
            except OSError:
                pass
            finally:
                connection.close()
        if pending:
            if time.monotonic() - last_progress > READY_STALL:
                break  # the rest do not load: their cases fail and say so
            time.sleep(0.1)
    return pending


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from zoo.serving.server import ModelServer

    root = tmp_path_factory.mktemp("tf_serving_models")
    base_paths = tf_serving_models.build_all(root / "models")
    config = write_model_config(root / "models.config", base_paths)
    running = ModelServer(model_config_file=str(config), port=0, grpc_port=0,
                          poll_seconds=0.2, enable_cors=True).start()
    try:
        running.not_served = wait_until_served(running.rest_url, MODELS)
        yield running
    finally:
        running.stop()


# ---------------------------------------------------------------------- the exchange
class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())


def send(url, case, timeout=60):
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        body = case.body_bytes()
        connection.putrequest(case.method, case.path, skip_accept_encoding=True)
        headers = dict(case.headers)
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
            headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


def _normalized(value):
    """JSON values with NaN made comparable (NaN == NaN) and -0.0 kept apart from 0.0."""
    if isinstance(value, float):
        if math.isnan(value):
            return "<NaN>"
        if value == 0 and math.copysign(1, value) < 0:
            return "<-0.0>"
        return value
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    return value


def _as_written(text):
    """JSON with every number (and NaN/Infinity) kept as its text, as rapidjson's
    kParseNumbersAsStringsFlag does."""
    return json.loads(text, parse_float=lambda s: ("<number>", s), parse_int=lambda s: ("<number>", s),
                      parse_constant=lambda s: ("<number>", s))


def _missing_from(expected, got, where="body"):
    """Paths where `got` lacks (or differs from) the subset `expected`."""
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [f"{where}: expected an object, got {_short(got)}"]
        problems = []
        for key, value in expected.items():
            if key not in got:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += _missing_from(value, got[key], f"{where}.{key}")
        return problems
    return [] if _normalized(expected) == _normalized(got) else [
        f"{where}: expected {_short(expected)}, got {_short(got)}"]


def _short(value, limit=600):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def mismatches(case, response):
    """What in `response` differs from TF Serving's answer to `case` (empty: conforms)."""
    problems = []
    text = response.body.decode("utf-8", errors="replace")
    if response.status != case.status:
        problems.append(f"status: expected {case.status}, got {response.status}")
    if case.content_type is not None:
        got = response.header("Content-Type") or ""
        if not got.startswith(case.content_type):
            problems.append(f"Content-Type: expected {case.content_type!r}, got {got!r}")
    for name, value in case.expect_headers.items():
        if response.header(name) != value:
            problems.append(f"header {name}: expected {value!r}, got {response.header(name)!r}")
    if case.raw_body is not None and response.body != case.raw_body:
        problems.append(f"body: expected {case.raw_body!r}, got {_short(text)!r}")
    if case.body_contains is not None and case.body_contains not in text:
        problems.append(f"body: expected to contain {case.body_contains!r}, got {_short(text)!r}")
    needs_json = (case.json is not MISSING or case.json_text is not None
                  or case.json_contains is not MISSING or case.error is not None)
    if not needs_json:
        return problems
    try:
        parsed = json.loads(text)
    except ValueError as error:
        return problems + [f"body is not JSON ({error}): {_short(text)!r}"]
    if case.json is not MISSING and _normalized(parsed) != _normalized(case.json):
        problems.append(f"body: expected {_short(case.json)}, got {_short(text)}")
    if case.json_text is not None and _as_written(text) != _as_written(case.json_text):
        problems.append(f"body as written: expected {case.json_text}, got {_short(text)}")
    if case.json_contains is not MISSING:
        problems += _missing_from(case.json_contains, parsed)
    if case.error is not None:
        message = parsed.get("error") if isinstance(parsed, dict) else None
        if not isinstance(parsed, dict) or set(parsed) != {"error"} or not isinstance(message, str):
            problems.append(f'body: expected {{"error": "..."}}, got {_short(text)}')
        elif case.error_exact and message != case.error:
            problems.append(f"error: expected {case.error!r}, got {message!r}")
        elif not case.error_exact and case.error not in message:
            problems.append(f"error: expected to contain {case.error!r}, got {message!r}")
    return problems


def _param(case):
    marks = ()
    if case.known_difference:
        marks = (pytest.mark.xfail(strict=True, reason=case.known_difference),)
    return pytest.param(case, id=case.id, marks=marks)


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_tf_serving_rest_case(server, case):
    response = send(server.rest_url, case)
    problems = mismatches(case, response)
    body = case.body_bytes()
    request = f"{case.method} {case.path}" + (f"  {_short(body.decode('utf-8', 'replace'), 300)}"
                                              if body else "")
    if problems and server.not_served:
        problems.append(f"(models that never came up: {sorted(server.not_served)})")
    assert not problems, f"{request}\n  " + "\n  ".join(problems)


def test_cases_are_unique_and_cover_the_sources():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    sources = {i.split(":")[0] for i in ids}
    assert {"handler_test", "util_test", "status_test", "json_tensor", "server_test", "api_rest"} <= sources


def test_bad_model_config_is_refused(tmp_path):
    """server_test:testBadModelConfig: a model config file that is not a text-format
    ModelServerConfig stops the server from starting; TF Serving says "Error parsing
    text-format tensorflow.serving.ModelServerConfig"."""
    from zoo.serving.server import ModelServer

    bad = tmp_path / "bad_model_config.txt"
    bad.write_text("improperly formatted file")
    try:
        started = ModelServer(model_config_file=str(bad), port=0, grpc_port=None).start()
    except Exception as error:  # noqa: BLE001 - any refusal will do; its message is checked
        assert "ModelServerConfig" in str(error) or str(bad) in str(error), str(error)
    else:
        started.stop()
        pytest.fail("a malformed model config file was accepted")


def test_grpc_classify_regress_and_multi_inference_as_tf_serving_answers(server):
    """tensorflow_model_server_test.py's gRPC cases (testClassify, testRegress,
    testMultiInference, metadata, status) with the official tensorflow-serving-api stubs."""
    import grpc
    from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                         inference_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc,
                                         regression_pb2)

    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def with_x(request, value=2.0):
        request.model_spec.name = "default"
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(value)
        return request

    request = with_x(classification_pb2.ClassificationRequest())
    request.model_spec.signature_name = "classify_x_to_y"
    classes = stub.Classify(request, timeout=30).result.classifications[0].classes
    assert [(c.label, c.score) for c in classes] == [("", 3.0)]

    request = with_x(regression_pb2.RegressionRequest())
    request.model_spec.signature_name = "regress_x_to_y"
    assert stub.Regress(request, timeout=30).result.regressions[0].value == 3.0

    multi = inference_pb2.MultiInferenceRequest()
    multi.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    for signature, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                              ("regress_x_to_y", "tensorflow/serving/regress")):
        task = multi.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    results = stub.MultiInference(multi, timeout=30).results
    assert results[0].classification_result.classifications[0].classes[0].score == 3.0
    assert results[1].regression_result.regressions[0].value == 3.0
    duplicate = inference_pb2.MultiInferenceRequest()
    duplicate.CopyFrom(multi)
    duplicate.tasks[1].model_spec.signature_name = "classify_x_to_y"
    with pytest.raises(grpc.RpcError) as raised:
        stub.MultiInference(duplicate, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "Duplicate evaluation of signature" in \
        raised.value.details()

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "default"
    metadata.metadata_field.append("signature_def")
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    stub.GetModelMetadata(metadata, timeout=30).metadata["signature_def"].Unpack(signature_map)
    assert signature_map.signature_def["regress_x_to_y"].method_name == "tensorflow/serving/regress"

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "default"
    answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)
    assert [(s.version, s.state) for s in answer.model_version_status] == \
        [(123, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    channel.close()
