"""Export → SavedModel → TF Serving's REST and gRPC contract, on loopback only.

One small model, fine-tuned here (LeNet-5 with a new 3-class head on real digits), is
exported once per module; the server tests share one server on free ports.
"""

import base64
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import forked_zoo  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import zoo  # noqa: E402
from zoo.errors import ZooError  # noqa: E402
from zoo.data.digits import load_digits_28  # noqa: E402
from zoo.runs import save_run  # noqa: E402
from zoo.serving import client, export as export_module  # noqa: E402
from zoo.serving.server import ModelServer  # noqa: E402
from zoo.serving.store import ModelStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["zero", "one", "two"]
NAME = "digits3"
MAX_BODY = 1024 * 1024


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits_28()
    keep = labels < 3
    return images[keep], labels[keep]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, digits):
    """A model fine-tuned in the test: LeNet-5, new 3-class head, a few steps of fit."""
    keras.utils.set_random_seed(0)
    images, labels = digits
    model = zoo.create("lenet5", weights=None, num_classes=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images[:240], labels[:240], epochs=2, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("run")
    save_run(path, model, CLASSES, config={"model": "lenet5", "image_size": [28, 28]})
    return path


@pytest.fixture(scope="module")
def model(run_dir):
    return zoo.load_run(run_dir).model


@pytest.fixture(scope="module")
def base(tmp_path_factory, run_dir):
    base = tmp_path_factory.mktemp("models")
    path = zoo.export(run_dir, base, NAME)
    assert path == base / NAME / "1"
    return base


@pytest.fixture(scope="module")
def export_dir(base):
    return base / NAME / "1"


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(str(export_dir))


@pytest.fixture(scope="module")
def server(base):
    with ModelServer(base, port=0, grpc_port=0, poll_seconds=0, max_body_bytes=MAX_BODY) as server:
        yield server


@pytest.fixture(scope="module")
def batch(digits):
    images, _ = digits
    return images[240:246]  # held out from the fit


def encode(image, fmt, size=None):
    pil = Image.fromarray(image)
    if size is not None:
        pil = pil.resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    pil.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def b64(data):
    return base64.b64encode(data).decode("ascii")


def call(server, method, path, body=None, raw=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def keras_probabilities(model, images):
    images = np.asarray(images, dtype="uint8")
    return np.asarray(model([images] if isinstance(model.input, list) else images, training=False))


def decoded_like_the_graph(data, size=(28, 28)):
    """Decode and resize with the ops the bytes signature uses, outside the export:
    zoo's one resize is bilinear, antialiased when it shrinks by 2x or more (here the
    JPEGs are under 2x the target, so neither reduced decoding nor antialiasing)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    shrink = max(image.shape[0] / size[0], image.shape[1] / size[1])
    image = tf.image.resize(image, size, method="bilinear", antialias=shrink >= 2)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8).numpy()


# ------------------------------------------------------------------------------ export
def test_export_layout_and_metadata(base, export_dir, run_dir):
    assert sorted(p.name for p in (base / NAME).iterdir()) == ["1"]
    assert (export_dir / "saved_model.pb").is_file() and (export_dir / "variables").is_dir()
    meta = export_module.read_metadata(export_dir)
    assert meta["name"] == NAME and meta["model"] == "lenet5"
    assert meta["classes"] == CLASSES and meta["input_size"] == [28, 28]
    assert meta["zoo_version"] == zoo.__version__
    assert meta["source_run"] == str(Path(run_dir).resolve())
    assert set(meta["signatures"]) == {"serving_default", "serving_uint8", "serving_bytes", "top_k", "explain",
                                      "classify"}


def test_signatures_match_keras_for_arrays(loaded, model, batch):
    expected = keras_probabilities(model, batch)
    floats = loaded.signatures["serving_default"](images=tf.constant(batch, tf.float32))
    uint8 = loaded.signatures["serving_uint8"](images=tf.constant(batch, tf.uint8))
    for outputs in (floats, uint8):
        assert set(outputs) == {"probabilities", "class_ids"}
        assert np.max(np.abs(outputs["probabilities"].numpy() - expected)) < 1e-4
        np.testing.assert_array_equal(outputs["class_ids"].numpy(), expected.argmax(-1))


def test_bytes_signature_matches_keras_for_png_and_jpeg(loaded, model, batch):
    # PNG at the model's size is lossless: the graph must give exactly Keras' numbers.
    png = [encode(image, "PNG") for image in batch]
    outputs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(png))
    assert np.max(np.abs(outputs["probabilities"].numpy() - keras_probabilities(model, batch))) < 1e-4
    # JPEG at another size: compare with Keras fed the same decoding and resize, so the
    # check is about the graph, not JPEG loss.
    jpeg = [encode(image, "JPEG", size=(45, 37)) for image in batch]
    outputs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(jpeg))
    reference = keras_probabilities(model, np.stack([decoded_like_the_graph(d) for d in jpeg]))
    assert np.max(np.abs(outputs["probabilities"].numpy() - reference)) < 1e-4
    np.testing.assert_array_equal(outputs["class_ids"].numpy(), reference.argmax(-1))


def test_top_k_signature_gives_class_names_and_scores(loaded, model, batch):
    jpeg = [encode(image, "JPEG") for image in batch]
    outputs = loaded.signatures["top_k"](image_bytes=tf.constant(jpeg))
    reference = keras_probabilities(model, np.stack([decoded_like_the_graph(d) for d in jpeg]))
    order = np.argsort(-reference, axis=-1)
    assert outputs["classes"].shape == (len(batch), 3)  # k = min(5, classes)
    names = [[c.decode() for c in row] for row in outputs["classes"].numpy()]
    assert names == [[CLASSES[i] for i in row] for row in order]
    np.testing.assert_array_equal(outputs["class_ids"].numpy(), order)
    assert np.max(np.abs(outputs["scores"].numpy() - np.sort(reference)[:, ::-1])) < 1e-4


def _saved_model_cli(*args):
    """TensorFlow's `saved_model_cli ARGS` (its module, forked from the test process's
    fork server: tests/helpers/forked_zoo.py)."""
    return forked_zoo.python_run(["-m", "tensorflow.python.tools.saved_model_cli", *args], timeout=120, check=True)


@pytest.mark.large
def test_saved_model_cli_show_and_run(export_dir, loaded, tmp_path):
    show = _saved_model_cli("show", "--dir", export_dir, "--all").stdout
    sections = {block.split("']")[0]: block for block in show.split("signature_def['")[1:]}
    assert {"serving_default", "serving_uint8", "serving_bytes", "top_k"} <= set(sections)
    assert "inputs['images']" in sections["serving_default"] and "DT_FLOAT" in sections["serving_default"]
    assert "DT_UINT8" in sections["serving_uint8"]
    for name in ("serving_bytes", "top_k"):
        assert "inputs['image_bytes']" in sections[name] and "dtype: DT_STRING" in sections[name]
    assert "outputs['probabilities']" in sections["serving_default"]
    assert "outputs['class_ids']" in sections["serving_default"] and "DT_INT64" in sections["serving_default"]
    assert "outputs['classes']" in sections["top_k"]
    assert "output_0" not in show

    images = np.random.default_rng(0).uniform(0, 255, (2, 28, 28, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    _saved_model_cli("run", "--dir", export_dir, "--tag_set", "serve", "--signature_def", "serving_default",
                     "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", tmp_path / "out", "--overwrite")
    got = np.load(tmp_path / "out" / "probabilities.npy")
    expected = loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"]
    assert got.shape == (2, 3) and np.max(np.abs(got - expected.numpy())) < 1e-6


def test_export_checks_arguments(tmp_path, run_dir):
    with pytest.raises(ValueError, match="name"):
        zoo.export(run_dir, tmp_path, "12")
    with pytest.raises(ValueError, match="name"):
        zoo.export(run_dir, tmp_path, "../x")
    with pytest.raises(ValueError, match="version"):
        zoo.export(run_dir, tmp_path, "m", version=0)
    with pytest.raises(ZooError, match="model_or_run_dir"):
        zoo.export("not-a-model", tmp_path, "m")
    (tmp_path / "m" / "3").mkdir(parents=True)
    with pytest.raises(ZooError, match="never overwritten"):
        zoo.export(run_dir, tmp_path, "m", version=3)


# ------------------------------------------------------------------------------- REST
def test_status_and_metadata(server):
    status, body = call(server, "GET", f"/v1/models/{NAME}")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]}
    assert call(server, "GET", f"/v1/models/{NAME}/versions/1")[0] == 200
    status, body = call(server, "GET", f"/v1/models/{NAME}/versions/1/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    inputs = signatures["serving_bytes"]["inputs"]["image_bytes"]
    assert inputs["dtype"] == "DT_STRING" and inputs["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert set(signatures["top_k"]["outputs"]) == {"classes", "scores", "class_ids"}


def test_predict_row_format(server, model, batch):
    status, body = call(server, "POST", f"/v1/models/{NAME}:predict", {"instances": batch.tolist()})
    assert status == 200 and list(body) == ["predictions"]
    rows = body["predictions"]
    assert len(rows) == len(batch) and set(rows[0]) == {"probabilities", "class_ids"}
    expected = keras_probabilities(model, batch)
    assert np.max(np.abs(np.array([r["probabilities"] for r in rows]) - expected)) < 1e-4
    assert [r["class_ids"] for r in rows] == expected.argmax(-1).tolist()
    # Rows may also name the input, as the documentation's multi-input example does.
    named = {"instances": [{"images": image} for image in batch[:2].tolist()]}
    status, body2 = call(server, "POST", f"/v1/models/{NAME}/versions/1:predict", named)
    assert status == 200 and [r["class_ids"] for r in body2["predictions"]] == [r["class_ids"] for r in rows[:2]]
    assert np.allclose([r["probabilities"] for r in body2["predictions"]], expected[:2], atol=1e-4)


def test_predict_columnar_format(server, model, batch):
    for inputs in (batch.tolist(), {"images": batch.tolist()}):
        status, body = call(server, "POST", f"/v1/models/{NAME}:predict",
                            {"signature_name": "serving_uint8", "inputs": inputs})
        assert status == 200 and list(body) == ["outputs"]
        assert set(body["outputs"]) == {"probabilities", "class_ids"}
        probabilities = np.array(body["outputs"]["probabilities"])
        assert probabilities.shape == (len(batch), 3)
        assert np.max(np.abs(probabilities - keras_probabilities(model, batch))) < 1e-4


def test_predict_b64_images(server, model, batch):
    png = [b64(encode(image, "PNG")) for image in batch[:3]]
    expected = keras_probabilities(model, batch[:3])
    row = {"signature_name": "serving_bytes", "instances": [{"b64": p} for p in png]}
    status, body = call(server, "POST", f"/v1/models/{NAME}:predict", row)
    assert status == 200
    assert np.max(np.abs(np.array([r["probabilities"] for r in body["predictions"]]) - expected)) < 1e-4
    named = {"signature_name": "serving_bytes", "instances": [{"image_bytes": {"b64": p}} for p in png]}
    assert call(server, "POST", f"/v1/models/{NAME}:predict", named)[1] == body
    columnar = {"signature_name": "serving_bytes", "inputs": {"image_bytes": [{"b64": p} for p in png]}}
    status, body = call(server, "POST", f"/v1/models/{NAME}:predict", columnar)
    assert status == 200 and np.max(np.abs(np.array(body["outputs"]["probabilities"]) - expected)) < 1e-4
    status, body = call(server, "POST", f"/v1/models/{NAME}:predict",
                        {"signature_name": "top_k", "instances": [{"b64": p} for p in png]})
    assert status == 200
    assert [r["classes"][0] for r in body["predictions"]] == [CLASSES[i] for i in expected.argmax(-1)]


BAD_REQUESTS = {
    "malformed json": ("POST", f"/v1/models/{NAME}:predict", b'{"instances": [1, 2', 400),
    "not an object": ("POST", f"/v1/models/{NAME}:predict", b"[1, 2]", 400),
    "no instances or inputs": ("POST", f"/v1/models/{NAME}:predict", {"signature_name": "top_k"}, 400),
    "unknown model": ("POST", "/v1/models/nope:predict", {"instances": [1.0]}, 404),
    "unknown model status": ("GET", "/v1/models/nope", None, 404),
    "unknown version": ("POST", f"/v1/models/{NAME}/versions/7:predict", {"instances": [1.0]}, 404),
    "unknown version metadata": ("GET", f"/v1/models/{NAME}/versions/7/metadata", None, 404),
    "unknown signature": ("POST", f"/v1/models/{NAME}:predict", {"signature_name": "nope", "instances": [1.0]}, 400),
    "wrong dtype": ("POST", f"/v1/models/{NAME}:predict", {"instances": [[[["a"] * 3] * 28] * 28]}, 400),
    "wrong dtype for bytes": ("POST", f"/v1/models/{NAME}:predict", {"signature_name": "top_k", "instances": [1.5]}, 400),
    "uint8 not a whole number": ("POST", f"/v1/models/{NAME}:predict",
                                 {"signature_name": "serving_uint8", "instances": [[[[3.5] * 3] * 28] * 28]}, 400),
    "wrong shape": ("POST", f"/v1/models/{NAME}:predict", {"instances": [[[0.0] * 3] * 28]}, 400),
    "ragged": ("POST", f"/v1/models/{NAME}:predict", {"inputs": [[1.0, 2.0], [3.0]]}, 400),
    "bad base64": ("POST", f"/v1/models/{NAME}:predict",
                   {"signature_name": "serving_bytes", "instances": [{"b64": "not base64!"}]}, 400),
    "not an image": ("POST", f"/v1/models/{NAME}:predict",
                     {"signature_name": "serving_bytes", "instances": [{"b64": b64(b"hello")}]}, 400),
    "wrong input name": ("POST", f"/v1/models/{NAME}:predict", {"inputs": {"pixels": [1.0]}}, 400),
    "unknown route": ("GET", "/v2/anything", None, 404),
    "classify verb": ("POST", f"/v1/models/{NAME}:classify", {"examples": []}, 400),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, batch, case):
    method, path, body, expected = BAD_REQUESTS[case]
    raw = body if isinstance(body, bytes) else None
    status, reply = call(server, method, path, None if raw else body, raw=raw)
    assert status == expected, reply
    assert set(reply) == {"error"} and reply["error"]
    status, _ = call(server, "POST", f"/v1/models/{NAME}:predict", {"instances": batch[:1].tolist()})
    assert status == 200


def test_error_messages_name_the_field(server):
    _, reply = call(server, "POST", f"/v1/models/{NAME}:predict", BAD_REQUESTS["wrong shape"][2])
    assert "images" in reply["error"] and "[N, 28, 28, 3]" in reply["error"] and "Received: shape=[1, 28, 3]" in reply["error"]
    _, reply = call(server, "POST", f"/v1/models/{NAME}:predict", BAD_REQUESTS["not an image"][2])
    assert "Unknown image file format" in reply["error"]


def test_over_size_body_gets_413(server, batch):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = b'{"instances": [' + b"0.0, " * (MAX_BODY // 5 + 10) + b"0.0]}"
    connection.request("POST", f"/v1/models/{NAME}:predict", body=body)
    response = connection.getresponse()
    assert response.status == 413
    assert "limit" in json.loads(response.read())["error"]
    connection.close()
    status, _ = call(server, "POST", f"/v1/models/{NAME}:predict", {"instances": batch[:1].tolist()})
    assert status == 200


def test_concurrent_clients(server, batch):
    """8 clients x 200 requests on kept-alive connections: no failures."""
    failures, done = [], []
    body = json.dumps({"instances": batch[:1].tolist()}).encode()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            for _ in range(200):
                connection.request("POST", f"/v1/models/{NAME}:predict", body=body)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200 or len(json.loads(payload)["predictions"]) != 1:
                    failures.append((response.status, payload[:200]))
                done.append(1)
        except Exception as error:  # noqa: BLE001  (count it, do not kill the thread silently)
            failures.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == [] and len(done) == 1600


# ----------------------------------------------------------------------------- client
def test_client_predict(server, tmp_path, model, batch):
    png = tmp_path / "digit.png"
    png.write_bytes(encode(batch[0], "PNG"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    results = client.predict(server.rest_url, NAME, [str(png), str(tmp_path / "missing.png"), str(broken)], top=2)
    expected = keras_probabilities(model, batch[:1])[0]
    assert results[0]["image"] == str(png)
    first = results[0]["predictions"]
    assert len(first) == 2 and first[0]["label"] == CLASSES[expected.argmax()]
    assert first[0]["class_id"] == int(expected.argmax())
    assert abs(first[0]["probability"] - float(expected.max())) < 1e-4
    assert set(results[1]) == {"image", "error"} and "missing.png" in results[1]["error"]
    assert set(results[2]) == {"image", "error"} and "Unknown image file format" in results[2]["error"]
    with pytest.raises(ZooError, match="Servable not found"):
        client.predict(server.rest_url, "nope", [str(png)])


# ------------------------------------------------------------------------------- gRPC
def _stub(server):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc_target)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def test_grpc_predict_matches_rest(server, batch):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(batch.astype("float32")))
    response = _stub(server).Predict(request, timeout=60)
    assert response.model_spec.version.value == 1
    grpc_probabilities = tf.make_ndarray(response.outputs["probabilities"])
    _, body = call(server, "POST", f"/v1/models/{NAME}:predict", {"inputs": batch.tolist()})
    np.testing.assert_array_equal(grpc_probabilities, np.array(body["outputs"]["probabilities"], dtype="float32"))
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["class_ids"]), body["outputs"]["class_ids"])

    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.model_spec.version.value = 1
    request.model_spec.signature_name = "top_k"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([encode(image, "PNG") for image in batch]))
    request.output_filter.append("classes")
    response = _stub(server).Predict(request, timeout=60)
    assert list(response.outputs) == ["classes"]
    top = [row[0].decode() for row in tf.make_ndarray(response.outputs["classes"])]
    assert top == [CLASSES[i] for i in body["outputs"]["class_ids"]]


def test_classify_on_tf_examples_matches_top_k_over_rest_and_grpc(server, batch):
    """TF Serving's classification API on a zoo export: serialized tf.Examples whose
    `image/encoded` feature holds JPEG bytes give the classes and scores `top_k` gives."""
    from tensorflow_serving.apis import classification_pb2, inference_pb2

    jpegs = [encode(image, "JPEG") for image in batch[:3]]
    status, top = call(server, "POST", f"/v1/models/{NAME}:predict",
                       {"signature_name": "top_k", "instances": [{"b64": b64(j)} for j in jpegs]})
    assert status == 200
    expected = [[[c, s] for c, s in zip(row["classes"], row["scores"])] for row in top["predictions"]]
    status, classified = call(server, "POST", f"/v1/models/{NAME}:classify",
                              {"signature_name": "classify",
                               "examples": [{"image/encoded": {"b64": b64(j)}} for j in jpegs]})
    assert status == 200, classified
    assert classified == {"results": expected}
    # The default signature takes `images`, so :classify without a name is refused as TF Serving refuses it.
    status, reply = call(server, "POST", f"/v1/models/{NAME}:classify", {"examples": [{"image/encoded": "x"}]})
    assert status == 400 and "No classification inputs found in SignatureDef" in reply["error"]

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = NAME
    request.model_spec.signature_name = "classify"
    for jpeg in jpegs:
        request.input.example_list.examples.add().features.feature["image/encoded"].bytes_list.value.append(jpeg)
    response = _stub(server).Classify(request, timeout=60)
    assert response.model_spec.version.value == 1
    got = [[[c.label, c.score] for c in row.classes] for row in response.result.classifications]
    assert [[label for label, _ in row] for row in got] == [[label for label, _ in row] for row in expected]
    np.testing.assert_allclose([[score for _, score in row] for row in got],
                               [[score for _, score in row] for row in expected], rtol=1e-6)

    multi = inference_pb2.MultiInferenceRequest()
    task = multi.tasks.add()
    task.model_spec.name = NAME
    task.model_spec.signature_name = "classify"
    task.method_name = "tensorflow/serving/classify"
    multi.input.CopyFrom(request.input)
    results = _stub(server).MultiInference(multi, timeout=60).results
    assert len(results) == 1 and results[0].classification_result == response.result


def test_grpc_metadata_and_status(server):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc
    import grpc

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = NAME
    request.metadata_field.append("signature_def")
    response = _stub(server).GetModelMetadata(request, timeout=60)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    bytes_input = signature_map.signature_def["serving_bytes"].inputs["image_bytes"]
    assert bytes_input.dtype == tf.string.as_datatype_enum
    assert set(signature_map.signature_def["top_k"].outputs) == {"classes", "scores", "class_ids"}

    status_stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.grpc_target))
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = NAME
    status = status_stub.GetModelStatus(status_request, timeout=60).model_version_status[0]
    assert status.version == 1 and status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_grpc_errors_keep_serving(server, batch):
    import grpc
    from tensorflow_serving.apis import predict_pb2

    def predict(name=NAME, version=None, signature="", inputs=None):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for key, value in (inputs or {"images": batch[:1].astype("float32")}).items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        return _stub(server).Predict(request, timeout=60)

    cases = [
        (dict(name="nope"), grpc.StatusCode.NOT_FOUND),
        (dict(version=9), grpc.StatusCode.NOT_FOUND),
        (dict(signature="nope"), grpc.StatusCode.FAILED_PRECONDITION),  # TF Serving's code for it
        (dict(inputs={"images": batch[:1]}), grpc.StatusCode.INVALID_ARGUMENT),  # uint8 to float
        (dict(inputs={"images": np.zeros((1, 5, 5, 3), "float32")}), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(signature="serving_bytes", inputs={"image_bytes": [b"junk"]}), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for kwargs, code in cases:
        with pytest.raises(grpc.RpcError) as raised:
            predict(**kwargs)
        assert raised.value.code() == code, kwargs
        assert raised.value.details()
    assert tf.make_ndarray(predict().outputs["probabilities"]).shape == (1, 3)


# ------------------------------------------------------------------ versions and kill -9
KILLED_EXPORT = textwrap.dedent(
    """
    import sys, time
    import zoo.serving.export as export

    if sys.argv[4] == "before-rename":
        def stall(tmp, model_dir, version):
            print("WRITTEN", tmp, flush=True)
            time.sleep(600)

        export._publish = stall
    export.export(sys.argv[1], sys.argv[2], sys.argv[3])
    """
)


def _served_version(server):
    return call(server, "GET", f"/v1/models/{NAME}")[1]["model_version_status"][0]["version"]


def _wait_for_version(server, version, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if _served_version(server) == version:
            return
        time.sleep(0.2)
    pytest.fail(f"version {version} was not served within {seconds} s")


def _kill_export(run_dir, base, when):
    """Start an export in a subprocess and SIGKILL it; returns its temporary directory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = forked_zoo.python_popen(["-c", KILLED_EXPORT, run_dir, base, NAME, when], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, env=env)
    try:
        if when == "before-rename":
            line = process.stdout.readline()  # the whole SavedModel is written, not renamed
            assert line.startswith("WRITTEN"), line
            temporary = Path(line.split()[1])
            assert (temporary / "saved_model.pb").is_file()
        else:  # while TensorFlow is writing the SavedModel
            deadline = time.time() + 120
            while not list((base / NAME).glob(".export-*")):
                assert process.poll() is None and time.time() < deadline, "export never started"
                time.sleep(0.05)
            time.sleep(0.3)
            temporary = next((base / NAME).glob(".export-*"))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return temporary


@pytest.mark.large
@pytest.mark.parametrize("when", ["while-writing", "before-rename"])
def test_kill_9_mid_export_leaves_no_version_and_server_keeps_serving(tmp_path, run_dir, export_dir, batch, when):
    base = tmp_path / "models"
    shutil.copytree(export_dir, base / NAME / "1")
    with ModelServer(base, port=0, grpc_port=None, poll_seconds=0.2) as server:
        temporary = _kill_export(run_dir, base, when)
        assert temporary.exists() and not temporary.name.isdigit()
        assert export_module.versions(base / NAME) == [1]
        assert sorted(p.name for p in (base / NAME).iterdir() if not p.name.startswith(".")) == ["1"]
        time.sleep(0.6)  # a few polls: the temporary directory must not be taken for a version
        assert _served_version(server) == "1"
        status, body = call(server, "POST", f"/v1/models/{NAME}:predict", {"instances": batch[:1].tolist()})
        assert status == 200 and len(body["predictions"]) == 1
        if when == "while-writing":
            return

        # The next export clears the dead one's leftovers and is served without a restart.
        assert zoo.export(run_dir, base, NAME) == base / NAME / "2"
        assert not temporary.exists()
        _wait_for_version(server, "2")
        assert call(server, "GET", f"/v1/models/{NAME}/versions/2/metadata")[0] == 200
        assert call(server, "GET", f"/v1/models/{NAME}/versions/1")[0] == 404  # only the highest
        # Deleting the served version rolls back to the highest one left.
        shutil.rmtree(base / NAME / "2")
        _wait_for_version(server, "1")


def test_export_of_a_non_classifier(tmp_path):
    """A model that is not a classifier (an image-to-image net, as an autoencoder or a
    style transfer is) gets serving_default: inputs -> outputs."""
    inputs = keras.Input((8, 8, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    outputs = keras.layers.Conv2D(3, 3, padding="same", name="decoder")(x)
    net = keras.Model(inputs, outputs, name="tiny_image_to_image")
    path = zoo.export(net, tmp_path, "i2i")
    signatures = tf.saved_model.load(str(path)).signatures
    assert list(signatures) == ["serving_default"]
    images = np.random.default_rng(0).integers(0, 255, (2, 8, 8, 3), dtype="uint8")
    got = signatures["serving_default"](inputs=tf.constant(images))["outputs"].numpy()
    assert np.max(np.abs(got - np.asarray(net(images)))) < 1e-5
    meta = export_module.read_metadata(path)
    assert meta["task"] == "other" and meta["classes"] is None


def test_export_of_a_keras_file_and_of_a_registry_model_of_another_task(tmp_path, run_dir, model, batch):
    """A `.keras` file exports as its model would (its task from the registry by the
    model's name); a registry name exports with its spec's task."""
    from zoo.runs import MODEL_FILE

    path = zoo.export(Path(run_dir) / MODEL_FILE, tmp_path, "from-file")
    meta = export_module.read_metadata(path)
    assert meta["task"] == "image-classification" and meta["model"] == "lenet5" and meta["source_run"] is None
    assert meta["classes"] == ["0", "1", "2"]  # a file holds no class names
    assert set(meta["signatures"]) == {"serving_default", "serving_uint8", "serving_bytes", "top_k", "explain",
                                      "classify"}
    served = tf.saved_model.load(str(path)).signatures["serving_uint8"](images=tf.constant(batch, tf.uint8))
    assert np.max(np.abs(served["probabilities"].numpy() - keras_probabilities(model, batch))) < 1e-4

    path = zoo.export("conv_autoencoder", tmp_path, "autoencoder")
    meta = export_module.read_metadata(path)
    assert meta["task"] == "autoencoder" and list(meta["signatures"]) == ["serving_default"]
    assert list(tf.saved_model.load(str(path)).signatures) == ["serving_default"]


# -------------------------------------------------------------------------------- CLI
def test_cli_does_not_import_tensorflow():
    code = (
        "import argparse, sys; from zoo.serving.cli import add_commands; "
        "p = argparse.ArgumentParser(); add_commands(p.add_subparsers()); "
        "a = p.parse_args(['serve', 'models', '--port', '9000']); "
        "assert a.port == 9000 and a.grpc_port == 8500 and a.host == '127.0.0.1'; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


def test_cli_export_prints_path_docker_and_curl(tmp_path, run_dir, capsys):
    import argparse

    from zoo.serving.cli import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["export", str(run_dir), "--name", "flowers", "--out", str(tmp_path), "--version", "4"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"to {tmp_path / 'flowers' / '4'}" in out
    assert f'-v "{tmp_path / "flowers"}:/models/flowers" -e MODEL_NAME=flowers tensorflow/serving' in out
    assert "curl" in out and ":predict" in out and '"b64"' in out


def test_an_export_holds_each_variable_once(tmp_path):
    import keras

    from zoo.architectures.preprocessing import Preprocess

    inputs = keras.Input((28, 28, 3), dtype="uint8")
    x = keras.layers.Flatten()(Preprocess("unit")(inputs))
    x = keras.layers.Dense(1024, activation="relu")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head_predictions")(x)
    model = keras.Model(inputs, outputs)
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    version = export_module.export(model, tmp_path, "once", classes=["a", "b", "c"])
    stored = sum(p.stat().st_size for p in (Path(version) / "variables").iterdir())
    assert weight_bytes <= stored < 1.05 * weight_bytes, (stored, weight_bytes)


def _raw_request(server, data, timeout=30):
    """Send `data` as it is and return `(status, headers and body text)`."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    reply = b"".join(chunks).decode("latin-1")
    status = int(reply.split(" ", 2)[1]) if reply.startswith("HTTP/") else None
    return status, reply


def _post(path, body, length=None):
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n").encode("latin-1")
    return head + body


HOSTILE = {
    "HEAD": b"HEAD /v1/models/" + NAME.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "OPTIONS": b"OPTIONS /v1/models/" + NAME.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "an unknown method": b"BREW /v1/models/" + NAME.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "deeply nested JSON": _post(f"/v1/models/{NAME}:predict", b'{"instances": ' + b"[" * 100000 + b"]" * 100000 + b"}"),
    "a 5000-digit integer": _post(f"/v1/models/{NAME}:predict", b'{"instances": [' + b"9" * 5000 + b"]}"),
    "a non-ASCII byte in the path": _post(f"/v1/models/{NAME}\xff:predict", b'{"instances": [1]}'),
    "a non-ASCII digit in Content-Length": _post(f"/v1/models/{NAME}:predict", b'{"instances": [1]}', "\xb2"),
    "a non-ASCII digit in the version": b"GET /v1/models/" + NAME.encode() + b"/versions/\xd9\xa1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "a malformed request line": b"GET\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_requests_get_a_4xx_json_error_and_the_server_keeps_serving(server, batch, case):
    status, reply = _raw_request(server, HOSTILE[case])
    assert status is not None and 400 <= status < 500, reply[:500]
    if case not in ("HEAD", "OPTIONS"):  # a HEAD answer and a CORS preflight's have no body
        body = reply.split("\r\n\r\n", 1)[1]
        assert "application/json" in reply.split("\r\n\r\n", 1)[0]
        assert set(json.loads(body)) == {"error"}, body[:300]
    status, _ = call(server, "POST", f"/v1/models/{NAME}:predict", {"instances": batch[:1].tolist()})
    assert status == 200


def _rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.parametrize("claim", ["one value", "tensor_content", "negative"])
def test_grpc_shape_claims_are_checked_before_anything_is_allocated(server, batch, claim):
    import grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    dims = [1, 500_000_000] if claim != "negative" else [1, -5]
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]))
    if claim == "tensor_content":
        proto.tensor_content = b"\0" * 16
    else:
        proto.float_val.append(1.0)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["images"].CopyFrom(proto)
    assert request.ByteSize() < 100
    before = _rss_mib()
    with pytest.raises(grpc.RpcError) as caught:
        _stub(server).Predict(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "images" in caught.value.details()
    assert _rss_mib() - before < 200
    # ... and the server still answers.
    ok = predict_pb2.PredictRequest()
    ok.model_spec.name = NAME
    ok.inputs["images"].CopyFrom(tf.make_tensor_proto(batch[:1].astype("float32")))
    assert _stub(server).Predict(ok, timeout=60).outputs["probabilities"].tensor_shape.dim[0].size == 1


def _claiming(fmt, width, height):
    """A few bytes of `fmt` whose header claims `width` x `height` pixels."""
    import struct
    import zlib

    if fmt == "PNG":
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))
    if fmt == "GIF":
        return b"GIF89a" + struct.pack("<HH", width, height) + b"\0" * 64
    if fmt == "BMP":
        return b"BM" + b"\0" * 16 + struct.pack("<ii", width, -height) + b"\0" * 64
    # JPEG: a real small JPEG with the frame header's size rewritten.
    data = bytearray(encode(np.zeros((16, 16, 3), "uint8"), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_pixel_bombs_are_refused_inside_the_exported_graph(server, loaded, batch, fmt):
    import tensorflow as tf

    bomb = _claiming(fmt, 23000, 23000 if fmt != "JPEG" else 23000)
    assert len(bomb) < 10_000
    before = _rss_mib()
    status, reply = call(server, "POST", f"/v1/models/{NAME}:predict",
                         {"signature_name": "serving_bytes", "instances": [{"b64": b64(bomb)}] * 4})
    assert status == 400 and "claims more pixels" in reply["error"], reply
    assert _rss_mib() - before < 200
    # The SavedModel itself refuses it (what a real TF Serving runs).
    with pytest.raises(tf.errors.InvalidArgumentError, match="claims more pixels"):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([bomb]))
    # Real images of every format still go through.
    good = [encode(batch[0], f) for f in ("PNG", "JPEG", "GIF", "BMP")]
    status, reply = call(server, "POST", f"/v1/models/{NAME}:predict",
                         {"signature_name": "serving_bytes", "instances": [{"b64": b64(g)} for g in good]})
    assert status == 200 and len(reply["predictions"]) == 4


def test_a_version_copied_in_slowly_is_retried_until_it_loads(tmp_path, export_dir):
    import shutil

    base = tmp_path / "models"
    shutil.copytree(export_dir, base / NAME / "1")
    store = ModelStore(base, poll_seconds=0)
    store.start()
    assert store.get(NAME).version == 1
    partial = base / NAME / "2"
    partial.mkdir()
    shutil.copy(export_dir / "saved_model.pb", partial)
    (partial / "variables").mkdir()
    assert store.refresh() == []  # half there: fails to load, v1 keeps serving
    assert store.get(NAME).version == 1
    for source in (export_dir / "variables").iterdir():  # the rest arrives later, file by file
        shutil.copy(source, partial / "variables")
    for extra in ("assets", "assets.extra", "fingerprint.pb"):
        if (export_dir / extra).is_dir():
            shutil.copytree(export_dir / extra, partial / extra)
        elif (export_dir / extra).exists():
            shutil.copy(export_dir / extra, partial)
    assert store.refresh() == [f"{NAME}/2"]
    assert store.get(NAME).version == 2
    store.stop()


def test_connections_are_capped_and_the_rest_get_a_503(base, batch):
    import socket

    with ModelServer(base, port=0, grpc_port=None, poll_seconds=0, max_connections=8) as capped:
        threads_before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", capped.port), timeout=10) for _ in range(40)]
        try:
            time.sleep(0.5)
            assert threading.active_count() - threads_before <= 8
            refused = 0
            for conn in idle[8:]:
                reply = conn.recv(4096).decode()
                if reply.startswith("HTTP/1.1 503"):
                    refused += 1
                    assert '"error"' in reply and "application/json" in reply
            assert refused == 32
        finally:
            for conn in idle:
                conn.close()
        time.sleep(0.5)
        status, _ = call(capped, "POST", f"/v1/models/{NAME}:predict", {"instances": batch[:1].tolist()})
        assert status == 200


def test_a_photo_scores_the_same_locally_served_and_in_training(server, run_dir, tmp_path):
    """One decode and resize everywhere: `zoo predict RUN`, `zoo predict --url` (the
    exported graph) and the tf.data pipeline agree on real photos of every size."""
    import skimage.data

    import zoo
    import zoo.data
    from zoo.data.images import load_like_the_pipeline

    paths = []
    for name, image in (("chelsea", skimage.data.chelsea()), ("astronaut", skimage.data.astronaut()),
                        ("coffee", skimage.data.coffee())):
        for fmt in ("JPEG", "PNG"):
            path = tmp_path / f"{name}.{fmt.lower()}"
            Image.fromarray(image).save(path, fmt)
            paths.append(str(path))
    local = zoo.load_run(run_dir).predict(paths, top=3)
    served = client.predict(server.rest_url, NAME, paths, top=3)
    for mine, theirs in zip(local, served):
        for a, b in zip(mine["predictions"], theirs["predictions"]):
            assert a["class_id"] == b["class_id"]
            assert abs(a["probability"] - b["probability"]) < 1e-4, (mine["image"], a, b)
    pipeline = zoo.data.from_files(paths, [0] * len(paths), (28, 28), batch_size=len(paths))
    images, _ = next(iter(pipeline))
    for path, from_pipeline in zip(paths, np.asarray(images)):
        np.testing.assert_array_equal(load_like_the_pipeline(path, (28, 28)), from_pipeline)


@pytest.mark.large
def test_a_large_json_body_does_not_stall_other_requests(base, batch):
    """A 30 MiB body is parsed in a worker process: small requests sent meanwhile are
    answered while it is still being parsed (json.loads alone takes seconds on it and,
    in the server's own interpreter, would hold every other request up)."""
    instances = np.random.default_rng(0).random((1600, 28, 28, 3)).round(6).tolist()
    big = json.dumps({"instances": instances}).encode()
    assert len(big) > 30 << 20
    started = time.perf_counter()
    json.loads(big)
    parse_seconds = time.perf_counter() - started
    with ModelServer(base, port=0, grpc_port=None, poll_seconds=0, max_body_bytes=64 << 20) as srv:
        call(srv, "POST", f"/v1/models/{NAME}:predict", {"instances": batch[:1].tolist()})  # warm
        done = {}

        def send_big():
            done["status"], done["reply"] = call(srv, "POST", f"/v1/models/{NAME}:predict", raw=big)
            done["at"] = time.perf_counter()

        sender = threading.Thread(target=send_big)
        sender.start()
        time.sleep(0.3)  # the big body is being read and parsed now
        small = []
        while sender.is_alive() and len(small) < 50:
            t0 = time.perf_counter()
            status, _ = call(srv, "POST", f"/v1/models/{NAME}:predict", {"instances": batch[:1].tolist()})
            small.append((status, time.perf_counter() - t0, time.perf_counter()))
        sender.join()
    assert done["status"] == 200 and len(done["reply"]["predictions"]) == 1600
    answered_before_big = [s for s in small if s[2] < done["at"] and s[0] == 200]
    assert len(answered_before_big) >= 3, (small, parse_seconds)
    assert max(s[1] for s in answered_before_big) < max(0.5 * parse_seconds, 0.5), (small, parse_seconds)
