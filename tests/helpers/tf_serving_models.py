"""TF Serving's REST test models, built here (no downloaded files) as TF1-style graph
SavedModels, so signature method names, tensor names and shapes are exactly what
TF Serving's own tests serve.

    half_plus_two(path)                  y = 0.5x + 2; predict, classify, regress signatures
                                         (tensorflow_serving/servables/tensorflow/testdata/
                                         saved_model_half_plus_two.py, as its testdata holds it)
    half_plus_two(path, x2_classify=True) the `saved_model_half_plus_two_2_versions` flavour
                                         (adds classify_x2_to_y3)
    half_plus_three(path)                y = 0.5x + 3; signatures whose TensorInfos carry no
                                         shape at all (testdata/saved_model_half_plus_three)
    half_plus_two_tf2(path)              the native TF2 `HalfPlusTwoModel` (tf.Module)
    codec(path)                          identity signatures per dtype/shape, for
                                         util/json_tensor_test.cc's codec cases over HTTP
    examples(path)                       classify/regress signatures that parse tf.Examples,
                                         so the JSON -> Example conversion can be observed

Each builder writes one version directory (`path` is e.g. `base/00000123`). Graphs are
built with `tf.compat.v1` and `SavedModelBuilder`: no Keras, each takes well under a
second (the TF2 one about one).
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

v1 = tf.compat.v1

PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def _info(tensor):
    return v1.saved_model.utils.build_tensor_info(tensor)


def _signature(inputs, outputs, method):
    return v1.saved_model.signature_def_utils.build_signature_def(
        {k: _info(v) for k, v in inputs.items()},
        {k: _info(v) for k, v in outputs.items()},
        method,
    )


def _save(export_dir, sess, signatures, main_op=None, assets=None):
    export_dir = Path(export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    builder = v1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(
        sess,
        [v1.saved_model.tag_constants.SERVING],
        signature_def_map=signatures,
        assets_collection=assets,
        main_op=main_op,
    )
    builder.save()
    return export_dir


def _asset(scratch):
    """TF Serving's test models carry `assets/foo.txt` and a variable assigned its name."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    source = scratch / "foo.txt"
    source.write_text("asset-file-contents")
    path = tf.constant(str(source))
    v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, path)
    filename = v1.Variable("foo.txt", name="filename_tensor", trainable=False, collections=[])
    return filename.assign("foo.txt")


def half_plus_two(export_dir, x2_classify=False):
    """saved_model_half_plus_two (x2_classify=False: the `_cpu` testdata model, whose
    metadata is half_plus_two_model_metadata.json; True: the `_2_versions` one, whose
    metadata is saved_model_half_plus_two_2_versions_metadata.json)."""
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as sess:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        c = v1.Variable(3.0, name="c")
        # No shape: the testdata models' tf_example is of unknown rank.
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = v1.io.parse_example(serialized, {
            "x": v1.io.FixedLenFeature([1], dtype=tf.float32),
            "x2": v1.io.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0]),
        })
        # The testdata graphs were written by a parse_example whose outputs had static
        # shape [?, 1]; today's op leaves them unknown for an unknown-rank input.
        features["x"].set_shape([None, 1])
        features["x2"].set_shape([None, 1])
        x = tf.identity(features["x"], name="x")
        y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")
        y2 = tf.identity(tf.add(tf.multiply(a, x), c), name="y2")
        x2 = tf.identity(features["x2"], name="x2")
        a2 = v1.Variable(0.5, name="a2")
        c2 = v1.Variable(3.0, name="c2")
        y3 = tf.identity(tf.add(tf.multiply(a2, x2), c2), name="y3")
        assign = _asset(Path(export_dir).parent.parent / "_asset_sources")
        signatures = {
            "regress_x_to_y": _signature({"inputs": serialized}, {"outputs": y}, REGRESS),
            "regress_x_to_y2": _signature({"inputs": serialized}, {"outputs": y2}, REGRESS),
            "regress_x2_to_y3": _signature({"inputs": x2}, {"outputs": y3}, REGRESS),
            "classify_x_to_y": _signature({"inputs": serialized}, {"scores": y}, CLASSIFY),
            "serving_default": _signature({"x": x}, {"y": y}, PREDICT),
        }
        if x2_classify:
            signatures["classify_x2_to_y3"] = _signature({"inputs": x2}, {"scores": y3}, CLASSIFY)
        sess.run(v1.global_variables_initializer())
        return _save(export_dir, sess, signatures, main_op=tf.group(assign),
                     assets=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS))


def half_plus_three(export_dir):
    """saved_model_half_plus_three: y = 0.5x + 3, a `serving_default` predict signature
    and a regress signature named "tensorflow/serving/regress"; none of its TensorInfos
    has a tensor_shape (the case that must load and answer like any other)."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    def bare(name, dtype):
        return meta_graph_pb2.TensorInfo(name=name, dtype=dtype)

    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as sess:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(3.0, name="b")
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], dtype=tf.float32)})
        x = tf.identity(features["x"], name="x")
        y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")
        regressed = tf.identity(y)  # "Identity:0", as in the testdata model
        assert regressed.name == "Identity:0", regressed.name
        assign = _asset(Path(export_dir).parent.parent / "_asset_sources")
        signatures = {
            "serving_default": meta_graph_pb2.SignatureDef(
                inputs={"x": bare("x:0", types_pb2.DT_FLOAT)},
                outputs={"y": bare("y:0", types_pb2.DT_FLOAT)},
                method_name=PREDICT,
            ),
            REGRESS: meta_graph_pb2.SignatureDef(
                inputs={"inputs": bare("tf_example:0", types_pb2.DT_STRING)},
                outputs={"outputs": bare("Identity:0", types_pb2.DT_FLOAT)},
                method_name=REGRESS,
            ),
        }
        sess.run(v1.global_variables_initializer())
        return _save(export_dir, sess, signatures, main_op=tf.group(assign),
                     assets=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS))


def half_plus_two_tf2(export_dir):
    """saved_model_half_plus_two_tf2_cpu: the native TF2 HalfPlusTwoModel (tf.Module)."""
    spec = {"x": tf.io.FixedLenFeature([1], tf.float32),
            "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])}

    class HalfPlusTwo(tf.Module):
        def __init__(self):
            super().__init__()
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(2.0, name="b")
            self.c = tf.Variable(3.0, name="c")

        def compute(self, x, inc):
            return tf.add(tf.multiply(self.a, x), inc)

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])
        def predict(self, x):
            return {"y": self.compute(x, self.b)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress_xy(self, serialized):
            return {"outputs": self.compute(tf.io.parse_example(serialized, spec)["x"], self.b)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress_xy2(self, serialized):
            return {"outputs": self.compute(tf.io.parse_example(serialized, spec)["x"], self.c)}

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="inputs")])
        def regress_x2y3(self, x2):
            return {"outputs": self.compute(x2, self.c)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify_xy(self, serialized):
            return {"scores": self.compute(tf.io.parse_example(serialized, spec)["x"], self.b)}

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="inputs")])
        def classify_x2y3(self, x2):
            return {"scores": self.compute(x2, self.c)}

    module = HalfPlusTwo()
    Path(export_dir).parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(export_dir), signatures={
        "regress_x_to_y": module.regress_xy,
        "regress_x_to_y2": module.regress_xy2,
        "regress_x2_to_y3": module.regress_x2y3,
        "classify_x_to_y": module.classify_xy,
        "classify_x2_to_y3": module.classify_x2y3,
        "serving_default": module.predict,
    })
    return Path(export_dir)


# --------------------------------------------------------------------------- codec model
# Signatures of the `codec` model: name -> {input alias: dtype}. Unless CODEC_OUTPUTS says
# otherwise, each echoes its inputs as outputs of the same alias, so a predict response
# shows the tensor the server made of the JSON request (json_tensor_test.cc's cases).
CODEC_SIGNATURES = {
    "serving_default": {"default": tf.int32},
    "predict_images": {"default": tf.int32},
    "int32": {"default": tf.int32},
    "float": {"default": tf.float32},
    "double": {"default": tf.float64},
    "string": {"default": tf.string},
    "bool": {"default": tf.bool},
    "int8": {"default": tf.int8},
    "uint8": {"default": tf.uint8},
    "int16": {"default": tf.int16},
    "uint32": {"default": tf.uint32},
    "int64": {"default": tf.int64},
    "uint64": {"default": tf.uint64},
    "half": {"default": tf.float16},
    "bytes_out": {"str_tensor": tf.string},
    "multi": {"int_tensor": tf.int32, "str_tensor": tf.string, "float_tensor": tf.float32,
              "dbl_tensor": tf.float64},
    "columnar3": {"int_tensor": tf.int32, "str_tensor": tf.string, "bin_tensor": tf.string},
    "int_str": {"int_tensor": tf.int32, "str_tensor": tf.string},
    "str_only": {"str_tensor": tf.string},
    "int_only": {"int_tensor": tf.int32},
    "multi_out": {"int_tensor": tf.int32, "str_tensor": tf.string, "float_tensor": tf.float32,
                  "double_scalar_tensor": tf.float64, "str_tensor_bytes": tf.string},
    "tag_signal_sensor": {"tag": tf.string, "signal": tf.int32, "sensor": tf.int32},
    "complex": {"default": tf.float32},
    "scalar": {"default": tf.float32},
    "batch_mismatch": {"default": tf.float32},
    "zero_batch": {"default": tf.float32},
    "zero_batch_multi": {"default": tf.float32},
    "zero_batch_mismatch": {"default": tf.float32},
}


def _codec_outputs(name, inputs):
    """The outputs of codec signature `name` given its input placeholders."""
    if name == "bytes_out":
        return {"str_tensor_bytes": tf.identity(inputs["str_tensor"])}
    if name in ("complex", "scalar", "batch_mismatch") or name.startswith("zero_batch"):
        x = inputs["default"]
        nothing = 0.0 * tf.reduce_sum(x)  # keeps every output connected to the input

        def zeros(shape, dtype):
            return tf.cast(tf.zeros(shape) + nothing, dtype)

        return {
            "complex": lambda: {"tensor": tf.complex(x, tf.zeros_like(x))},
            "scalar": lambda: {"tensor": tf.reduce_sum(x)},
            "batch_mismatch": lambda: {
                "int_tensor": tf.cast(x, tf.int32),
                "str_tensor": tf.tile(tf.constant([["foo", "bar", "baz"]]),
                                      [1 + tf.cast(nothing, tf.int32), 1]),
            },
            "zero_batch": lambda: {"int_tensor": zeros([0, 2], tf.int32)},
            "zero_batch_multi": lambda: {
                "str_tensor": tf.strings.as_string(zeros([0, 1, 2], tf.int32)),
                "float_tensor": zeros([0, 3, 4], tf.float32),
            },
            "zero_batch_mismatch": lambda: {
                "int_tensor": zeros([0, 2], tf.int32),
                "str_tensor": tf.tile(tf.constant([["foo", "bar"]]),
                                      [1 + tf.cast(nothing, tf.int32), 1]),
            },
        }[name]()
    return {alias: tf.identity(tensor) for alias, tensor in inputs.items()}


def codec(export_dir):
    """Identity (and a few special-output) signatures over placeholders of unknown shape."""
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as sess:
        signatures = {}
        for name, spec in CODEC_SIGNATURES.items():
            scope = name.replace("/", "_")
            inputs = {alias: v1.placeholder(dtype, shape=None, name=f"{scope}_{alias}")
                      for alias, dtype in spec.items()}
            signatures[name] = _signature(inputs, _codec_outputs(name, inputs), PREDICT)
        return _save(export_dir, sess, signatures)


# ------------------------------------------------------------------------ examples model
def examples(export_dir):
    """Classify/regress signatures over serialized tf.Examples.

    "parse_check_regress" / "parse_check_classify" score each example as
        100*len(names) + sum(ratings, each non-finite rating counting 0.25)
        + 1000*sum(age) + 10000*(len(query) + len(location))
        + 100000*sum(intboolmix) + 0.5*count(names == "hello")
    so one number per example shows how the server turned the JSON into features
    (types included: a wrong feature type fails to parse).
    "vehicles" (classify): classes car/bike/bus, scores = feature "s" (3 floats).
    "echo_regress" (regress): outputs = feature "x" (1 float).
    """
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as sess:
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        parsed = v1.io.parse_example(serialized, {
            "names": v1.io.VarLenFeature(tf.string),
            "ratings": v1.io.VarLenFeature(tf.float32),
            "age": v1.io.VarLenFeature(tf.int64),
            "intboolmix": v1.io.VarLenFeature(tf.int64),
            "query": v1.io.VarLenFeature(tf.string),
            "location": v1.io.VarLenFeature(tf.string),
        })

        def per_example(sparse, values):
            return tf.sparse.reduce_sum(
                tf.SparseTensor(sparse.indices, values, sparse.dense_shape), axis=1)

        def count(key):
            return per_example(parsed[key], tf.ones_like(parsed[key].values, dtype=tf.float32))

        ratings = parsed["ratings"].values
        score = (
            100.0 * count("names")
            + per_example(parsed["ratings"], tf.where(tf.math.is_finite(ratings), ratings,
                                                      tf.fill(tf.shape(ratings), 0.25)))
            + 1000.0 * per_example(parsed["age"], tf.cast(parsed["age"].values, tf.float32))
            + 10000.0 * (count("query") + count("location"))
            + 100000.0 * per_example(parsed["intboolmix"],
                                     tf.cast(parsed["intboolmix"].values, tf.float32))
            + 0.5 * per_example(parsed["names"],
                                tf.cast(tf.equal(parsed["names"].values, "hello"), tf.float32))
        )
        score = tf.reshape(score, [-1])  # [batch]
        vehicles = v1.io.parse_example(serialized, {"s": v1.io.FixedLenFeature([3], tf.float32)})["s"]
        classes = tf.tile(tf.constant([["car", "bike", "bus"]]), [tf.shape(vehicles)[0], 1])
        echoed = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})["x"]
        signatures = {
            "parse_check_regress": _signature({"inputs": serialized}, {"outputs": score}, REGRESS),
            "parse_check_classify": _signature({"inputs": serialized},
                                               {"scores": tf.expand_dims(score, 1)}, CLASSIFY),
            "vehicles": _signature({"inputs": serialized},
                                   {"classes": classes, "scores": vehicles}, CLASSIFY),
            "echo_regress": _signature({"inputs": serialized}, {"outputs": echoed}, REGRESS),
        }
        return _save(export_dir, sess, signatures)


# ------------------------------------------------------------------------------ all
def build_all(root):
    """Every model the conformance cases use, under `root`; returns {key: base path}.

    Keys are the base paths a model config points at (several served names may share
    one, as in TF Serving's tests).
    """
    root = Path(root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths = {
        "half_plus_two": root / "saved_model_half_plus_two_cpu",
        "half_plus_two_2_versions": root / "saved_model_half_plus_two_2_versions",
        "half_plus_three": root / "saved_model_half_plus_three",
        "half_plus_two_tf2": root / "saved_model_half_plus_two_tf2_cpu",
        "codec": root / "json_tensor_codec",
        "examples": root / "json_examples",
    }
    half_plus_two(paths["half_plus_two"] / "00000123")
    half_plus_two(paths["half_plus_two_2_versions"] / "00000123", x2_classify=True)
    half_plus_two(paths["half_plus_two_2_versions"] / "00000124", x2_classify=True)
    half_plus_three(paths["half_plus_three"] / "00000123")
    half_plus_two_tf2(paths["half_plus_two_tf2"] / "00000123")
    codec(paths["codec"] / "00000123")
    examples(paths["examples"] / "00000123")
    return paths
