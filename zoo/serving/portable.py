"""An image classifier as one LiteRT (TFLite) or ONNX file, beside its SavedModel, and a
runner for both that answers as `zoo predict RUN` does.

    >>> import zoo
    >>> zoo.export("runs/flowers", "models/", "flowers", format=["savedmodel", "litert", "onnx"])
    [PosixPath('models/flowers/1'), PosixPath('models/flowers/flowers.tflite'),
     PosixPath('models/flowers/flowers.onnx')]

The contract is the SavedModel's `serving_uint8`: uint8 RGB `(batch, H, W, 3)` in, the
model's preprocessing inside, class probabilities out; the class names go beside the
file in `labels.txt` (one per line, TFLite's convention; the ONNX file also carries them
in its metadata). The files sit in the model's folder next to its versions
(`models/flowers/flowers.tflite`), which TF Serving and `zoo serve` skip: only all-digit
names are versions.

- LiteRT: TensorFlow's converter on the model's forward pass. `quantize="float16"`
  stores the weights as float16; `"int8"` is full-integer post-training quantisation,
  calibrated on `representative` images (a run's own training images by default), with
  uint8 in and float probabilities out. The file is named for it
  (`flowers.int8.tflite`). Run with the `ai-edge-litert` interpreter (TensorFlow's
  own `tf.lite.Interpreter` where that is not installed).
- ONNX: Keras' `model.export(format="onnx")` (tf2onnx underneath), verified by loading
  it in onnxruntime.

A file is converted into a temporary name beside its place and renamed into place, so
nothing is half-written; an existing file is kept unless `overwrite=True`. A model the
converter cannot take is refused in one line naming the format and the op or layer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from zoo import io
from zoo.errors import OptionError, ZooError

FORMATS = ("savedmodel", "litert", "onnx")
SUFFIXES = {"litert": ".tflite", "onnx": ".onnx"}
QUANTIZATIONS = ("float16", "int8")
LABELS_FILE = "labels.txt"
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
    """Write `source` (a `zoo.serving.export.Source` of an image classifier) as one
    LiteRT or ONNX file in `model_dir`, with `labels.txt` beside it; returns its path."""
    if fmt not in SUFFIXES:
        raise OptionError(f"format {fmt!r}: one file is written for {', '.join(SUFFIXES)} only")
    if quantize is not None and (fmt != "litert" or quantize not in QUANTIZATIONS):
        raise OptionError(f"--quantize {quantize}: LiteRT files are quantised to {' or '.join(QUANTIZATIONS)}; "
                          f"{fmt} files are written in float32")
    model, classes = classifier_of(source, fmt, classes)
    path = file_path(model_dir, name, fmt, quantize)
    io.refuse_overwrite([path], overwrite=overwrite)
    if quantize == "int8" and representative is None:
        from zoo.tasks.image_classifier_export import calibration_images

        representative = calibration_images(source.source, tuple(model.inputs[0].shape[1:3]))
    # Converted under a temporary name beside its place (with the format's suffix, which
    # the converters and runtimes go by), loaded and run once, then renamed into place.
    with io.atomic_path(path, fsync=True) as temporary:
        if fmt == "litert":
            temporary.write_bytes(_litert_bytes(model, quantize, representative))
        else:
            _write_onnx(model, classes, temporary)
        check_file(temporary, fmt, model)
    io.write_text(Path(model_dir) / LABELS_FILE, "".join(f"{c}\n" for c in classes))
    return path


def classifier_of(source, fmt, classes=None):
    """The Keras model (uint8 in, probabilities out) and class names (`classes`, else
    the run's, else the registry's) of an image classifier `Source`; anything else is
    refused, naming the format."""
    import keras

    if source.task != "image-classification":
        raise ZooError(f"{fmt} export is built for image classifiers so far; this is a {source.task} model "
                       f"(export it as a SavedModel)")
    run = source.source
    model = run if isinstance(run, keras.Model) else run.model
    inputs = model.inputs[0]
    if len(model.inputs) != 1 or len(inputs.shape) != 4 or None in tuple(inputs.shape[1:]):
        raise ZooError(f"{fmt} export takes a model with one (batch, height, width, 3) input of a fixed size; "
                       f"{model.name} takes {[tuple(i.shape) for i in model.inputs]}")
    from zoo import models
    from zoo.tasks.classify import class_names

    given = classes or (None if isinstance(run, keras.Model) else (list(getattr(run, "classes", []) or []) or None))
    name = source.model_name if source.model_name in models.list_models() else None
    return model, class_names(model, name, given, int(model.outputs[0].shape[-1]))


# ------------------------------------------------------------------------------ LiteRT
def _litert_bytes(model, quantize, representative):
    """TensorFlow's converter on a one-endpoint SavedModel of the forward pass (Keras'
    own LiteRT path: a Keras 3 model's variables are frozen from there), built-in ops
    only, so that the file runs on any LiteRT runtime without TensorFlow's kernels."""
    import tempfile

    import keras
    import tensorflow as tf

    height, width = (int(d) for d in model.inputs[0].shape[1:3])
    with tempfile.TemporaryDirectory(prefix="zoo-litert-") as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda images: model(images, training=False),
                             input_signature=[tf.TensorSpec((None, height, width, 3), tf.uint8, name="images")])
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
            names = [layer.name for layer in model._flatten_layers(include_self=False)]
            raise ZooError(f"LiteRT cannot convert {model.name}: {_unsupported(str(error), names)}") from None


def _unsupported(text, layer_names=()):
    """The converter's long report → the ops and the layers it names, in one line."""
    ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)'", text) + re.findall(r"\b(tf\.[A-Z][A-Za-z0-9_]+)\b", text)))
    # Where: `fused["Betainc:", "model_1/odd_1/Betainc@__inference_..."]` names the op's
    # layer path; its last layer (Keras' call-count suffix dropped) is the user's layer.
    known, layers = set(layer_names), []
    for path in re.findall(r'fused\["[^"]*", "([^"@]+)@', text):
        found = [part for part in (re.sub(r"_\d+$", "", p) for p in path.split("/")[1:-1]) if part in known]
        if found and found[-1] not in layers:  # the deepest layer of the model on the op's path
            layers.append(found[-1])
    if ops:
        where = f" (in layer {', '.join(layers[:3])})" if layers else ""
        return f"the op{'s' if len(ops) > 1 else ''} {', '.join(ops)}{where} {'have' if len(ops) > 1 else 'has'} " \
               f"no LiteRT kernel (LiteRT runs TFLite's built-in ops only)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "the converter failed")
    return first[:300]


class LiteRTRunner:
    """A `.tflite` file on the LiteRT interpreter (XNNPACK on CPU): `run(uint8 batch) ->
    probabilities`, one image at a time resized as the batch needs."""

    def __init__(self, path, threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # TensorFlow's copy of the same interpreter
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        self.path = Path(path)
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        except (ValueError, RuntimeError) as error:
            raise ZooError(f"{path} is not a LiteRT model this interpreter can load: {_first(error)}") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.size = tuple(int(d) for d in self._input["shape"][1:3])
        self._batch = None

    def run(self, batch):
        batch = np.asarray(batch, dtype=self._input["dtype"])
        if self._batch != len(batch):
            self._interpreter.resize_tensor_input(self._input["index"], [len(batch), *self.size, 3])
            self._interpreter.allocate_tensors()
            self._batch = len(batch)
        self._interpreter.set_tensor(self._input["index"], batch)
        self._interpreter.invoke()
        out = self._interpreter.get_tensor(self._output["index"])
        scale, zero = self._output.get("quantization", (0.0, 0))
        if out.dtype != np.float32 and scale:
            out = (out.astype("float32") - zero) * scale
        return np.asarray(out, dtype="float32")


# -------------------------------------------------------------------------------- ONNX
def _write_onnx(model, classes, path):
    import keras

    height, width = (int(d) for d in model.inputs[0].shape[1:3])
    spec = keras.InputSpec(shape=(None, height, width, 3), dtype="uint8")
    try:
        model.export(path, format="onnx", input_signature=[spec], verbose=False, opset_version=ONNX_OPSET)
    except ImportError as error:
        raise ZooError(f"ONNX export needs tf2onnx and onnx (pip install 'zoo[export]'): {_first(error)}") from None
    except Exception as error:
        names = [layer.name for layer in model._flatten_layers(include_self=False)]
        raise ZooError(f"ONNX cannot convert {model.name}: {_unsupported(str(error), names)}") from None
    import onnx

    proto = onnx.load(path)
    proto.metadata_props.add(key="labels", value="\n".join(classes))
    proto.metadata_props.add(key="input", value="uint8 RGB (batch, height, width, 3); preprocessing inside")
    onnx.save(proto, path)


class OnnxRunner:
    """A `.onnx` file on onnxruntime's CPU provider: `run(uint8 batch) -> probabilities`."""

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
        self._input = self._session.get_inputs()[0]
        self.size = tuple(int(d) for d in self._input.shape[1:3])

    def run(self, batch):
        (out,) = self._session.run(None, {self._input.name: np.asarray(batch, dtype="uint8")})[:1]
        return np.asarray(out, dtype="float32")


def runner(path, threads=None):
    """The runner for an exported file, by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        return LiteRTRunner(path, threads)
    if suffix == ".onnx":
        return OnnxRunner(path, threads)
    raise OptionError(f"{path}: an exported file is a .tflite or .onnx file")


def check_file(path, fmt, model):
    """Load what was written in its runtime and run one image, so a file that would not
    load is never published."""
    run = (LiteRTRunner if fmt == "litert" else OnnxRunner)(path, threads=1)
    out = run.run(np.zeros((1, *run.size, 3), "uint8"))
    expected = int(model.outputs[0].shape[-1])
    if out.shape != (1, expected) or not np.all(np.isfinite(out)):
        raise ZooError(f"the {fmt} conversion of {model.name} is wrong (one image gives an output of shape "
                       f"{out.shape}, not (1, {expected}) finite probabilities), so it was not written")


def labels_beside(path, num_outputs):
    """The class names in `labels.txt` beside an exported file, else "0", "1", ..."""
    labels_file = Path(path).with_name(LABELS_FILE)
    if labels_file.is_file():
        labels = io.read_config_text(labels_file, "labels file").splitlines()
        if len(labels) == num_outputs:
            return labels
    return [str(i) for i in range(num_outputs)]


def predict_file(path, images, top=1, batch_size=32):
    """`zoo predict FILE.tflite|FILE.onnx IMAGES`: the same rows as `Run.predict`."""
    from zoo.tasks.classify import classify_batches

    run = runner(path)
    return classify_batches(images, run.run, run.size, lambda n: labels_beside(path, n), top=top,
                            batch_size=batch_size)


def _first(error):
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
