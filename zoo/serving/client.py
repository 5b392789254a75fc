"""Classify image files with a served model, over TF Serving's REST API.

    >>> from zoo.serving.client import predict
    >>> predict("http://127.0.0.1:8501", "digits", ["seven.png"], top=3)
    [{'image': 'seven.png', 'predictions': [{'label': '7', 'class_id': 7,
      'probability': 0.98}, ...]}]

The files go as `{"b64": ...}` to a signature that takes encoded images, so the server
decodes and resizes them; nothing here needs TensorFlow or knows the model's input
size. It talks to `zoo serve` and, unchanged, to a real TF Serving. With zoo's exports
the `top_k` signature answers class names; with another SavedModel whose signature
takes one DT_STRING input, labels are the class indices.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request

from zoo.errors import ZooError
from zoo.tasks.image_classifier_export import SIGNATURE_BYTES, SIGNATURE_TOP_K, empty_folder_error, image_files


def predict(url, model_name, images, top=5, version=None, timeout=60.0):
    """Top-`top` labels for each image file, from the model served at `url`.

    Args:
        url: str. The server's REST root, `"http://HOST:8501"`.
        model_name: str. The served model's name.
        images: a path or a list of paths (or raw encoded bytes).
        top: int. Labels per image; at most what the model's `top_k` signature was
            exported with (5 by default). Defaults to `5`.
        version: int or None. A specific version; defaults to the served one.
        timeout: float. Seconds to wait for each request. Defaults to `60`.

    Returns:
        One dict per image, in order, as `zoo.classify` returns them:
        `{"image": path, "predictions": [{"label", "class_id", "probability"}]}`,
        or `{"image": path, "error": message}` for an image that failed.
    """
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be a positive int. Received: top={top!r}")
    if isinstance(images, (str, os.PathLike, bytes)):
        images = [images]
    images = image_files(images)
    base = _model_url(url, model_name, version)
    signature, kind = _choose_signature(_get(base + "/metadata", timeout), model_name)

    results = [None] * len(images)
    payloads = {}
    for index, image in enumerate(images):
        label = os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<bytes #{index}>"
        empty = empty_folder_error(image)
        if empty:
            results[index] = {"image": label, "error": empty}
            continue
        try:
            data = image if isinstance(image, bytes) else _read(image)
        except OSError as error:
            results[index] = {"image": label, "error": f"{label}: {error.strerror or error}"}
            continue
        results[index] = {"image": label}
        payloads[index] = base64.b64encode(data).decode("ascii")

    if payloads:
        order = list(payloads)
        try:
            rows = _predict(base, signature, [payloads[i] for i in order], timeout)
        except _BadRequest:
            # One undecodable file fails the whole batch: ask per image to say which.
            rows = []
            for i in order:
                try:
                    rows.extend(_predict(base, signature, [payloads[i]], timeout))
                except _BadRequest as error:
                    rows.append(error)
        for i, row in zip(order, rows):
            if isinstance(row, _BadRequest):
                results[i]["error"] = f"{results[i]['image']}: {row}"
            else:
                results[i]["predictions"] = _to_predictions(row, kind, top)
    return results


class _BadRequest(ZooError):
    """The server refused a request (4xx): its `{"error": ...}` message."""


def _model_url(url, model_name, version):
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"`url` must start with http:// or https://. Received: url={url!r}")
    base = f"{url.rstrip('/')}/v1/models/{urllib.request.quote(str(model_name), safe='')}"
    return base if version is None else f"{base}/versions/{int(version)}"


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _request(url, body, timeout):
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read()).get("error", "")
        except (ValueError, AttributeError):
            message = ""
        message = message or f"HTTP {error.code} {error.reason}"
        if error.code == 404:
            raise ZooError(f"{url}: {message}") from None
        if 400 <= error.code < 500:
            raise _BadRequest(message) from None
        raise ZooError(f"{url}: the server failed (HTTP {error.code}): {message}") from None
    except urllib.error.URLError as error:
        raise ZooError(f"Cannot reach {url}: {error.reason}") from None


def _get(url, timeout):
    return _request(url, None, timeout)


def _choose_signature(metadata, model_name):
    """`(signature name, "top_k" | "probabilities")` to send encoded images to."""
    try:
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError):
        raise ZooError(f"The server's metadata for {model_name!r} lists no signatures.") from None
    top_k = signatures.get(SIGNATURE_TOP_K, {})
    if {"classes", "scores"} <= set(top_k.get("outputs", {})):
        return SIGNATURE_TOP_K, "top_k"
    ordered = [SIGNATURE_BYTES] + sorted(signatures)
    for name in ordered:
        inputs = signatures.get(name, {}).get("inputs", {})
        if len(inputs) == 1 and next(iter(inputs.values())).get("dtype") == "DT_STRING":
            return name, "probabilities"
    raise ZooError(
        f"{model_name!r} has no signature that takes encoded images (one DT_STRING input). "
        f"Signatures: {sorted(signatures)}"
    )


def _predict(base, signature, encoded, timeout):
    body = {"signature_name": signature, "instances": [{"b64": e} for e in encoded]}
    predictions = _request(base + ":predict", body, timeout)["predictions"]
    if len(predictions) != len(encoded):
        raise ZooError(f"{base}: {len(encoded)} images sent, {len(predictions)} predictions received.")
    return predictions


def _to_predictions(row, kind, top):
    if kind == "top_k":
        ids = row.get("class_ids") or list(range(len(row["scores"])))
        return [
            {"label": str(label), "class_id": int(i), "probability": float(p)}
            for label, i, p in list(zip(row["classes"], ids, row["scores"]))[:top]
        ]
    probabilities = row.get("probabilities", row) if isinstance(row, dict) else row
    if isinstance(row, dict) and "probabilities" not in row:
        probabilities = next(v for v in row.values() if isinstance(v, list))
    ranked = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:top]
    return [{"label": str(i), "class_id": i, "probability": float(probabilities[i])} for i in ranked]
