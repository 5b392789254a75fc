"""A model as one LiteRT (TFLite) or ONNX file, beside its SavedModel, and a runner for
both that answers as `zoo predict RUN` does.

    >>> import zoo
    >>> zoo.export("runs/flowers", "models/", "flowers", format=["savedmodel", "litert", "onnx"])
    [PosixPath('models/flowers/1'), PosixPath('models/flowers/flowers.tflite'),
     PosixPath('models/flowers/flowers.onnx')]

What a file holds is its task's `portable(source)` (`zoo.tasks.export.Portable`): one
function, named inputs → named outputs, with the same contract as the SavedModel.

- Image classifier: `images` uint8 RGB `(batch, H, W, 3)` in, the model's preprocessing
  inside, `probabilities` out; the class names go beside the file in `labels.txt` (one
  per line, TFLite's convention) and into the ONNX file's metadata.
- Autoencoder: `images` uint8 → `reconstructions` uint8. DCGAN: the generator,
  `latents` float32 → `images` uint8.
- Char-LSTM: one step, `token_ids` int32 `(batch,)` and `states` float32 → `logits` and
  `new_states`, with `vocabulary.json` beside it; a runtime loops it (README: "Run it
  elsewhere"). Generation inside the graph stays SavedModel-only.
- Any other model: its own forward pass, `inputs` → `outputs`.

The files sit in the model's folder next to its versions (`models/flowers/flowers.tflite`),
which TF Serving and `zoo serve` skip: only all-digit names are versions.

- LiteRT: TensorFlow's converter on a one-endpoint SavedModel of that function, built-in
  ops only. `quantize="float16"` stores the weights as float16; `"int8"` (classifiers)
  is full-integer post-training quantisation, calibrated on `representative` images (a
  run's own training images by default), with uint8 in and float probabilities out. The
  file is named for it (`flowers.int8.tflite`). Run with the `ai-edge-litert`
  interpreter (TensorFlow's own `tf.lite.Interpreter` where that is not installed).
- ONNX: tf2onnx on the same function (what Keras' `model.export(format="onnx")` does
  for a model's forward pass), verified by loading it in onnxruntime.

A file is converted into a temporary name beside its place, loaded and run once in its
runtime, and renamed into place, so nothing is half-written; an existing file is kept
unless `overwrite=True`. A model the converter cannot take is refused in one line
naming the format and the op or layer.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from zoo import io
from zoo.errors import OptionError, ZooError
from zoo.tasks.image_classifier_export import LABELS_FILE

FORMATS = ("savedmodel", "litert", "onnx")
SUFFIXES = {"litert": ".tflite", "onnx": ".onnx"}
QUANTIZATIONS = ("float16", "int8")
ONNX_OPSET = 17


def formats_from(value):
    """`"litert,onnx"`, `["savedmodel", "onnx"]` or `"onnx"` → a tuple of known formats,
    in the order given, each once."""
    items = value.split(",") if isinstance(value, str) else list(value)
    chosen = []
    for item in (str(i).strip().lower() for i in items):
        if item in ("tflite", "lite"):
            item = "litert"
        if item not in FORMATS:
            raise OptionError(f"format {item!r} is not one zoo exports: choose from {', '.join(FORMATS)}")
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise OptionError(f"no format given: choose from {', '.join(FORMATS)}")
    return tuple(chosen)


def file_path(model_dir, name, fmt, quantize=None):
    """Where a format's file goes: `MODEL_DIR/NAME[.QUANTIZE].tflite|.onnx`."""
    middle = f".{quantize}" if quantize else ""
    return Path(model_dir) / f"{name}{middle}{SUFFIXES[fmt]}"


def export_file(source, model_dir, name, fmt, quantize=None, representative=None, classes=None, overwrite=False):
    """Write `source` (a `zoo.serving.export.Source`) as one LiteRT or ONNX file in
    `model_dir`, with its task's files (`labels.txt`) beside it; returns its path.
    `representative`: uint8 images, or a folder of them, for int8 calibration."""
    if fmt not in SUFFIXES:
        raise OptionError(f"format {fmt!r}: one file is written for {', '.join(SUFFIXES)} only")
    if quantize is not None and (fmt != "litert" or quantize not in QUANTIZATIONS):
        raise OptionError(f"--quantize {quantize}: LiteRT files are quantised to {' or '.join(QUANTIZATIONS)}; "
                          f"{fmt} files are written in float32")
    portable = portable_of(source, fmt, classes)
    path = file_path(model_dir, name, fmt, quantize)
    io.refuse_overwrite([path], overwrite=overwrite)
    if quantize == "int8":
        if portable.calibration is None:
            raise OptionError(f"--quantize int8 calibrates on images and is built for image classifiers; this is a "
                              f"{source.task} model: use --quantize float16, or none")
        if representative is None or isinstance(representative, (str, os.PathLike)):
            representative = portable.calibration(representative)
    # Converted under a temporary name beside its place (with the format's suffix, which
    # the converters and runtimes go by), loaded and run once, then renamed into place.
    with io.atomic_path(path, fsync=True) as temporary:
        if fmt == "litert":
            temporary.write_bytes(_litert_bytes(portable, quantize, representative))
        else:
            _write_onnx(portable, temporary)
        check_file(temporary, fmt, portable)
    for file_name, text in portable.files.items():
        io.write_text(Path(model_dir) / file_name, text)
    return path


def portable_of(source, fmt, classes=None):
    """What the file of a `Source` holds: its task module's `portable(...)`, else (a
    model of no task, or a task with nothing to add) the model's own forward pass."""
    from zoo import tasks
    from zoo.tasks.export import NO_TASK, model_of, model_portable

    module = tasks.get(source.task) if source.task != NO_TASK else None
    make = getattr(module, "portable", None)
    if make is None:
        return model_portable(model_of(source.source))
    return make(source.source, classes=classes)


def _layer_names(model):
    return [layer.name for layer in model._flatten_layers(include_self=False)]


# ------------------------------------------------------------------------------ LiteRT
def _litert_bytes(portable, quantize, representative):
    """TensorFlow's converter on a one-endpoint SavedModel of the portable function
    (Keras' own LiteRT path: a Keras 3 model's variables are frozen from there), built-in
    ops only, so that the file runs on any LiteRT runtime without TensorFlow's kernels."""
    import tempfile

    import keras
    import tensorflow as tf

    model = portable.model
    with tempfile.TemporaryDirectory(prefix="zoo-litert-") as folder:
        archive = keras.export.ExportArchive()
        archive.add_endpoint("serve", portable.function)
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            images = np.asarray(representative, dtype="uint8")

            def calibration():
                for image in images:
                    yield [image[None]]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            # The converter's C++ side reports on file descriptor 2, a page per refusal;
            # what matters of it is in the exception, and a success needs no words.
            with io.captured_stderr():
                return converter.convert()
        except Exception as error:  # the converter's ConverterError, and what it raises on the way
            raise ZooError(f"LiteRT cannot convert {model.name}: {_unsupported(str(error), _layer_names(model))}") \
                from None


def _unsupported(text, layer_names=()):
    """The converter's long report → the ops and the layers it names, in one line."""
    ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)'", text) + re.findall(r"\b(tf\.[A-Z][A-Za-z0-9_]+)\b", text)))
    # Where: `fused["Betainc:", "model_1/odd_1/Betainc@__inference_..."]` names the op's
    # layer path.
    layers = _layers_on_paths(re.findall(r'fused\["[^"]*", "([^"@]+)@', text), layer_names)
    if ops:
        where = f" (in layer {', '.join(layers[:3])})" if layers else ""
        return f"the op{'s' if len(ops) > 1 else ''} {', '.join(ops)}{where} {'have' if len(ops) > 1 else 'has'} " \
               f"no LiteRT kernel (LiteRT runs TFLite's built-in ops only)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "the converter failed")
    return first[:300]


def _layers_on_paths(paths, layer_names):
    """The user's layers that ops' graph paths (`model_1/odd_1/Betainc`) go through: for
    each path, its deepest layer of the model (Keras' call-count suffix dropped)."""
    known, layers = set(layer_names), []
    for path in paths:
        found = [part for part in (re.sub(r"_\d+$", "", p) for p in path.split("/")[1:-1]) if part in known]
        if found and found[-1] not in layers:
            layers.append(found[-1])
    return layers


class LiteRTRunner:
    """A `.tflite` file on the LiteRT interpreter (XNNPACK on CPU). `runner(**inputs)`
    → `{output: array}` by the file's names (a batch of any size); `run(batch)` → the
    first output of a one-input file (a classifier's probabilities)."""

    def __init__(self, path, threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # TensorFlow's copy of the same interpreter
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        self.path = Path(path)
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
            if not interpreter.get_signature_list():
                raise ValueError("it has no signature (named inputs and outputs)")
            self._signature = interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as error:
            raise ZooError(f"{path} is not a LiteRT model this interpreter can load: {_first(error)}") from None
        self._inputs = self._signature.get_input_details()
        self._outputs = self._signature.get_output_details()
        self.inputs, self.outputs = list(self._inputs), list(self._outputs)
        first = self._inputs[self.inputs[0]]
        self.size = tuple(int(d) for d in first["shape"][1:3])

    def __call__(self, **inputs):
        fed = {name: np.asarray(value, dtype=self._inputs[name]["dtype"]) for name, value in inputs.items()}
        answers = self._signature(**fed)
        out = {}
        for name, value in answers.items():
            scale, zero = self._outputs[name].get("quantization", (0.0, 0))
            if value.dtype in (np.int8, np.uint8) and scale and self._outputs[name]["dtype"] != np.uint8:
                value = (value.astype("float32") - zero) * scale
            out[name] = value
        return out

    def run(self, batch):
        return np.asarray(self(**{self.inputs[0]: batch})[self.outputs[0]], dtype="float32")


# -------------------------------------------------------------------------------- ONNX
def _write_onnx(portable, path):
    function, model = portable.function, portable.model
    try:
        import tf2onnx

        try:  # tf2onnx 1.16/1.17 still reads np.object/np.cast, gone in NumPy 2; Keras' export patches them
            from keras.src.export.tf2onnx_lib import patch_tf2onnx

            with warnings.catch_warnings():  # the patch's own probe of np.object warns
                warnings.simplefilter("ignore", FutureWarning)
                patch_tf2onnx()
        except ImportError:
            pass
        import onnx
    except ImportError as error:
        raise ZooError(f"ONNX export needs tf2onnx and onnx (pip install 'zoo[export]'): {_first(error)}") from None
    try:
        # tf2onnx logs every op it cannot map at ERROR on its way to raising; the raise says it.
        with io.captured_stderr():
            proto, _ = tf2onnx.convert.from_function(function, input_signature=list(function.input_signature),
                                                     opset=ONNX_OPSET)
    except Exception as error:
        raise ZooError(f"ONNX cannot convert {model.name}: {_unsupported(str(error), _layer_names(model))}") from None
    # tf2onnx leaves an op it cannot map in the graph under its TensorFlow name, which
    # no ONNX runtime loads: name it (and its layer) now, as the LiteRT converter does.
    unmapped = [node for node in proto.graph.node if not onnx.defs.has(node.op_type, node.domain or "")]
    if unmapped:
        ops = sorted({f"tf.{node.op_type}" for node in unmapped})
        layers = _layers_on_paths([node.name for node in unmapped], _layer_names(model))
        where = f" (in layer {', '.join(layers[:3])})" if layers else ""
        raise ZooError(f"ONNX cannot convert {model.name}: the op{'s' if len(ops) > 1 else ''} {', '.join(ops)}"
                       f"{where} {'have' if len(ops) > 1 else 'has'} no ONNX equivalent in tf2onnx (opset {ONNX_OPSET})")
    for key, value in portable.metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


class OnnxRunner:
    """A `.onnx` file on onnxruntime's CPU provider: `runner(**inputs)` → `{output:
    array}`; `run(batch)` → the first output of a one-input file."""

    def __init__(self, path, threads=None):
        try:
            import onnxruntime
        except ImportError:
            raise ZooError("running an ONNX file needs onnxruntime (pip install 'zoo[export]')") from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise ZooError(f"{path} is not an ONNX model onnxruntime can load: {_first(error)}") from None
        self.path = Path(path)
        self._types = {i.name: _ONNX_TYPES.get(i.type, "float32") for i in self._session.get_inputs()}
        self.inputs = [i.name for i in self._session.get_inputs()]
        self.outputs = [o.name for o in self._session.get_outputs()]
        shape = self._session.get_inputs()[0].shape
        self.size = tuple(d if isinstance(d, int) else 0 for d in shape[1:3])

    def __call__(self, **inputs):
        fed = {name: np.asarray(value, dtype=self._types[name]) for name, value in inputs.items()}
        return dict(zip(self.outputs, self._session.run(None, fed)))

    def run(self, batch):
        return np.asarray(self(**{self.inputs[0]: batch})[self.outputs[0]], dtype="float32")


_ONNX_TYPES = {"tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64",
               "tensor(float)": "float32", "tensor(float16)": "float16"}


def runner(path, threads=None):
    """The runner for an exported file, by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        return LiteRTRunner(path, threads)
    if suffix == ".onnx":
        return OnnxRunner(path, threads)
    raise OptionError(f"{path}: an exported file is a .tflite or .onnx file")


def check_file(path, fmt, portable):
    """Load what was written in its runtime and run it once on one zero input of each
    name, so a file that would not load, or answers in the wrong shape, is never
    published."""
    run = (LiteRTRunner if fmt == "litert" else OnnxRunner)(path, threads=1)
    specs = portable.function.input_signature
    inputs = {spec.name: np.zeros([1 if d is None else d for d in spec.shape], spec.dtype.as_numpy_dtype)
              for spec in specs}
    expected = {name: tuple(1 if d is None else d for d in spec.shape)
                for name, spec in portable.function.get_concrete_function().structured_outputs.items()}
    got = run(**inputs)
    shapes = {name: tuple(value.shape) for name, value in got.items()}
    finite = all(np.all(np.isfinite(value)) for value in got.values() if value.dtype.kind == "f")
    if shapes != expected or not finite:
        raise ZooError(f"the {fmt} conversion of {portable.model.name} is wrong (one input gives {shapes}, "
                       f"not {expected}{' finite' if not finite else ''}), so it was not written")


def labels_beside(path, num_outputs):
    """The class names in `labels.txt` beside an exported file, else "0", "1", ..."""
    labels_file = Path(path).with_name(LABELS_FILE)
    if labels_file.is_file():
        labels = io.read_config_text(labels_file, "labels file").splitlines()
        if len(labels) == num_outputs:
            return labels
    return [str(i) for i in range(num_outputs)]


def predict_file(path, images, top=1, batch_size=32, tta=False):
    """`zoo predict FILE.tflite|FILE.onnx IMAGES`: the same rows as `Run.predict`, for
    an exported image classifier."""
    from zoo.tasks.classify import classify_batches

    run = runner(path)
    if run.outputs != ["probabilities"] or len(run.inputs) != 1:
        raise ZooError(f"{path}: zoo predict runs an exported image classifier (images → probabilities); this file "
                       f"takes {', '.join(run.inputs)} and gives {', '.join(run.outputs)}")
    return classify_batches(images, run.run, run.size, lambda n: labels_beside(path, n), top=top,
                            batch_size=batch_size, tta=tta)


def _first(error):
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
