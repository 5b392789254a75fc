"""The model store: the SavedModels under a base path, loaded and kept at their newest
version, and the errors a request can meet. The REST (`zoo.serving.rest`) and gRPC
(`zoo.serving.grpc_service`) front ends both serve a `ModelStore`; this module knows
neither of them.

    >>> store = ModelStore("models/", poll_seconds=0)
    >>> store.refresh()
    ['flowers/1']
    >>> store.get("flowers").predict("serving_default", {"images": batch})

`models/` holds `NAME/VERSION/` SavedModels as `zoo export` (or anything else) writes
them; `models/NAME/` alone is served as NAME. Like TF Serving's default version policy,
each model serves its highest version, and a newer version directory is loaded by a
polling thread without a restart; requests keep going to the previous version until
the new one has loaded. Signatures are run as the SavedModel's concrete functions,
not through Keras, as TF Serving runs them.

`ServingError` (and its `NotFound`, `BodyTooLarge`) carry the HTTP status a refused
request gets; the gRPC service maps them to status codes.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.serving import SIGNATURE_DEFAULT

log = logging.getLogger("zoo.serving")


class ServingError(Exception):
    """A request the server refuses; `status` is its HTTP status (4xx)."""

    status = 400


class NotFound(ServingError):
    status = 404


class BodyTooLarge(ServingError):
    status = 413


# ------------------------------------------------------------------------ servables
@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: np.dtype  # numpy dtype; `object` for DT_STRING
    shape: tuple | None  # None: unknown rank; -1 entries: any size
    dtype_name: str  # "DT_FLOAT": what error messages and metadata call it


@dataclass(frozen=True)
class Signature:
    name: str
    function: object
    inputs: dict
    outputs: dict


class Servable:
    """One loaded version of one model: its signatures, ready to run."""

    def __init__(self, name, version, path):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.name = name
        self.version = int(version)
        self.path = Path(path)
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((self.path / "saved_model.pb").read_bytes())
        graph = next(
            (g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags),
            None,
        )
        if graph is None:
            raise ZooError(f"{self.path} has no MetaGraph tagged 'serve'")
        # Kept as the proto so GetModelMetadata answers exactly what TF Serving would.
        self.signature_defs = graph.signature_def
        self._loaded = tf.saved_model.load(str(self.path), tags=["serve"])
        self.signatures = {}
        for key, function in self._loaded.signatures.items():
            definition = self.signature_defs[key]
            self.signatures[key] = Signature(
                name=key,
                function=function,
                inputs={k: _tensor_info(k, v) for k, v in definition.inputs.items()},
                outputs={k: _tensor_info(k, v) for k, v in definition.outputs.items()},
            )

    def signature(self, name):
        name = name or SIGNATURE_DEFAULT
        if name not in self.signatures:
            raise ServingError(
                f'Serving signature name: "{name}" not found in signature def. '
                f"Available: {sorted(self.signatures)}. Received: signature_name={name!r}"
            )
        return self.signatures[name]

    def predict(self, signature_name, inputs, output_filter=()):
        """Run a signature on `{input name: numpy array}`; returns `{output: array}`.

        Arrays must already have the signature's dtypes (REST converts JSON to them,
        gRPC sends typed tensors); names, dtypes and shapes are checked here so a bad
        request gets a message naming the input instead of a graph error.
        """
        import tensorflow as tf

        signature = self.signature(signature_name)
        missing = sorted(set(signature.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(signature.inputs))
        if missing or extra:
            raise ServingError(
                f"Signature {signature.name!r} takes inputs {sorted(signature.inputs)}. "
                f"Received: inputs={sorted(inputs)}"
            )
        feeds = {}
        for key, array in inputs.items():
            info = signature.inputs[key]
            if array.dtype != info.dtype and not (info.dtype == object and array.dtype.kind in "OSU"):
                raise ServingError(
                    f"Input {key!r} of signature {signature.name!r} must be {info.dtype_name}. "
                    f"Received: dtype={array.dtype.name}"
                )
            _check_shape(key, array.shape, info, signature.name)
            feeds[key] = tf.constant(array, dtype=tf.string if info.dtype == object else info.dtype)
        unknown = sorted(set(output_filter) - set(signature.outputs))
        if unknown:
            raise ServingError(
                f"output_filter names outputs {sorted(signature.outputs)} of {signature.name!r} "
                f"only. Received: output_filter={list(output_filter)}"
            )
        try:
            results = signature.function(**feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise ServingError(_graph_error_message(error)) from None
        wanted = output_filter or signature.outputs
        return {key: results[key].numpy() for key in wanted}

    def status(self):
        return {
            "version": str(self.version),
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }


def _graph_error_message(error):
    """The line of a TF error that says what was wrong (not "Graph execution error:",
    node names or stack placeholders)."""
    message = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in message.splitlines()]
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    useful = [line for line in lines if line and not line.startswith(noise)]
    text = useful[-1] if useful else (lines[0] if lines else type(error).__name__)
    return re.sub(r"\s*\[\[.*$|\s*\[Op:.*$", "", text)


def _tensor_info(name, proto):
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    numpy_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
    from tensorflow.core.framework import types_pb2

    return TensorInfo(name, numpy_dtype, shape, types_pb2.DataType.Name(proto.dtype))


def _check_shape(key, shape, info, signature_name):
    if info.shape is None:
        return
    fits = len(shape) == len(info.shape) and all(
        want < 0 or want == got for want, got in zip(info.shape, shape)
    )
    if not fits:
        wanted = "[" + ", ".join("N" if d < 0 else str(d) for d in info.shape) + "]"
        raise ServingError(
            f"Input {key!r} of signature {signature_name!r} must have shape {wanted} "
            f"({info.dtype_name}). Received: shape={list(shape)}"
        )


# ------------------------------------------------------------------------------ store
class ModelStore:
    """The models under a base path, each at its highest loadable version.

    Args:
        base_path: a directory of `NAME/VERSION/` SavedModels, or one `NAME/` holding
            `VERSION/` directories.
        poll_seconds: float. How often to look for new versions (TF Serving's
            default is 1 s). `0` disables polling; call `refresh()` yourself.
    """

    def __init__(self, base_path, poll_seconds=1.0):
        self.base_path = Path(base_path)
        if not self.base_path.is_dir():
            raise ZooError(f"Model base path {self.base_path} is not a directory.")
        self.poll_seconds = poll_seconds
        self._servables = {}
        self._failed = {}  # (name, version) -> tree_stamp: retried once its files change
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def model_dirs(self):
        if version_dirs(self.base_path):
            return {self.base_path.resolve().name: self.base_path}
        return {
            p.name: p
            for p in sorted(self.base_path.iterdir())
            if p.is_dir() and not p.name.startswith(".")
        }

    def refresh(self):
        """Load any model or version newer than what is served; returns names loaded."""
        loaded = []
        with self._refresh_lock:
            for name, model_dir in self.model_dirs().items():
                current = self._servables.get(name)
                available = version_dirs(model_dir)
                if current is not None and not current.path.is_dir():
                    # Its directory was deleted (a rollback): fall back to the highest
                    # version left, as TF Serving does, or stop serving the model.
                    current = None
                    if not available:
                        with self._lock:
                            self._servables.pop(name, None)
                        log.info("stopped serving %s: no versions left", name)
                for version, path in reversed(available):
                    if current is not None and version <= current.version:
                        break
                    key = (name, version)
                    stamp = tree_stamp(path)
                    if stamp is None:
                        continue
                    if self._failed.get(key) == stamp:
                        continue
                    try:
                        servable = Servable(name, version, path)
                    except Exception as error:  # a broken version must not stop the others
                        self._failed[key] = stamp
                        log.error("could not load %s version %s from %s: %s", name, version, path, error)
                        continue
                    with self._lock:
                        self._servables[name] = servable
                    log.info("serving %s version %s from %s", name, version, path)
                    loaded.append(f"{name}/{version}")
                    break
        return loaded

    def get(self, name, version=None):
        with self._lock:
            servable = self._servables.get(name)
        if servable is None:
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {request}")
        if version is not None and int(version) != servable.version:
            raise NotFound(
                f"Servable not found for request: Specific({name}, {version}). "
                f"Serving version {servable.version} (the highest one)."
            )
        return servable

    def names(self):
        with self._lock:
            return sorted(self._servables)

    def start(self):
        self.refresh()
        if self.poll_seconds and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="zoo-model-poll", daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _poll(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must outlive a bad directory listing
                log.exception("model poll failed")


def tree_stamp(path):
    """`(files, bytes, newest mtime)` of everything under `path`, or None if it vanished.

    A version copied in file by file (not renamed into place) fails to load while half
    there; it is retried whenever any of its files changes — the directory's own mtime
    would not move when `variables/` fills up.
    """
    count = size = newest = 0
    try:
        for root, _, files in os.walk(path):
            for name in files:
                info = os.stat(os.path.join(root, name))
                count, size, newest = count + 1, size + info.st_size, max(newest, info.st_mtime_ns)
        newest = max(newest, os.stat(path).st_mtime_ns)
    except OSError:
        return None
    return count, size, newest


def version_dirs(model_dir):
    """`[(version, path)]` ascending; only all-digit directories holding a SavedModel."""
    found = []
    try:
        entries = list(Path(model_dir).iterdir())
    except OSError:
        return found
    for path in entries:
        if path.name.isdigit() and int(path.name) > 0 and (path / "saved_model.pb").is_file():
            found.append((int(path.name), path))
    return sorted(found)

