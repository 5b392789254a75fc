"""TF Serving's REST test cases, re-expressed as data (requests and the answers TF
Serving gives), for `tests/test_serving_conformance.py` to replay against zoo's server.

Sources (tensorflow/serving, read and re-expressed, not copied):
    handler_test    model_servers/http_rest_api_handler_test.cc (+ the handler/dispatcher code
                    it exercises: http_rest_api_handler.cc, http_server.cc)
    util_test       model_servers/http_rest_api_util_test.cc (URL parsing, percent-encoding)
    status_test     model_servers/get_model_status_impl_test.cc
    json_tensor     util/json_tensor_test.cc (JSON <-> tensor codec; run here over HTTP
                    against the `json_tensor` identity model, see tf_serving_models.codec)
    server_test     model_servers/tensorflow_model_server_test.py (REST parts, model config)
    api_rest        g3doc/api_rest.md (documented examples, JSON mapping table)

Each `Case` is one HTTP request and what TF Serving answers: the status, and the body as
exact JSON (`json`), as JSON compared with numbers *as written* (`json_text`: float32
formatting such as `0.0003`, `9e+06`, `1.43577434e+09`), a JSON subset (`json_contains`),
or an error (`error`: a substring of the `{"error": ...}` message, or the whole of it with
`error_exact`). `MODELS` is the model config the server runs with (the names the cases use).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MISSING = object()


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    body: object = None  # str/bytes sent as is; dict/list sent as JSON; None: no body
    status: int = 200
    json: object = MISSING  # the whole body, parsed (NaN == NaN)
    json_text: str | None = None  # the whole body, numbers compared as written
    json_contains: object = MISSING  # a subset of the body (dicts recursively)
    error: str | None = None  # the body is {"error": msg} and msg contains this
    error_exact: bool = False  # ... and msg equals it
    body_contains: str | None = None  # raw body text contains this
    raw_body: bytes | None = None  # raw body equals this
    headers: dict = field(default_factory=dict)  # request headers
    expect_headers: dict = field(default_factory=dict)  # response headers that must equal
    content_type: str | None = "application/json"  # response Content-Type (prefix); None: unchecked
    known_difference: str | None = None

    def body_bytes(self):
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


# ------------------------------------------------------------------------ the models
RESERVED = "!#$%&'()*+,/:;=?@[]"
RESERVED_ENCODED = "%21%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D"

TWO = "saved_model_half_plus_two_2_versions"  # handler_test's model: specific {123}
TWO_ALL = "saved_model_half_plus_two_2_versions_all"  # status_test's: both versions
TWO_LATEST = "half_plus_two_latest"  # default policy (latest 1): 124 only
RESERVED_NAME = "modelname" + RESERVED
RESERVED_LABEL = "latest" + RESERVED

# name -> (base path key in tf_serving_models.build_all, version policy, labels).
# Policy: None (TF Serving's default, latest 1), "all", or a list of versions (specific).
MODELS = {
    TWO: ("half_plus_two_2_versions", [123], {"Version_Label": 123}),
    TWO_ALL: ("half_plus_two_2_versions", "all", {"stable": 123, "canary": 124}),
    TWO_LATEST: ("half_plus_two_2_versions", None, {}),
    "default": ("half_plus_two", None, {}),
    "half_plus_two": ("half_plus_two", None, {}),
    "half_plus_three": ("half_plus_three", None, {}),
    "saved_model_half_plus_three": ("half_plus_three", None, {}),
    "default_tf2": ("half_plus_two_tf2", None, {}),
    "modelname": ("half_plus_two", None, {"latest": 123, RESERVED_LABEL: 123}),
    RESERVED_NAME: ("half_plus_two", None, {"latest": 123, RESERVED_LABEL: 123}),
    "json_tensor": ("codec", None, {}),
    "json_examples": ("examples", None, {}),
}


# ------------------------------------------------------- expected JSON, built from tables
def _tensor(dtype, shape, name):
    """A TensorInfo as TF Serving prints it (always_print_fields_with_no_presence):
    shape "unknown" is unknown rank, None is no tensor_shape at all."""
    info = {"dtype": dtype, "name": name}
    if shape == "unknown":
        info["tensor_shape"] = {"dim": [], "unknown_rank": True}
    elif shape is not None:
        info["tensor_shape"] = {"dim": [{"size": str(s), "name": ""} for s in shape],
                                "unknown_rank": False}
    return info


def _signatures(table):
    return {
        key: {
            "inputs": {k: _tensor(*v) for k, v in inputs.items()},
            "outputs": {k: _tensor(*v) for k, v in outputs.items()},
            "method_name": method,
            "defaults": {},
        }
        for key, (method, inputs, outputs) in table.items()
    }


def metadata(name, version, table):
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": _signatures(table)}},
    }


def status(*versions):
    return {"model_version_status": [
        {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in versions
    ]}


_F, _S = "DT_FLOAT", "DT_STRING"
_REG, _CLS, _PRED = "tensorflow/serving/regress", "tensorflow/serving/classify", "tensorflow/serving/predict"
# testdata/half_plus_two_model_metadata.json
HALF_PLUS_TWO_SIGNATURES = {
    "regress_x2_to_y3": (_REG, {"inputs": (_F, [-1, 1], "x2:0")}, {"outputs": (_F, [-1, 1], "y3:0")}),
    "serving_default": (_PRED, {"x": (_F, [-1, 1], "x:0")}, {"y": (_F, [-1, 1], "y:0")}),
    "classify_x_to_y": (_CLS, {"inputs": (_S, "unknown", "tf_example:0")}, {"scores": (_F, [-1, 1], "y:0")}),
    "regress_x_to_y2": (_REG, {"inputs": (_S, "unknown", "tf_example:0")}, {"outputs": (_F, [-1, 1], "y2:0")}),
    "regress_x_to_y": (_REG, {"inputs": (_S, "unknown", "tf_example:0")}, {"outputs": (_F, [-1, 1], "y:0")}),
}
# testdata/saved_model_half_plus_two_2_versions_metadata.json
TWO_VERSIONS_SIGNATURES = dict(
    HALF_PLUS_TWO_SIGNATURES,
    classify_x2_to_y3=(_CLS, {"inputs": (_F, [-1, 1], "x2:0")}, {"scores": (_F, [-1, 1], "y3:0")}),
)
# testdata/saved_model_half_plus_three: TensorInfos without tensor_shape
HALF_PLUS_THREE_SIGNATURES = {
    "serving_default": (_PRED, {"x": (_F, None, "x:0")}, {"y": (_F, None, "y:0")}),
    _REG: (_REG, {"inputs": (_S, None, "tf_example:0")}, {"outputs": (_F, None, "Identity:0")}),
}


def _deep(prefix, depth, suffix="}"):
    return prefix + "[" * depth + "]" * depth + suffix


def _p(model, verb="predict", version=None, label=None):
    path = f"/v1/models/{model}"
    if version is not None:
        path += f"/versions/{version}"
    if label is not None:
        path += f"/labels/{label}"
    return f"{path}:{verb}"


CASES = []


def case(*args, **kwargs):
    CASES.append(Case(*args, **kwargs))


# ============================================================ http_rest_api_handler_test.cc
H = "handler_test"
# kPathRegex: only (?i)/v1/.* reaches the REST handler; anything else is the HTTP
# server's own 404 (not the handler's JSON).
case(f"{H}:kPathRegex/statuspage", "GET", "/statuspage", status=404, content_type=None)
case(f"{H}:kPathRegex/index", "GET", "/index", status=404, content_type=None)
case(f"{H}:kPathRegex/root", "GET", "/", status=404, content_type=None)
case(f"{H}:kPathRegex/v2", "GET", "/v2/models/default", status=404, content_type=None)
case(f"{H}:kPathRegex/case-insensitive", "GET", "/V1/MODELS/default", json=status(123))

# UnsupportedApiCalls: all InvalidArgument (400).
for i, (method, path, message) in enumerate([
    ("GET", "/v1/foo", "Malformed request"),
    ("POST", "/v1/foo", "Malformed request"),
    ("GET", "/v1/models", "Missing model name"),
    ("GET", "/v1/models/debug/model_name", "Malformed request"),
    ("POST", "/v1/models", "Malformed request"),
    ("GET", "/v1/models/foo:predict", "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/18446744073709551615:regress", "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
]):
    case(f"{H}:UnsupportedApiCalls/{i}", method, path, body="" if method == "POST" else None,
         status=400, error=message)
# The whole messages, where the test's substring leaves them open.
case(f"{H}:UnsupportedApiCalls/0-text", "GET", "/v1/foo", status=400,
     error="Malformed request: GET /v1/foo", error_exact=True)
case(f"{H}:UnsupportedApiCalls/2-text", "GET", "/v1/models", status=400,
     error="Missing model name in request.", error_exact=True)
case(f"{H}:UnsupportedApiCalls/9-text", "POST", "/v1/models/foo/versions/18446744073709551615:regress",
     body="", status=400, error="Failed to convert version: 18446744073709551615 to numeric.",
     error_exact=True)
# ProcessRequest dispatches POST and GET only; other methods keep "Malformed request".
case(f"{H}:ProcessRequest/PUT", "PUT", "/v1/models/default", body="", status=400,
     error="Malformed request: PUT /v1/models/default", error_exact=True)
case(f"{H}:ProcessRequest/DELETE", "DELETE", "/v1/models/default", status=400,
     error="Malformed request: DELETE /v1/models/default", error_exact=True)
case(f"{H}:ProcessRequest/PATCH", "PATCH", _p("default"), body="{}", status=400,
     error="Malformed request: PATCH /v1/models/default:predict", error_exact=True)
case(f"{H}:ProcessRequest/HEAD", "HEAD", "/v1/models/default", status=400, content_type=None)
# The path regexes are matched in full: no trailing slash, no unknown verb, \d+ versions.
case(f"{H}:ProcessRequest/trailing-slash", "GET", "/v1/models/default/", status=400,
     error="Malformed request: GET /v1/models/default/", error_exact=True)
case(f"{H}:ProcessRequest/trailing-slash-metadata", "GET", "/v1/models/default/metadata/",
     status=400, error="Malformed request")
case(f"{H}:ProcessRequest/trailing-slash-predict", "POST", _p("default") + "/",
     body='{"instances": [1.0]}', status=400, error="Malformed request")
case(f"{H}:ProcessRequest/unknown-verb", "POST", _p("default", "explain"),
     body='{"instances": [1.0]}', status=400,
     error="Malformed request: POST /v1/models/default:explain", error_exact=True)
case(f"{H}:ProcessRequest/upper-case-verb", "POST", _p("default", "PREDICT"),
     body='{"instances": [1.0]}', status=400, error="Malformed request")
case(f"{H}:ProcessRequest/negative-version", "GET", "/v1/models/default/versions/-1", status=400,
     error="Malformed request")
case(f"{H}:ProcessRequest/version-0", "GET", "/v1/models/default/versions/0", status=404,
     error="Could not find version 0 of model default", error_exact=True)
case(f"{H}:ProcessRequest/version-leading-zeros", "GET", "/v1/models/default/versions/00000123",
     json=status(123))

# PredictModelNameVersionErrors: NotFound (404).
case(f"{H}:PredictModelNameVersionErrors/0", "POST", _p("foo"), body='{ "instances": [1] }',
     status=404, error="Servable not found for request: Latest(foo)", error_exact=True)
case(f"{H}:PredictModelNameVersionErrors/1", "POST", _p("foo", version=50), body='{ "instances": [1] }',
     status=404, error="Servable not found for request: Specific(foo, 50)", error_exact=True)
case(f"{H}:PredictModelNameVersionErrors/2", "POST", f"/v1/models/{TWO}99:predict",
     body='{ "instances": [1] }', status=404,
     error=f"Servable not found for request: Latest({TWO}99)", error_exact=True)
case(f"{H}:PredictModelNameVersionErrors/2-as-meant", "POST", _p(TWO, version=99),
     body='{ "instances": [1] }', status=404,
     error=f"Servable not found for request: Specific({TWO}, 99)", error_exact=True)
case(f"{H}:PredictModelNameVersionErrors/not-in-policy", "POST", _p(TWO, version=124),
     body='{ "instances": [1] }', status=404,
     error=f"Servable not found for request: Specific({TWO}, 124)", error_exact=True)

# PredictRequestErrors: InvalidArgument (400).
case(f"{H}:PredictRequestErrors/0", "POST", _p(TWO), body="", status=400,
     error="JSON Parse error: The document is empty")
case(f"{H}:PredictRequestErrors/1", "POST", _p(TWO), body="instances = [1, 2]", status=400,
     error="JSON Parse error: Invalid value")
case(f"{H}:PredictRequestErrors/2", "POST", _p(TWO), body='{ "instances": ["x", "y"] }', status=400,
     error="not of expected type: float")
case(f"{H}:PredictRequestErrors/3", "POST", _p(TWO, label="Version_Nonexistent"),
     body='{ "instances": ["x", "y"] }', status=400,
     error="Unrecognized servable version label: Version_Nonexistent", error_exact=True)
case(f"{H}:PredictRequestErrors/4", "POST", _p(TWO), body='{ "signature_name": 100 }', status=400,
     error="'signature_name' key must be a string value.")

# Predict
case(f"{H}:Predict/0", "POST", _p(TWO), body='{"instances": [[1.0, 2.0], [3.0, 4.0]]}',
     json={"predictions": [[2.5, 3.0], [3.5, 4.0]]})
case(f"{H}:Predict/1", "POST", _p(TWO, version=123), body='{"instances": [1.0, 2.0]}',
     json={"predictions": [2.5, 3.0]})
case(f"{H}:Predict/2", "POST", _p(TWO, label="Version_Label"), body='{"instances": [1.0, 2.0]}',
     json={"predictions": [2.5, 3.0]})
case(f"{H}:Predict/3", "POST", _p(TWO, version=123),
     body='{"signature_name": "serving_default", "instances": [3.0, 4.0]}',
     json={"predictions": [3.5, 4.0]})
case(f"{H}:Predict/4", "POST", _p(TWO, version=123),
     body='{"signature_name": "serving_default", "inputs": [3.0, 4.0]}',
     json={"outputs": [3.5, 4.0]})
# The raw text: float32 results written as TF Serving writes them ("2.5", "3.0").
case(f"{H}:Predict/0-text", "POST", _p(TWO), body='{"instances": [[1.0, 2.0], [3.0, 4.0]]}',
     json_text='{"predictions": [[2.5, 3.0], [3.5, 4.0]]}')
# float32 written as "%g" when that reads back as the same float32, else "%.9g":
# 0.5 * -3.4f + 2 is 0.29999995f, which "0.3" is not.
case(f"{H}:Predict/float32-text", "POST", _p(TWO), body='{"instances": [[0.1], [-3.4], [1e-3]]}',
     json_text='{"predictions": [[2.05], [0.299999952], [2.0005]]}')

# Regress: 0.5 * 80 + 2
for i, path in enumerate([_p(TWO, "regress"), _p(TWO, "regress", version=123),
                          _p(TWO, "regress", label="Version_Label")]):
    case(f"{H}:Regress/{i}", "POST", path,
         body='{"signature_name": "regress_x_to_y", "examples": [ { "x": 80.0 } ] }',
         json={"results": [42]})
# Classify: label "" (the signature has no classes output), score 0.5 x + 2
case(f"{H}:Classify/0", "POST", _p(TWO, "classify"),
     body='{"signature_name": "classify_x_to_y", "examples": [ { "x": 20.0 } ] }',
     json={"results": [[["", 12]]]})
case(f"{H}:Classify/1", "POST", _p(TWO, "classify", label="Version_Label"),
     body='{"signature_name": "classify_x_to_y", "examples": [ { "x": 10.0 } ] }',
     json={"results": [[["", 7]]]})

# GetStatus
case(f"{H}:GetStatus/0", "GET", f"/v1/models/{TWO}", json=status(123))
case(f"{H}:GetStatus/1", "GET", f"/v1/models/{TWO}/versions/123", json=status(123))
case(f"{H}:GetStatus/2", "GET", f"/v1/models/{TWO}/labels/Version_Label", json=status(123))

# GetModelMetadata: saved_model_half_plus_two_2_versions_metadata.json
case(f"{H}:GetModelMetadata/0", "GET", f"/v1/models/{TWO}/metadata",
     json=metadata(TWO, 123, TWO_VERSIONS_SIGNATURES))
case(f"{H}:GetModelMetadata/version", "GET", f"/v1/models/{TWO}/versions/123/metadata",
     json=metadata(TWO, 123, TWO_VERSIONS_SIGNATURES))
case(f"{H}:GetModelMetadata/label", "GET", f"/v1/models/{TWO}/labels/Version_Label/metadata",
     json=metadata(TWO, 123, TWO_VERSIONS_SIGNATURES))
case(f"{H}:GetModelMetadata/unknown-label", "GET", f"/v1/models/{TWO}/labels/nope/metadata",
     status=400, error="Unrecognized servable version label: nope", error_exact=True)
case(f"{H}:GetModelMetadata/unknown-model", "GET", "/v1/models/nonexistent_model/metadata",
     status=404, error="Servable not found for request: Latest(nonexistent_model)", error_exact=True)
case(f"{H}:GetModelMetadata/unknown-version", "GET", f"/v1/models/{TWO}/versions/124/metadata",
     status=404, error=f"Servable not found for request: Specific({TWO}, 124)", error_exact=True)

# ============================================================ http_rest_api_util_test.cc
U = "util_test"
_SPEC = {"model_spec": {"name": RESERVED_NAME, "signature_name": "", "version": "123"}}
case(f"{U}:ParseModelInfoForGet/1-reserved-name", "GET", f"/v1/models/modelname{RESERVED_ENCODED}",
     json=status(123))
case(f"{U}:ParseModelInfoForGet/1-reserved-name-metadata", "GET",
     f"/v1/models/modelname{RESERVED_ENCODED}/metadata", json_contains=_SPEC)
case(f"{U}:ParseModelInfoForGet/2-version", "GET", "/v1/models/modelname/versions/99", status=404,
     error="Could not find version 99 of model modelname", error_exact=True)
case(f"{U}:ParseModelInfoForGet/3-label", "GET", "/v1/models/modelname/labels/latest", json=status(123))
case(f"{U}:ParseModelInfoForGet/4-reserved-label", "GET",
     f"/v1/models/modelname/labels/latest{RESERVED_ENCODED}", json=status(123))
case(f"{U}:ParseModelInfoForGet/5-label-metadata", "GET", "/v1/models/modelname/labels/latest/metadata",
     json_contains={"model_spec": {"name": "modelname", "signature_name": "", "version": "123"}})
case(f"{U}:ParseModelInfoForGet/6-reserved-name-label-metadata", "GET",
     f"/v1/models/modelname{RESERVED_ENCODED}/labels/latest{RESERVED_ENCODED}/metadata",
     json_contains=_SPEC)
for i, path in enumerate(["/v1/foo", "/v1/models/foo:predict", "/v1/models/foo/version/50:predict"]):
    case(f"{U}:ParseModelInfoForGet/fail-{i}", "GET", path, status=400, error="Malformed request")

_ONE = '{"instances": [[1.0], [2.0]]}'
_ONE_OUT = {"predictions": [[2.5], [3.0]]}
case(f"{U}:ParseModelInfoForPost/1-reserved-name", "POST", _p(f"modelname{RESERVED_ENCODED}"),
     body=_ONE, json=_ONE_OUT)
case(f"{U}:ParseModelInfoForPost/2-version", "POST", _p("modelname", version=99), body=_ONE,
     status=404, error="Servable not found for request: Specific(modelname, 99)", error_exact=True)
case(f"{U}:ParseModelInfoForPost/3-label", "POST", _p("modelname", label="latest"), body=_ONE,
     json=_ONE_OUT)
case(f"{U}:ParseModelInfoForPost/4-reserved-label", "POST",
     _p("modelname", label=f"latest{RESERVED_ENCODED}"), body=_ONE, json=_ONE_OUT)
case(f"{U}:ParseModelInfoForPost/6-reserved-name-label", "POST",
     _p(f"modelname{RESERVED_ENCODED}", label=f"latest{RESERVED_ENCODED}"), body=_ONE, json=_ONE_OUT)
case(f"{U}:ParseModelInfoForPost/reserved-name-regress", "POST",
     _p(f"modelname{RESERVED_ENCODED}", "regress"),
     body='{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}', json={"results": [3.0]})
case(f"{U}:ParseModelInfoForPost/unknown-reserved-name", "POST", _p(f"other{RESERVED_ENCODED}"),
     body=_ONE, status=404, error=f"Servable not found for request: Latest(other{RESERVED})",
     error_exact=True)
for i, (path, message) in enumerate([
    ("/v1/foo", "Malformed request"),
    ("/v1/models", "Malformed request"),
    ("/v1/models/foo/version/50:predict", "Malformed request"),
    ("/v1/models/foo/versions/string:predict", "Malformed request"),
    ("/v1/models/foo/versions/18446744073709551615:predict", "Failed to convert version"),
    ("/v1/models/foo/metadata", "Malformed request"),
    ("/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
]):
    case(f"{U}:ParseModelInfoForPost/fail-{i}", "POST", path, body=_ONE, status=400, error=message)

# ============================================================ get_model_status_impl_test.cc
S = "status_test"
case(f"{S}:MissingOrEmptyModelSpecFailure", "GET", "/v1/models", status=400, error="Missing model name")
case(f"{S}:InvalidModelNameFailure", "GET", "/v1/models/nonexistent_model", status=404,
     error="Could not find any versions of model nonexistent_model", error_exact=True)
case(f"{S}:InvalidModelVersionFailure", "GET", f"/v1/models/{TWO_ALL}/versions/125", status=404,
     error=f"Could not find version 125 of model {TWO_ALL}", error_exact=True)
# Versions newest first (ServableStateMonitor::VersionMap is ordered by std::greater).
case(f"{S}:AllVersionsSuccess", "GET", f"/v1/models/{TWO_ALL}", json=status(124, 123))
case(f"{S}:SingleVersionSuccess", "GET", f"/v1/models/{TWO_ALL}/versions/123", json=status(123))
case(f"{S}:SingleVersionSuccess/124", "GET", f"/v1/models/{TWO_ALL}/versions/124", json=status(124))

# ============================================================ util/json_tensor_test.cc
J = "json_tensor"
JT = _p("json_tensor")


def sig(name, **body):
    return json.dumps(dict(signature_name=name, **body))


case(f"{J}:SingleUnnamedTensor", "POST", JT, body='{"instances": [[1,2],[3,4],[5,6]]}',
     json={"predictions": [[1, 2], [3, 4], [5, 6]]})
case(f"{J}:DeeplyNestedWellFormed", "POST", JT, body=_deep('{"instances":[1], "nested":', 500000),
     json={"predictions": [1]})
case(f"{J}:DeeplyNestedMalformed", "POST", JT, body=_deep('{"signature_name":', 500000), status=400,
     error="key must be a string value")
case(f"{J}:MixedInputForFloatTensor", "POST", JT,
     body='{"signature_name": "float", "instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}',
     json_text='{"predictions": [1.0, 2.0, 3.0, 4.0, 5.003, 0.007, 0.0]}')
case(f"{J}:MixedInputForDoubleTensor", "POST", JT,
     body='{"signature_name": "double", "instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}',
     json={"predictions": [1.0, 2.0, 3.0, 4.0, 0.662, 0.0, 0.0]})
# 1435774380 is 1435774336 as a float32, which "%g" does not round-trip: "%.9g".
case(f"{J}:FloatTensorWithPrecisionLoss/int", "POST", JT,
     body='{"signature_name": "float", "instances": [1435774380]}',
     json_text='{"predictions": [1.43577434e+09]}')
case(f"{J}:FloatTensorWithPrecisionLoss/decimal", "POST", JT,
     body='{"signature_name": "float", "instances": [1435774380.0]}',
     json_text='{"predictions": [1.43577434e+09]}')
case(f"{J}:FloatTensorThatExceedsMaxReturnsInf/max", "POST", JT,
     body='{"signature_name": "float", "instances": [1.79769e+308]}',
     json_text='{"predictions": [Infinity]}')
case(f"{J}:FloatTensorThatExceedsMaxReturnsInf/min", "POST", JT,
     body='{"signature_name": "float", "instances": [-1.79769e+308]}',
     json_text='{"predictions": [-Infinity]}')
case(f"{J}:FloatTensorThatExceedsMinReturnsZero/pos", "POST", JT,
     body='{"signature_name": "float", "instances": [2.22507e-308]}',
     json_text='{"predictions": [0.0]}')
case(f"{J}:FloatTensorThatExceedsMinReturnsZero/neg", "POST", JT,
     body='{"signature_name": "float", "instances": [-2.22507e-308]}',
     json_text='{"predictions": [-0.0]}')
case(f"{J}:SingleUnnamedTensorWithSignature", "POST", JT,
     body='{"signature_name": "predict_images", "instances": [[1,2]]}', json={"predictions": [[1, 2]]})
# rapidjson's kParseStopWhenDoneFlag: whatever follows the JSON document is not read.
case(f"{J}:TensorFromNonNullTerminatedBuffer", "POST", JT, body='{"instances": [[1,2],[3,4],[5,6]]}X',
     json={"predictions": [[1, 2], [3, 4], [5, 6]]})
case(f"{J}:SingleUnnamedTensorBase64Scalars", "POST", JT,
     body='{"signature_name": "string", "instances": [ { "b64" : "aGVsbG8=" }, { "b64": "d29ybGQ=" } ]}',
     json={"predictions": ["hello", "world"]})
case(f"{J}:SingleUnnamedTensorBase64Lists", "POST", JT,
     body='{"signature_name": "string", '
          '"instances": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ]}',
     json={"predictions": [["hello"], ["world"]]})
case(f"{J}:SingleNamedTensorBase64", "POST", JT,
     body='{"signature_name": "string", '
          '"instances": [ { "default": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ] } ]}',
     json={"predictions": [[["hello"], ["world"]]]})
_NAN = float("nan")
case(f"{J}:MultipleNamedTensor", "POST", JT,
     body='{"signature_name": "multi", "instances": ['
          '{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"], '
          '"float_tensor": [1.0, NaN], "dbl_tensor": [NaN]}, '
          '{"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"], '
          '"float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}',
     json={"predictions": [
         {"int_tensor": [[1, 2], [3, 4], [5, 6]], "str_tensor": ["foo", "bar"],
          "float_tensor": [1.0, _NAN], "dbl_tensor": [_NAN]},
         {"int_tensor": [[7, 8], [9, 0], [1, 2]], "str_tensor": ["baz", "bat"],
          "float_tensor": [2.0, float("inf")], "dbl_tensor": [2.0]}]})
case(f"{J}:SingleUnnamedTensorColumnarFormat/named", "POST", JT,
     body='{"signature_name": "int_only", "inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}',
     json={"outputs": [[[1, 2], [3, 4], [5, 6]]]})
case(f"{J}:SingleUnnamedTensorColumnarFormat/unnamed", "POST", JT,
     body='{"signature_name": "int_only", "inputs": [[[1,2],[3,4],[5,6]]]}',
     json={"outputs": [[[1, 2], [3, 4], [5, 6]]]})
case(f"{J}:MultipleNamedTensorColumnarFormat", "POST", JT,
     body='{"signature_name": "columnar3", "inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], '
          '"str_tensor": ["foo", "bar"], "bin_tensor": { "b64" : "aGVsbG8=" }}}',
     json={"outputs": {"int_tensor": [[[1, 2], [3, 4], [5, 6]]], "str_tensor": ["foo", "bar"],
                       "bin_tensor": "hello"}})
for i, (body, message) in enumerate([
    ("", "document is empty"),
    ('{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}', "must be a string value"),
    ('{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2],[3,4],[5,6,7]]}', "Not formatted correctly"),
    ('{"instances": [[1,2],[3,4],[5,6,7]]}', "Expecting tensor size"),
    ('{"instances": [[1,2],[3,4],[[5,6]]]}', "Expecting shape"),
    ('{"instances": [1, [1]]}', "Expecting shape"),
    ('{"instances": [[1,2],["a", "b"]]}', "not of expected type"),
]):
    case(f"{J}:SingleUnnamedTensorErrors/{i}", "POST", JT, body=body, status=400, error=message)
for i, (signature, instances, message) in enumerate([
    ("int_str", '[{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]}, '
                '{"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]', "Expecting shape"),
    ("int_str", '[{"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor": ["foo", "bar"]}, '
                '{"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"]}]', "Expecting tensor size"),
    ("int_str", '[{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]}, [1, 20, 30], '
                '{"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]',
     "Expecting object but got list"),
    ("str_only", '[["baz", "bar"], {"str_tensor": ["baz", "bat"]}]', "Expecting value/list but got object"),
]):
    case(f"{J}:MultipleNamedTensorErrors/{i}", "POST", JT,
         body=f'{{"signature_name": "{signature}", "instances": {instances}}}', status=400, error=message)
# Other request errors of json_tensor.cc
case(f"{J}:FillPredictRequestFromJson/missing-key", "POST", JT, body='{"signature_name": "int32"}',
     status=400, error="Missing 'inputs' or 'instances' key", error_exact=True)
case(f"{J}:FillPredictRequestFromJson/instances-not-list", "POST", JT, body='{"instances": 1}',
     status=400, error="Expecting 'instances' to be an list/array")
case(f"{J}:FillPredictRequestFromJson/instances-empty", "POST", JT, body='{"instances": []}',
     status=400, error="No values in 'instances' array")
case(f"{J}:FillPredictRequestFromJson/not-object", "POST", JT, body="[1, 2]", status=400,
     error="Is not object")
case(f"{J}:FillPredictRequestFromJson/plain-list-multi-input", "POST", JT,
     body='{"signature_name": "int_str", "instances": [1, 2]}', status=400,
     error="instances is a plain list, but expecting list of objects as multiple input tensors required",)
case(f"{J}:FillPredictRequestFromJson/plain-inputs-multi-input", "POST", JT,
     body='{"signature_name": "int_str", "inputs": [1, 2]}', status=400,
     error="inputs is a plain value/list, but expecting an object as multiple input tensors required")
case(f"{J}:FillPredictRequestFromJson/missing-named-input", "POST", JT,
     body='{"signature_name": "int_str", "inputs": {"int_tensor": [1]}}', status=400,
     error="Missing named input: str_tensor in 'inputs' object.", error_exact=True)
case(f"{J}:FillPredictRequestFromJson/instance-keys", "POST", JT,
     body='{"signature_name": "int_str", "instances": [{"int_tensor": 1}]}', status=400,
     error="keys must be equal to: int_tensor,str_tensor")
case(f"{J}:FillPredictRequestFromJson/unknown-named-input", "POST", JT,
     body='{"signature_name": "int_str", "instances": [{"int_tensor": 1, "str_tensor": "a", "x": 1}]}',
     status=400, error="does not have named input: x")
case(f"{J}:FillPredictRequestFromJson/bad-b64", "POST", JT,
     body='{"signature_name": "string", "instances": [{"b64": "not base64!"}]}', status=400,
     error="Unable to base64 decode")
case(f"{J}:FillTensorProto/b64-for-float", "POST", JT,
     body='{"signature_name": "float", "instances": [{"b64": "aGVsbG8="}]}', status=400,
     error="Type: Object is not of expected type: float")
case(f"{J}:FillTensorProto/object-not-b64", "POST", JT,
     body='{"signature_name": "string", "instances": [["a", {"x": 1}]]}', status=400,
     error="not formatted correctly for base64 data")
case(f"{J}:FillPredictRequestFromJson/unknown-signature", "POST", JT,
     body='{"signature_name": "nope", "instances": [1]}', status=400,
     error='Serving signature name: "nope" not found in signature def', error_exact=True)

# Responses (MakeJsonFromTensors): identity signatures echo the tensor back.
_T232 = [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]
case(f"{J}:FromJsonSingleTensor/row", "POST", JT, body={"instances": _T232}, json={"predictions": _T232})
case(f"{J}:FromJsonSingleTensor/columnar", "POST", JT, body={"inputs": _T232}, json={"outputs": _T232})
case(f"{J}:FromJsonSingleScalarTensor/row", "POST", JT, body={"instances": [1, 2, 3, 4, 5]},
     json={"predictions": [1, 2, 3, 4, 5]})
case(f"{J}:FromJsonSingleScalarTensor/columnar", "POST", JT, body={"inputs": [1, 2, 3, 4, 5]},
     json={"outputs": [1, 2, 3, 4, 5]})
case(f"{J}:FromJsonSingleBytesTensor", "POST", JT,
     body=sig("bytes_out", instances=[["hello", "world"], ["tf", "serving"]]),
     json={"predictions": [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                           [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]})
case(f"{J}:FromJsonSingleFloatTensorSixDigitPrecision", "POST", JT,
     body='{"signature_name": "float", "instances": [[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]]}',
     json_text='{"predictions": [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]}')
case(f"{J}:FromJsonSingleFloatTensorSixDigitPrecision/columnar", "POST", JT,
     body='{"signature_name": "float", "inputs": [[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]]}',
     json_text='{"outputs": [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]}')
case(f"{J}:FromJsonSingleFloatTensorNonFinite", "POST", JT,
     body='{"signature_name": "float", "instances": [[NaN, Infinity], [3, -Infinity]]}',
     json_text='{"predictions": [[NaN, Infinity], [3.0, -Infinity]]}')
case(f"{J}:FromJsonSingleTensorErrors/complex64", "POST", JT,
     body=sig("complex", instances=[1.0, 2.0]), status=400,
     error="Failed to write JSON value for tensor type: complex64", error_exact=True)
case(f"{J}:FromJsonSingleTensorErrors/no-shape", "POST", JT,
     body=sig("scalar", instances=[1.0, 2.0]), status=400,
     error="Tensor name: tensor has no shape information")
case(f"{J}:FromJsonSingleTensorErrors/scalar-columnar", "POST", JT,
     body=sig("scalar", inputs=[1.0, 2.0, 3.0]), json_text='{"outputs": 6.0}')
_MULTI_ROWS = [
    {"double_scalar_tensor": 8.0, "float_tensor": [1.0], "int_tensor": [[1, 2], [3, 4], [5, 6]],
     "str_tensor": ["foo", "bar"], "str_tensor_bytes": ["hello", "world"]},
    {"double_scalar_tensor": 9.0, "float_tensor": [2.0], "int_tensor": [[7, 8], [9, 0], [1, 2]],
     "str_tensor": ["baz", "bat"], "str_tensor_bytes": ["tf", "serving"]},
]
_MULTI_OUT = [
    {"double_scalar_tensor": 8.0, "float_tensor": [1.0], "int_tensor": [[1, 2], [3, 4], [5, 6]],
     "str_tensor": ["foo", "bar"], "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]},
    {"double_scalar_tensor": 9.0, "float_tensor": [2.0], "int_tensor": [[7, 8], [9, 0], [1, 2]],
     "str_tensor": ["baz", "bat"], "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]},
]
case(f"{J}:FromJsonMultipleNamedTensors/row", "POST", JT, body=sig("multi_out", instances=_MULTI_ROWS),
     json={"predictions": _MULTI_OUT})
case(f"{J}:FromJsonMultipleNamedTensors/columnar", "POST", JT,
     body=sig("multi_out", inputs={k: [row[k] for row in _MULTI_ROWS] for k in _MULTI_ROWS[0]}),
     json={"outputs": {k: [row[k] for row in _MULTI_OUT] for k in _MULTI_OUT[0]}})
case(f"{J}:FromJsonMultipleNamedTensorsErrors", "POST", JT, body=sig("batch_mismatch", instances=[1.0, 2.0]),
     status=400, error="inconsistent batch size")
case(f"{J}:FromJsonSingleZeroBatchTensor", "POST", JT, body=sig("zero_batch", instances=[1.0]),
     json={"predictions": []})
case(f"{J}:FromJsonMultipleZeroBatchTensors", "POST", JT, body=sig("zero_batch_multi", instances=[1.0]),
     json={"predictions": []})
case(f"{J}:FromJsonMultipleZeroBatchTensorsErrors", "POST", JT,
     body=sig("zero_batch_mismatch", instances=[1.0]), status=400, error="inconsistent batch size")

# Classify and regress requests (FillClassificationRequestFromJson/FillRegressionRequestFromJson):
# the `json_examples` model scores each example from its features (tf_serving_models.examples).
JE = "json_examples"
_NO_CONTEXT = {"examples": [{"names": ["foo", "bar"], "ratings": [8.0, 9.0], "age": 20},
                            {"names": ["baz"], "ratings": 6.0}]}
_WITH_CONTEXT = (
    '{"context": {"query": "pizza", "location": [ "sfo" ]}, "examples": ['
    '{"names": [ "foo", "bar" ], "ratings": [ 8.0, 9.0, NaN, Infinity ], "age": 20}, '
    '{"names": [ "baz", { "b64": "aGVsbG8=" } ], "ratings": 6.0, "intboolmix": [ 1, true, false ]}, '
    '{"names": "bar", "ratings": -Infinity}]')
for verb in ("classify", "regress"):
    signature = f"parse_check_{verb}"
    results_no_context = [20217.0, 106.0]
    results_context = [40217.5, 220206.5, 20100.25]

    def results(values, verb=verb):
        return values if verb == "regress" else [[["", v]] for v in values]

    case(f"{J}:ClassifyRegressRequestTest/RequestNoContext/{verb}", "POST", _p(JE, verb),
         body=dict(_NO_CONTEXT, signature_name=signature), json={"results": results(results_no_context)})
    case(f"{J}:ClassifyRegressRequestTest/RequestWithContextAndSignature/{verb}", "POST", _p(JE, verb),
         body=_WITH_CONTEXT + f', "signature_name": "{signature}"}}',
         json={"results": results(results_context)})
    for i, (body, message) in enumerate([
        ('{"signature_name": [ "hello" ], "examples": [ { "names": [ "foo", "bar" ] } ]}',
         "'signature_name' key must be a string"),
        ('{"context": [ { "names": [ "foo", "bar" ] } ]}', "Example must be JSON object"),
        ('{"examples": { "names": [ "foo", "bar" ] }}', "list/array"),
        ('{"examples": [ [ { "names": [ "foo", "bar" ] } ] ]}', "Example must be JSON object"),
        ('{"examples": [ { "names": [ 10, null ] } ]}', "names has element with unexpected JSON type: Null"),
        ('{"examples": [ { "names": [ 10, 10.0 ] } ]}', "feature: names expecting type: int64"),
        ('{"examples": [ { "names": [ 10, { "test": 10 } ] } ]}',
         "names has element with unexpected JSON type: Object"),
        ('{"examples": [ { "names": [ [10], 20 ] } ]}', "names has element with unexpected JSON type: Array"),
        ('{"examples": [ { "names": [ 20, 18446744073709551603 ] } ]}', "Only int64_t is supported"),
    ]):
        case(f"{J}:ClassifyRegressRequestTest/JsonErrors/{i}/{verb}", "POST", _p(JE, verb), body=body,
             status=400, error=message)
    case(f"{J}:FillClassifyRegressRequestFromJson/no-examples/{verb}", "POST", _p(JE, verb),
         body=f'{{"signature_name": "{signature}"}}', status=400,
         error="key 'examples' is expected and was not found")
    case(f"{J}:FillClassifyRegressRequestFromJson/empty-examples/{verb}", "POST", _p(JE, verb),
         body=f'{{"signature_name": "{signature}", "examples": []}}', status=400,
         error="'examples' value is an empty array")
    case(f"{J}:FillClassifyRegressRequestFromJson/not-object/{verb}", "POST", _p(JE, verb),
         body="[]", status=400, error="Is not object")
case(f"{J}:ClassifyRegressnResultTest/JsonFromClassificationResult", "POST", _p(JE, "classify"),
     body={"signature_name": "vehicles", "examples": [{"s": [0.2, 0.7, 0.1]}, {"s": [0.7, 0.1, 0.2]}]},
     json_text='{"results": [[["car", 0.2], ["bike", 0.7], ["bus", 0.1]], '
               '[["car", 0.7], ["bike", 0.1], ["bus", 0.2]]]}')
case(f"{J}:ClassifyRegressnResultTest/JsonFromRegressionResult", "POST", _p(JE, "regress"),
     body={"signature_name": "echo_regress", "examples": [{"x": 0.2}, {"x": 0.9}, {"x": 1.0}]},
     json_text='{"results": [0.2, 0.9, 1.0]}')
case(f"{J}:ClassifyRegressnResultTest/JsonFromRegressionResultWithNonFinite", "POST", _p(JE, "regress"),
     body='{"signature_name": "echo_regress", "examples": '
          '[{"x": 0.2}, {"x": Infinity}, {"x": 1.0}, {"x": -Infinity}, {"x": NaN}]}',
     json_text='{"results": [0.2, Infinity, 1.0, -Infinity, NaN]}')
# MakeJsonFromStatus: the message is JSON-escaped, quotes included.
case(f"{J}:MakeJsonFromTensors/StatusError/double-quotes", "POST", JT,
     body='{"signature_name": "no \\"such\\" key", "instances": [1]}', status=400,
     error='Serving signature name: "no "such" key" not found in signature def', error_exact=True)
case(f"{J}:MakeJsonFromTensors/StatusError/single-quotes", "POST", JT,
     body='{"signature_name": "Bad key: \'key\'", "instances": [1]}', status=400,
     error='Serving signature name: "Bad key: \'key\'" not found in signature def', error_exact=True)

# ============================================================ tensorflow_model_server_test.py
M = "server_test"
case(f"{M}:testClassifyREST", "POST", _p("default", "classify"),
     body={"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}, json={"results": [[["", 3.0]]]})
case(f"{M}:testRegressREST", "POST", _p("default", "regress"),
     body={"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}, json={"results": [3.0]})
case(f"{M}:testPredictREST", "POST", _p("default"), body={"instances": [2.0, 3.0, 4.0]},
     json={"predictions": [3.0, 3.5, 4.0]})
case(f"{M}:testPredictColumnarREST", "POST", _p("default"), body={"inputs": [2.0, 3.0, 4.0]},
     json={"outputs": [3.0, 3.5, 4.0]})
case(f"{M}:testGetStatusREST", "GET", "/v1/models/default", json=status(123))
case(f"{M}:testGetModelMetadataREST", "GET", "/v1/models/default/metadata",
     json=metadata("default", 123, HALF_PLUS_TWO_SIGNATURES))
case(f"{M}:testPrometheusEndpoint", "GET", "/monitoring/prometheus/metrics", body_contains="# TYPE",
     content_type="text/plain")
case(f"{M}:testClassifyTf2/REST", "POST", _p("default_tf2", "classify"),
     body={"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}, json={"results": [[["", 3.0]]]})
case(f"{M}:testRegressTf2/REST", "POST", _p("default_tf2", "regress"),
     body={"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}, json={"results": [3.0]})
case(f"{M}:testPredictTf2/REST", "POST", _p("default_tf2"), body={"instances": [2.0]},
     json={"predictions": [3.0]})
# testGoodModelConfig (good_model_config.txt: half_plus_two and half_plus_three), over REST
case(f"{M}:testGoodModelConfig/half_plus_two", "POST", _p("half_plus_two"), body={"instances": [[2.0]]},
     json={"predictions": [[3.0]]})
case(f"{M}:testGoodModelConfig/half_plus_three", "POST", _p("half_plus_three"), body={"instances": [2.0]},
     json={"predictions": [4.0]})
case(f"{M}:testGoodModelConfig/half_plus_three-columnar", "POST", _p("half_plus_three"),
     body={"inputs": [2.0]}, json={"outputs": [4.0]})
case(f"{M}:testGoodModelConfig/half_plus_two-status", "GET", "/v1/models/half_plus_two", json=status(123))
case(f"{M}:testGoodModelConfig/half_plus_three-status", "GET", "/v1/models/half_plus_three",
     json=status(123))
case(f"{M}:testGoodModelConfig/half_plus_three-metadata", "GET", "/v1/models/half_plus_three/metadata",
     json=metadata("half_plus_three", 123, HALF_PLUS_THREE_SIGNATURES))
# Version policies and labels of a model config (model_server_config.proto)
case(f"{M}:ModelConfig/latest-status", "GET", f"/v1/models/{TWO_LATEST}", json=status(124))
case(f"{M}:ModelConfig/latest-old-version", "GET", f"/v1/models/{TWO_LATEST}/versions/123", status=404,
     error=f"Could not find version 123 of model {TWO_LATEST}", error_exact=True)
case(f"{M}:ModelConfig/latest-metadata", "GET", f"/v1/models/{TWO_LATEST}/metadata",
     json_contains={"model_spec": {"name": TWO_LATEST, "signature_name": "", "version": "124"}})
case(f"{M}:ModelConfig/specific-status", "GET", f"/v1/models/{TWO}/versions/124", status=404,
     error=f"Could not find version 124 of model {TWO}", error_exact=True)
case(f"{M}:ModelConfig/all-predict-123", "POST", _p(TWO_ALL, version=123), body=_ONE, json=_ONE_OUT)
case(f"{M}:ModelConfig/all-predict-124", "POST", _p(TWO_ALL, version=124), body=_ONE, json=_ONE_OUT)
case(f"{M}:ModelConfig/all-metadata-latest", "GET", f"/v1/models/{TWO_ALL}/metadata",
     json=metadata(TWO_ALL, 124, TWO_VERSIONS_SIGNATURES))
case(f"{M}:ModelConfig/label-stable-metadata", "GET", f"/v1/models/{TWO_ALL}/labels/stable/metadata",
     json_contains={"model_spec": {"name": TWO_ALL, "signature_name": "", "version": "123"}})
case(f"{M}:ModelConfig/label-canary-metadata", "GET", f"/v1/models/{TWO_ALL}/labels/canary/metadata",
     json_contains={"model_spec": {"name": TWO_ALL, "signature_name": "", "version": "124"}})
case(f"{M}:ModelConfig/label-canary-predict", "POST", _p(TWO_ALL, label="canary"), body=_ONE, json=_ONE_OUT)
case(f"{M}:ModelConfig/label-canary-regress", "POST", _p(TWO_ALL, "regress", label="canary"),
     body={"signature_name": "regress_x_to_y2", "examples": [{"x": 2.0}]}, json={"results": [4.0]})
case(f"{M}:ModelConfig/label-unknown-predict", "POST", _p(TWO_ALL, label="beta"), body=_ONE, status=400,
     error="Unrecognized servable version label: beta", error_exact=True)
case(f"{M}:ModelConfig/label-on-unlabelled-model", "POST", _p("default", label="stable"), body=_ONE,
     status=400, error="Unrecognized servable version label: stable", error_exact=True)
# Classify/regress errors of the classifier/regressor (classifier.cc, regressor.cc). The model
# server runs without --enable_signature_method_name_check (its default), so a signature is
# judged by its inputs/outputs, not its method_name.
case(f"{M}:Classify/default-signature-has-no-inputs", "POST", _p("default", "classify"),
     body={"examples": [{"x": 2.0}]}, status=400,
     error="No classification inputs found in SignatureDef")
case(f"{M}:Regress/default-signature-has-no-inputs", "POST", _p("default", "regress"),
     body={"examples": [{"x": 2.0}]}, status=400,
     error="No regression inputs found in SignatureDef")
case(f"{M}:Regress/unknown-signature", "POST", _p("default", "regress"),
     body={"signature_name": "nope", "examples": [{"x": 2.0}]}, status=400,
     error="No signature was found with the name: nope")
case(f"{M}:Regress/several-examples", "POST", _p("default", "regress"),
     body={"signature_name": "regress_x_to_y2", "examples": [{"x": 2.0}, {"x": 4.0}, {"x": -6.0}]},
     json={"results": [4.0, 5.0, 0.0]})
case(f"{M}:Regress/wrong-feature-type", "POST", _p("default", "regress"),
     body={"signature_name": "regress_x_to_y", "examples": [{"x": 2}]}, status=400)
case(f"{M}:Classify/context", "POST", _p("default", "classify"),
     body={"signature_name": "classify_x_to_y", "context": {"x2": 1.0}, "examples": [{"x": 2.0}, {"x": 4.0}]},
     json={"results": [[["", 3.0]], [["", 4.0]]]})

# ============================================================ g3doc/api_rest.md
A = "api_rest"
case(f"{A}:Example/status", "GET", "/v1/models/saved_model_half_plus_three", json=status(123))
case(f"{A}:Example/predict", "POST", _p("saved_model_half_plus_three"),
     body='{"instances": [1.0,2.0,5.0]}', json={"predictions": [3.5, 4.0, 5.5]})
case(f"{A}:Example/regress", "POST", _p("saved_model_half_plus_three", "regress"),
     body='{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}',
     json={"results": [3.5, 4.0]})
case(f"{A}:Example/not-found", "POST", "/v1/models/half:predict", body='{"instances": [1.0,5.0]}',
     status=404, json={"error": "Servable not found for request: Latest(half)"})
case(f"{A}:RowFormat/three-scalars", "POST", JT, body=sig("string", instances=["foo", "bar", "baz"]),
     json={"predictions": ["foo", "bar", "baz"]})
case(f"{A}:RowFormat/two-1x2-tensors", "POST", JT, body={"instances": [[[1, 2]], [[3, 4]]]},
     json={"predictions": [[[1, 2]], [[3, 4]]]})
_TSS_ROWS = [{"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
             {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}]
_TSS_COLUMNS = {"tag": ["foo", "bar"], "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
                "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]}
case(f"{A}:RowFormat/named-inputs", "POST", JT, body=sig("tag_signal_sensor", instances=_TSS_ROWS),
     json={"predictions": _TSS_ROWS})
case(f"{A}:ColumnarFormat/named-inputs", "POST", JT, body=sig("tag_signal_sensor", inputs=_TSS_COLUMNS),
     json={"outputs": _TSS_COLUMNS})
case(f"{A}:Binary/classify-b64-feature", "POST", _p(JE, "classify"),
     body={"signature_name": "parse_check_classify",
           "examples": [{"names": {"b64": "aGVsbG8="}, "query": "seaside"}]},
     json={"results": [[["", 10100.5]]]})
case(f"{A}:JsonConformance/nan-infinity-features", "POST", _p(JE, "regress"),
     body='{"signature_name": "parse_check_regress", '
          '"examples": [{"ratings": [ 1.5, -3.25, NaN, Infinity ]}]}',
     json={"results": [-1.25]})
case(f"{A}:JsonConformance/exponent", "POST", JT, body='{"signature_name": "float", "instances": [1e3, 2.5E-1]}',
     json_text='{"predictions": [1000.0, 0.25]}')
# The JSON mapping table: each dtype in and out.
for dtype, values, written in [
    ("bool", "[true, false]", "[true, false]"),
    ("int8", "[-128, 0, 127]", "[-128, 0, 127]"),
    ("uint8", "[0, 255]", "[0, 255]"),
    ("int16", "[-32768, 32767]", "[-32768, 32767]"),
    ("int32", "[-2147483648, 2147483647]", "[-2147483648, 2147483647]"),
    ("uint32", "[0, 4294967295]", "[0, 4294967295]"),
    ("int64", "[-9223372036854775808, 9007199254740993]", "[-9223372036854775808, 9007199254740993]"),
    ("uint64", "[18446744073709551615]", "[18446744073709551615]"),
    ("double", "[0.1, 1e+20, 2]", "[0.1, 1e+20, 2.0]"),
    ("string", '["Hello World!", "h\\u00e9llo"]', '["Hello World!", "h\\u00e9llo"]'),
]:
    case(f"{A}:JsonMapping/{dtype}", "POST", JT, body=f'{{"signature_name": "{dtype}", "instances": {values}}}',
         json_text=f'{{"predictions": {written}}}')
for dtype, value, message in [
    ("int32", "true", "JSON Value: true Type: True is not of expected type: int32"),
    ("int32", "1.5", "not of expected type: int32"),
    ("int8", "1.5", "not of expected type: int8"),
    ("bool", "1", "JSON Value: 1 Type: Number is not of expected type: bool"),
    ("string", "1", "JSON Value: 1 Type: Number is not of expected type: string"),
    ("float", '"1.0"', 'JSON Value: "1.0" Type: String is not of expected type: float'),
    ("int64", "18446744073709551615", "not of expected type: int64"),
    ("uint32", "-1", "not of expected type: uint32"),
]:
    case(f"{A}:JsonMapping/{dtype}-rejects-{value.replace(chr(34), 'quoted-')}", "POST", JT,
         body=f'{{"signature_name": "{dtype}", "instances": [{value}]}}', status=400, error=message)
# Types outside the table: AddValueToTensor answers Unimplemented (501).
case(f"{A}:JsonMapping/half-unsupported", "POST", JT, body='{"signature_name": "half", "instances": [1.0]}',
     status=501, error="to type: half")

# ============================================================ CORS (--rest_api_enable_cors_support)
C = "http_server"
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
         "Access-Control-Allow-Headers": "Content-Type"}
case(f"{C}:CORS/preflight", "OPTIONS", _p("default"),
     headers={"Origin": "http://example.com", "Access-Control-Request-Method": "POST"},
     expect_headers=_CORS, raw_body=b"", content_type=None)
case(f"{C}:CORS/preflight-https", "OPTIONS", "/v1/models/default/metadata",
     headers={"Origin": "https://example.com"}, expect_headers=_CORS, raw_body=b"", content_type=None)
case(f"{C}:CORS/preflight-without-origin", "OPTIONS", _p("default"), status=400,
     expect_headers=_CORS, raw_body=b"", content_type=None)
case(f"{C}:CORS/preflight-origin-not-http", "OPTIONS", _p("default"), headers={"Origin": "null"},
     status=400, expect_headers=_CORS, raw_body=b"", content_type=None)
case(f"{C}:CORS/predict", "POST", _p("default"), body={"instances": [2.0]},
     headers={"Origin": "http://example.com"}, expect_headers=_CORS, json={"predictions": [3.0]})
case(f"{C}:CORS/status", "GET", "/v1/models/default", expect_headers=_CORS, json=status(123))
case(f"{C}:CORS/error", "POST", _p("foo"), body={"instances": [2.0]}, status=404, expect_headers=_CORS,
     error="Servable not found for request: Latest(foo)", error_exact=True)
case(f"{C}:CORS/malformed", "GET", "/v1/foo", status=400, expect_headers=_CORS, error="Malformed request")
case(f"{C}:Predict/content-type", "POST", _p("default"), body={"instances": [2.0]},
     expect_headers={"Content-Type": "application/json"}, json={"predictions": [3.0]})
