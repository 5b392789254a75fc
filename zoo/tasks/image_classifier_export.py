"""The image classifier's serving signatures (`zoo.tasks.image_classifier.signatures`).

Signatures of an image classifier (H, W = the model's input size, C = classes):

- `serving_default`: `images` float32 `[N, H, W, 3]`, pixels 0-255 (JSON numbers
  arrive as floats or ints; both fit) → `probabilities` float32 `[N, C]`,
  `class_ids` int64 `[N]`.
- `serving_uint8`: the same with `images` uint8, 4x smaller over gRPC.
- `serving_bytes`: `image_bytes` string `[N]` (JPEG, PNG, GIF, BMP or WebP files; REST
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

Every signature that takes image files checks the size each file's header claims
against `$ZOO_MAX_IMAGE_PIXELS` (fixed in the graph when exporting) before decoding it
(`zoo.data.images.check_claimed_pixels`; a GIF is decoded up to its first frame only),
and decodes and resizes with zoo's one decode (`zoo.data.images.decode_resize_bytes`),
so a photo scores the same in training, `zoo predict`, `zoo serve` and TF Serving.

A module of its own, imported by `zoo export` and the `zoo predict --url` client (its
signature names and `image_files`); nothing here imports TensorFlow or Keras until a
function runs.
"""

from __future__ import annotations

from pathlib import Path

from zoo.errors import ZooError
from zoo.tasks.export import SIGNATURE_DEFAULT, call, check_one_input_one_output, image_input_size, model_of

SIGNATURE_UINT8 = "serving_uint8"
SIGNATURE_BYTES = "serving_bytes"
SIGNATURE_TOP_K = "top_k"
SIGNATURE_EXPLAIN = "explain"
SIGNATURE_CLASSIFY = "classify"  # TF Serving's classification method: tf.Examples in
CLASSIFY_FEATURE = "image/encoded"  # the tf.Example feature holding the image file's bytes
CLASSIFY_METHOD = "tensorflow/serving/classify"
LABELS_FILE = "labels.txt"  # class names beside a LiteRT or ONNX file, one per line (TFLite's convention)


def image_files(items):
    """What a request sends, one entry per image: `items` (paths or encoded bytes) with
    each folder replaced by the image files under it (sorted, hidden files left out),
    or kept when it holds none (`empty_folder_error`)."""
    from zoo.data.pillow import expand_folders

    return expand_folders(items)


def empty_folder_error(item):
    """The error for an entry of `image_files` that is a folder holding no images, or None."""
    from zoo.data.pillow import is_empty_folder, no_images_in

    return no_images_in(item) if is_empty_folder(item) else None


def signatures(source, top_k=5, classes=None):
    """The image classifier's export (see the module docstring).

    Args:
        source: a `ClassifierRun` (`zoo.load_run`) or a `keras.Model` taking uint8 RGB
            images of a fixed size and returning probabilities.
        top_k: int. Labels the `top_k` and `classify` signatures return, at most the
            number of classes. Defaults to `5`.
        classes: list of str or None. Class names; defaults to the run's classes, else
            the registry's labels of a model with its original head, else "0", "1", ...

    Returns:
        `(endpoints, metadata)` as `zoo.tasks` describes: metadata holds `classes`,
        `input_size` and `top_k`.
    """
    model = model_of(source)
    if classes is None and source is not model:
        classes = getattr(source, "classes", None)
    check_one_input_one_output(model)
    input_size = image_input_size(model)
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if input_size is None or len(out_shape) != 2:
        raise ZooError(
            "An image classifier must take (N, H, W, 3) images of a fixed size and "
            f"return (N, classes). Received: input shape {in_shape}, output shape {out_shape}"
        )
    classes = _class_names(source, model, int(out_shape[-1]), classes)
    k = min(top_k, len(classes))
    endpoints = _endpoints(model, input_size, classes, k)
    return endpoints, {"classes": classes, "input_size": input_size, "top_k": k}


def portable(source, classes=None):
    """The classifier as one LiteRT or ONNX file (`zoo.tasks.export.Portable`): `images`
    uint8 `[N, H, W, 3]` → `probabilities` float32 `[N, C]`, what `serving_uint8`
    answers; the class names go beside it in `labels.txt` and into the ONNX metadata;
    int8 calibrates on the run's own training images (`calibration_images`)."""
    import tensorflow as tf

    from zoo.tasks.export import Portable

    model = model_of(source)
    if classes is None and source is not model:
        classes = getattr(source, "classes", None)
    check_one_input_one_output(model)
    input_size = image_input_size(model)
    if input_size is None or len(model.outputs[0].shape) != 2:
        raise ZooError(f"a LiteRT or ONNX file of an image classifier takes one (batch, height, width, 3) input of "
                       f"a fixed size; {model.name} takes {[tuple(i.shape) for i in model.inputs]}")
    classes = _class_names(source, model, int(model.outputs[0].shape[-1]), classes)
    input_dtype = tf.as_dtype(model.inputs[0].dtype)

    @tf.function(input_signature=[tf.TensorSpec((None, *input_size, 3), tf.uint8, name="images")])
    def classify(images):
        return {"probabilities": call(model, images if input_dtype == tf.uint8 else tf.cast(images, input_dtype))}

    return Portable(function=classify, model=model, files={LABELS_FILE: "".join(f"{c}\n" for c in classes)},
                    metadata={"labels": "\n".join(classes),
                              "input": "images: uint8 RGB (batch, height, width, 3); preprocessing inside"},
                    calibration=lambda folder: calibration_images(None if source is model else source,
                                                                  tuple(input_size), folder=folder))


def _class_names(source, model, num_classes, classes):
    from zoo import models
    from zoo.errors import UnknownModelError

    if classes is None:
        config = getattr(source, "config", None) or {}
        try:
            spec = models.get_spec(config.get("model") or model.name)
        except UnknownModelError:
            spec = None
        if spec is not None and spec.labels and spec.num_classes == num_classes:
            classes = models.labels(spec.name)
    classes = [str(c) for c in classes] if classes is not None else [str(i) for i in range(num_classes)]
    if len(classes) != num_classes:
        raise ZooError(
            f"`classes` must name each of the model's {num_classes} outputs. "
            f"Received: {len(classes)} classes"
        )
    return classes


def _endpoints(model, input_size, class_names, k):
    import tensorflow as tf

    from zoo.data.images import decode_resize_bytes
    from zoo.data.pillow import max_pixels as pixel_limit

    height, width = input_size
    input_dtype = tf.as_dtype(model.inputs[0].dtype)
    max_pixels = pixel_limit()  # fixed in the graph when exporting ($ZOO_MAX_IMAGE_PIXELS)

    def to_model_input(pixels):
        # Pixels arrive as floats (JSON) or uint8; the model's uint8 input would
        # truncate and wrap a float like 255.6, so round and clip first.
        if input_dtype == tf.uint8:
            return tf.cast(tf.clip_by_value(tf.round(tf.cast(pixels, tf.float32)), 0.0, 255.0), tf.uint8)
        return tf.cast(pixels, input_dtype)

    def classify(pixels):
        probabilities = tf.cast(call(model, to_model_input(pixels)), tf.float32)
        return {
            "probabilities": probabilities,
            "class_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    def decode(image_bytes):
        def one(encoded):
            # zoo's one decode and resize, as in training and in `zoo predict`. It checks
            # the header's size first: a 62 KiB PNG can claim 23000 x 23000 pixels, a
            # 38-byte WebP 12000 x 12000, and decoding them would cost gigabytes — in zoo
            # serve and in TF Serving alike.
            return decode_resize_bytes(encoded, (height, width), max_pixels=max_pixels)

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

    outputs = ["probabilities", "class_ids"]
    endpoints = {
        SIGNATURE_DEFAULT: (serve_float, {"inputs": ["images"], "outputs": outputs}),
        SIGNATURE_UINT8: (serve_uint8, {"inputs": ["images"], "outputs": outputs}),
        SIGNATURE_BYTES: (serve_bytes, {"inputs": ["image_bytes"], "outputs": outputs}),
        SIGNATURE_TOP_K: (serve_top_k, {"inputs": ["image_bytes"], "outputs": ["classes", "scores", "class_ids"]}),
        SIGNATURE_CLASSIFY: (serve_classify, {"inputs": ["inputs"], "outputs": ["classes", "scores"],
                                              "method": CLASSIFY_METHOD, "feature": CLASSIFY_FEATURE}),
    }
    explain = _explain_endpoint(model, decode, class_names)
    if explain is not None:
        function, heatmap_shape, layer_name = explain
        endpoints[SIGNATURE_EXPLAIN] = (function, {
            "inputs": ["image_bytes"], "outputs": ["class_ids", "classes", "probabilities", "heatmap"],
            "heatmap_shape": heatmap_shape, "layer": layer_name})
    return endpoints


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


CALIBRATION_IMAGES = 200  # what int8 quantisation calibrates on, at most


def calibration_images(run, size, folder=None):
    """Up to `CALIBRATION_IMAGES` real images, uint8 `(N, H, W, 3)` at `size`, for int8
    quantisation to calibrate on: those under `folder` (any layout), else the run's own
    training images (its training split, by its seed), read as its training read them."""
    import numpy as np

    from zoo.errors import OptionError

    if folder is not None:
        from zoo.data.pillow import image_items, load_many
        from zoo.tasks.classify import file_loader

        items = image_items(str(folder))[:CALIBRATION_IMAGES]
        images = [array for _, array, error in load_many(items, size, load_file=file_loader()) if error is None]
        if not images:
            raise OptionError(f"{folder}: no images to calibrate int8 quantisation on")
        return np.stack(images).astype("uint8")
    config = getattr(run, "config", None) or {}
    data_dir = config.get("data_dir")
    if not data_dir or not Path(data_dir).is_dir():
        raise OptionError("int8 quantisation calibrates on real images: give some (--representative DIR, or "
                          "representative= in Python), or export a run whose training folder is still there"
                          + (f" (this run's was {data_dir})" if data_dir else ""))
    from zoo.data import image_folder

    data = image_folder(data_dir, image_size=size, batch_size=32, seed=config.get("seed", 0), shuffle=False,
                        verbose=False)
    images = []
    for batch, _ in data.train:
        images.extend(np.asarray(batch))
        if len(images) >= CALIBRATION_IMAGES:
            break
    return np.stack(images[:CALIBRATION_IMAGES]).astype("uint8")
