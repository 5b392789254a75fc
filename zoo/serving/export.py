"""Export a model as a SavedModel that TF Serving loads unchanged.

    >>> import zoo
    >>> zoo.export("runs/flowers", "models/", "flowers")
    PosixPath('models/flowers/1')

The layout is TF Serving's: `BASE/NAME/VERSION/saved_model.pb` + `variables/`, where
VERSION is a positive integer and the server serves the highest one. A version is
written into a temporary directory next to the versions (`BASE/NAME/.export-…`, a name
TF Serving skips because it is not all digits) and renamed into place, so neither
TF Serving nor `zoo serve` ever sees half a version.

Signatures of an image classifier (H, W = the model's input size, C = classes):

- `serving_default`: `images` float32 `[N, H, W, 3]`, pixels 0-255 (JSON numbers
  arrive as floats or ints; both fit) → `probabilities` float32 `[N, C]`,
  `class_ids` int64 `[N]`.
- `serving_uint8`: the same with `images` uint8, 4x smaller over gRPC.
- `serving_bytes`: `image_bytes` string `[N]` (JPEG, PNG, GIF or BMP files; REST
  clients send `{"b64": ...}`) → decoded, resized (bilinear, antialiased, to H x W) and
  preprocessed in the graph → `probabilities`, `class_ids`.
- `top_k`: `image_bytes` string `[N]` → `classes` string `[N, K]` (the class names,
  embedded in the graph), `scores` float32 `[N, K]`, `class_ids` int64 `[N, K]`.
- `classify`: TF Serving's classification method (`:classify` over REST, `Classify`
  over gRPC): `inputs` string `[N]` of serialized `tf.Example`s whose `image/encoded`
  bytes feature holds the image file → `classes` string `[N, K]`, `scores` float32
  `[N, K]`, the same as `top_k`.
- `explain`: `image_bytes` string `[N]` → `class_ids` int64 `[N]` and `classes`
  string `[N]` (the predicted class), `probabilities` float32 `[N]` (its probability),
  `heatmap` float32 `[N, h, w]`: Grad-CAM of that class at the last convolutional
  block (h x w: that block's resolution, e.g. 14 x 14 for VGG19 at 224, recorded in
  zoo.json as `explain.heatmap_shape`), each map scaled to [0, 1]. Where it looked,
  from TF Serving or `zoo serve`; a model with no convolutional block has no `explain`.

Other models export `serving_default` with their own input (named `inputs`) → `outputs`.
`assets.extra/zoo.json` records the model name, classes, input size, zoo version and
source run (TF Serving ignores `assets.extra/` apart from warm-up files).
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from zoo import io
from zoo.errors import UnknownModelError, ZooError
from zoo.io import fsync_dir, read_json
from zoo.serving import (
    CLASSIFY_FEATURE,
    CLASSIFY_METHOD,
    SIGNATURE_CLASSIFY,
    METADATA_FILE,
    SIGNATURE_BYTES,
    SIGNATURE_DEFAULT,
    SIGNATURE_EXPLAIN,
    SIGNATURE_TOP_K,
    SIGNATURE_UINT8,
)

TEMP_PREFIX = ".export-"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def export(model_or_run_dir, base_path, name, version=None, top_k=5, classes=None):
    """Write a model as TF Serving's `base_path/name/VERSION/` SavedModel.

    Args:
        model_or_run_dir: a `keras.Model` (uint8 RGB in, probabilities out for a
            classifier), the path of a run directory written by `zoo finetune` /
            `zoo.runs.save_run`, or a registry model name (`"lenet5"`, built with its
            default weights).
        base_path: str or Path. The model base directory (`models/`).
        name: str. The served model's name, the directory under `base_path`.
        version: int or None. The version to write; must not exist yet. Defaults to
            one more than the highest existing version (1 for the first).
        top_k: int. Labels returned by the `top_k` signature (at most the number of
            classes). Defaults to `5`.
        classes: list of str or None. Class names of a classifier passed as a model;
            defaults to the run's classes or the registry's labels, else "0", "1", ...

    Returns:
        `pathlib.Path` of the new version directory.
    """
    _check_name(name)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ValueError(f"`version` must be a positive int or None. Received: version={version!r}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive int. Received: top_k={top_k!r}")

    source = _resolve_source(model_or_run_dir, classes)
    model_dir = Path(base_path) / name
    if version is not None and (model_dir / str(version)).exists():
        raise ZooError(
            f"{model_dir / str(version)} already exists: versions are never overwritten. "
            f"Pass another version or leave it out. Received: version={version}"
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(model_dir)

    tmp = Path(tempfile.mkdtemp(dir=model_dir, prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
    io.make_dir_public_as_umask(tmp)
    try:
        signatures = _write_saved_model(source, tmp, top_k)
        metadata = {
            "name": name,
            "model": source["model_name"],
            "task": source["task"],
            "classes": source["classes"],
            "input_size": source["input_size"],
            "signatures": signatures,
            "top_k": min(top_k, len(source["classes"])) if source["classes"] else None,
            "zoo_version": _zoo_version(),
            "source_run": source["run"],
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        # A plain write, not zoo.io's: the whole version directory is published by one
        # rename below, so the file needs no atomic write of its own.
        (tmp / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        _fsync_tree(tmp)
        final = _publish(tmp, model_dir, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def versions(model_dir):
    """The published versions under `model_dir`, ascending (all-digit names only)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())


def remove_stale_temporaries(model_dir):
    """Delete temporary export directories whose exporting process is gone (killed)."""
    for path in Path(model_dir).glob(f"{TEMP_PREFIX}*"):
        match = re.match(rf"^{re.escape(TEMP_PREFIX)}(\d+)-", path.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def read_metadata(version_dir):
    """The `assets.extra/zoo.json` of an export, or `{}` for a SavedModel zoo did not write."""
    return read_json(Path(version_dir) / METADATA_FILE, default={})


def docker_command(model_dir, rest_port=8501, grpc_port=8500):
    """The `docker run` line that serves `model_dir` (`BASE/NAME`) with TF Serving."""
    model_dir = Path(model_dir).resolve()
    return (
        f"docker run --rm -p {rest_port}:8501 -p {grpc_port}:8500 "
        f'-v "{model_dir}:/models/{model_dir.name}" -e MODEL_NAME={model_dir.name} tensorflow/serving'
    )


def curl_example(name, host="localhost", port=8501, image="image.jpg"):
    """A curl request sending one image file to the `top_k` signature as b64."""
    return (
        f"curl -s -X POST http://{host}:{port}/v1/models/{name}:predict "
        f"-d '{{\"signature_name\": \"{SIGNATURE_TOP_K}\", "
        f"\"instances\": [{{\"b64\": \"'\"$(base64 -w0 {image})\"'\"}}]}}'"
    )


# ------------------------------------------------------------------------------ source
def _check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.isdigit():
        raise ValueError(
            "`name` must be a directory name of letters, digits, '_', '.' or '-' that "
            "does not start with '.' or '-' and is not all digits (TF Serving would "
            f"take it for a version). Received: name={name!r}"
        )


def _resolve_source(source, classes):
    """`{model, model_name, task, classes, input_size, run}` for what `export` was given."""
    import keras

    from zoo import models

    run_path = None
    config = {}
    if isinstance(source, keras.Model):
        model = source
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        from zoo import tasks

        run = tasks.load_run(source)
        model, config, run_path = run.model, run.config, str(Path(source).resolve())
        if classes is None:
            classes = getattr(run, "classes", None)
        # A kind whose model is not an image classifier says what its export serves.
        task_module = tasks.get(run.kind or tasks.DEFAULT_KIND)
        if hasattr(task_module, "signatures"):
            return {"model": model, "model_name": config.get("model") or model.name, "task": task_module.MODEL_TASK,
                    "classes": None, "input_size": None, "run": run_path,
                    "signatures": lambda: task_module.signatures(run)}
    elif isinstance(source, str):
        try:
            models.get_spec(source)
        except UnknownModelError as error:
            raise ZooError(
                "`model_or_run_dir` must be a keras.Model, a run directory or a registry "
                f"model name. {error}"
            ) from None
        model = models.create(source)
    else:
        raise TypeError(
            "`model_or_run_dir` must be a keras.Model, a run directory or a registry "
            f"model name. Received: model_or_run_dir={source!r}"
        )

    model_name = config.get("model") or model.name
    spec = _spec_or_none(model_name)
    task = config.get("task") or (spec.task if spec else None)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ZooError(
            "export handles models with one input and one output. "
            f"Received: {len(model.inputs)} inputs and {len(model.outputs)} outputs ({model.name})"
        )
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    is_image = len(in_shape) == 4 and in_shape[-1] == 3 and None not in in_shape[1:]
    if task is None:
        task = "image-classification" if is_image and len(out_shape) == 2 else "other"
    if task == "image-classification":
        if not is_image or len(out_shape) != 2:
            raise ZooError(
                "An image classifier must take (N, H, W, 3) images of a fixed size and "
                f"return (N, classes). Received: input shape {in_shape}, output shape {out_shape}"
            )
        num_classes = int(out_shape[-1])
        if classes is None and spec is not None and spec.labels and spec.num_classes == num_classes:
            classes = models.labels(spec.name)
        classes = [str(c) for c in classes] if classes is not None else [str(i) for i in range(num_classes)]
        if len(classes) != num_classes:
            raise ZooError(
                f"`classes` must name each of the model's {num_classes} outputs. "
                f"Received: {len(classes)} classes"
            )
    else:
        classes = None
    return {
        "model": model,
        "model_name": model_name,
        "task": task,
        "classes": classes,
        "input_size": [int(d) for d in in_shape[1:3]] if is_image else None,
        "run": run_path,
    }


def _spec_or_none(name):
    from zoo import models

    try:
        return models.get_spec(name)
    except UnknownModelError:
        return None


def _zoo_version():
    from zoo import __version__

    return __version__


# -------------------------------------------------------------------------- signatures
def _write_saved_model(source, path, top_k):
    """Write the SavedModel into `path`; returns `{signature: {inputs, outputs}}`."""
    import keras
    import tensorflow as tf

    model = source["model"]
    archive = keras.export.ExportArchive()
    # No archive.track(model): add_endpoint already tracks the variables the endpoints use,
    # and tracking the model as well stores every variable twice (its Keras wrapper and
    # the tf.Variable inside), doubling the export (185 MB for a 95 MB ResNet50).
    if source.get("signatures") is not None:
        described = {}
        for name, (function, description) in source["signatures"]().items():
            archive.add_endpoint(name, function)
            described[name] = description
        archive.write_out(str(path), verbose=False)
        return described

    input_dtype = tf.as_dtype(model.inputs[0].dtype)

    if source["task"] != "image-classification":
        spec = tf.TensorSpec(model.inputs[0].shape, input_dtype, name="inputs")

        @tf.function(input_signature=[spec])
        def serve(inputs):
            return {"outputs": _call(model, inputs)}

        archive.add_endpoint(SIGNATURE_DEFAULT, serve)
        archive.write_out(str(path), verbose=False)
        return {SIGNATURE_DEFAULT: {"inputs": ["inputs"], "outputs": ["outputs"]}}

    height, width = source["input_size"]
    from zoo.data.images import decode_resize_bytes
    from zoo.data.pillow import max_pixels as pixel_limit

    max_pixels = pixel_limit()  # fixed in the graph when exporting ($ZOO_MAX_IMAGE_PIXELS)
    k = min(top_k, len(source["classes"]))
    class_names = list(source["classes"])

    def to_model_input(pixels):
        # Pixels arrive as floats (JSON) or uint8; the model's uint8 input would
        # truncate and wrap a float like 255.6, so round and clip first.
        if input_dtype == tf.uint8:
            return tf.cast(tf.clip_by_value(tf.round(tf.cast(pixels, tf.float32)), 0.0, 255.0), tf.uint8)
        return tf.cast(pixels, input_dtype)

    def classify(pixels):
        probabilities = tf.cast(_call(model, to_model_input(pixels)), tf.float32)
        return {
            "probabilities": probabilities,
            "class_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    def decode(image_bytes):
        def one(encoded):
            # The header's size first: a 62 KiB PNG can claim 23000 x 23000 pixels, and
            # decoding it would cost gigabytes — in zoo serve and in TF Serving alike.
            within_limit = tf.debugging.assert_less_equal(
                claimed_pixels(encoded), tf.constant(max_pixels, tf.int64),
                message=f"the image claims more pixels than this model's limit of {max_pixels:,}")
            with tf.control_dependencies([within_limit]):  # checked before, not beside, decoding
                # zoo's one decode and resize, as in training and in `zoo predict`.
                return decode_resize_bytes(encoded, (height, width))

        return tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8))

    image_shape = [None, height, width, 3]

    @tf.function(input_signature=[tf.TensorSpec(image_shape, tf.float32, name="images")])
    def serve_float(images):
        return classify(images)

    @tf.function(input_signature=[tf.TensorSpec(image_shape, tf.uint8, name="images")])
    def serve_uint8(images):
        return classify(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        return classify(decode(image_bytes))

    def top_classes(image_bytes):
        probabilities = classify(decode(image_bytes))["probabilities"]
        top = tf.math.top_k(probabilities, k=k)
        return {
            "classes": tf.gather(tf.constant(class_names, dtype=tf.string), top.indices),
            "scores": top.values,
            "class_ids": tf.cast(top.indices, tf.int64),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_top_k(image_bytes):
        return top_classes(image_bytes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def serve_classify(serialized_examples):
        features = tf.io.parse_example(
            serialized_examples, {CLASSIFY_FEATURE: tf.io.FixedLenFeature([], tf.string)})
        top = top_classes(features[CLASSIFY_FEATURE])
        return {"classes": top["classes"], "scores": top["scores"]}

    archive.add_endpoint(SIGNATURE_DEFAULT, serve_float)
    archive.add_endpoint(SIGNATURE_UINT8, serve_uint8)
    archive.add_endpoint(SIGNATURE_BYTES, serve_bytes)
    archive.add_endpoint(SIGNATURE_TOP_K, serve_top_k)
    archive.add_endpoint(SIGNATURE_CLASSIFY, serve_classify)
    outputs = ["probabilities", "class_ids"]
    described = {
        SIGNATURE_DEFAULT: {"inputs": ["images"], "outputs": outputs},
        SIGNATURE_UINT8: {"inputs": ["images"], "outputs": outputs},
        SIGNATURE_BYTES: {"inputs": ["image_bytes"], "outputs": outputs},
        SIGNATURE_TOP_K: {"inputs": ["image_bytes"], "outputs": ["classes", "scores", "class_ids"]},
        SIGNATURE_CLASSIFY: {"inputs": ["inputs"], "outputs": ["classes", "scores"], "method": CLASSIFY_METHOD,
                             "feature": CLASSIFY_FEATURE},
    }
    explain = _explain_endpoint(model, decode, class_names)
    if explain is not None:
        function, heatmap_shape, layer_name = explain
        archive.add_endpoint(SIGNATURE_EXPLAIN, function)
        described[SIGNATURE_EXPLAIN] = {"inputs": ["image_bytes"],
                                        "outputs": ["class_ids", "classes", "probabilities", "heatmap"],
                                        "heatmap_shape": heatmap_shape, "layer": layer_name}
    archive.write_out(str(path), verbose=False)
    set_method_names(path, {SIGNATURE_CLASSIFY: CLASSIFY_METHOD})
    return described


def set_method_names(path, methods):
    """Give signatures TF Serving's classify/regress method names. `tf.saved_model`
    writes every signature as a predict one; TF Serving's Classify and Regress run only
    a signature whose SignatureDef says it is theirs (as TF1's
    `classification_signature_def` wrote it)."""
    from tensorflow.core.protobuf import saved_model_pb2

    file = Path(path) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(file.read_bytes())
    for graph in saved_model.meta_graphs:
        for name, method in methods.items():
            if name in graph.signature_def:
                graph.signature_def[name].method_name = method
    file.write_bytes(saved_model.SerializeToString())


def _explain_endpoint(model, decode, class_names):
    """The `explain` signature's function (Grad-CAM of the predicted class), its heat
    map's shape and layer; None for a model with no convolutional block."""
    import tensorflow as tf
    from keras import ops

    from zoo.errors import OptionError
    from zoo.interpret.attribution import Forward, gradcam_from, layer_gradient_tensors
    from zoo.interpret.graph import last_conv_layer, output_rank

    try:
        layer = last_conv_layer(model)
    except OptionError:
        return None
    if output_rank(layer) != 4 or None in tuple(layer.output.shape[1:3]):
        return None
    heatmap_shape = [int(d) for d in layer.output.shape[1:3]]
    forward = Forward(model)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_explain(image_bytes):
        pixels = tf.cast(decode(image_bytes), tf.float32)
        probabilities = tf.cast(forward(pixels, logits=False)[0], tf.float32)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        activations, grads = layer_gradient_tensors(forward, pixels, class_ids, layer)
        cam = gradcam_from(tf.cast(activations, tf.float32), tf.cast(grads, tf.float32), xp=ops)
        peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
        return {
            "class_ids": class_ids,
            "classes": tf.gather(tf.constant(class_names, dtype=tf.string), class_ids),
            "probabilities": tf.gather(probabilities, class_ids, batch_dims=1),
            "heatmap": tf.math.divide_no_nan(cam, peak),
        }

    return serve_explain, heatmap_shape, layer.name


def claimed_pixels(encoded):
    """Graph function: width x height from an encoded image's header, decoding nothing.

    JPEG through `tf.image.extract_jpeg_shape`; PNG, GIF and BMP from their fixed header
    fields (IHDR, logical screen, BITMAPINFOHEADER). Anything else claims 0 and is left
    to `decode_image`, which refuses unknown formats.
    """
    import tensorflow as tf

    def field(offset, length, little_endian):
        raw = tf.io.decode_raw(tf.strings.substr(encoded, offset, length), tf.uint8)
        raw = tf.cast(raw, tf.int64)
        if little_endian:
            raw = tf.reverse(raw, [0])
        weights = tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.range(8 * (length - 1), -1, -8, dtype=tf.int64))
        return tf.reduce_sum(raw * weights)

    def header(prefix):
        return tf.strings.substr(encoded, 0, len(prefix)) == prefix

    length = tf.strings.length(encoded)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    def png():
        return field(16, 4, False) * field(20, 4, False)

    def gif():
        return field(6, 2, True) * field(8, 2, True)

    def signed(value):  # BMP sizes are signed: a negative height means top-down rows
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

    def bmp():
        return signed(field(18, 4, True)) * signed(field(22, 4, True))

    return tf.case([
        (tf.io.is_jpeg(encoded), jpeg),
        (tf.logical_and(header(b"\x89PNG\r\n\x1a\n"), length >= 24), png),
        (tf.logical_and(header(b"GIF8"), length >= 10), gif),
        (tf.logical_and(header(b"BM"), length >= 26), bmp),
    ], default=lambda: tf.constant(0, tf.int64), exclusive=False)


def _call(model, inputs):
    # A model built as keras.Model([input], ...) expects a list; a bare tensor works but
    # warns on every trace.
    return model([inputs] if isinstance(model.input, list) else inputs, training=False)


# ------------------------------------------------------------------------ publication
def _publish(tmp, model_dir, version):
    """Rename the finished temporary directory to its version; returns the final path."""
    while True:
        number = version if version is not None else max(versions(model_dir), default=0) + 1
        final = model_dir / str(number)
        if final.exists():
            if version is not None:
                raise ZooError(f"{final} appeared while exporting: versions are never overwritten.")
            continue  # another export took this number between listing and renaming
        try:
            # rename(2) is atomic: a reader sees no version or the whole one.
            os.rename(tmp, final)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY) and version is None:
                continue
            raise
        fsync_dir(model_dir)
        return final


def _fsync_tree(root):
    # Flush file contents before the rename publishes them, so a crash right after
    # cannot leave a visible version with empty files.
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
