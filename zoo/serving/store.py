"""The model store: the SavedModels a server serves, loaded by version policy, and the
errors a request can meet. The REST (`zoo.serving.rest`) and gRPC
(`zoo.serving.grpc_service`) front ends both serve a `ModelStore`; this module knows
neither of them.

    >>> store = ModelStore("models/", poll_seconds=0)
    >>> store.refresh()
    ['flowers/1']
    >>> store.get("flowers").predict("serving_default", {"images": batch})

A store is configured either by a base path or by TF Serving's model config file:

- `models/` holds `NAME/VERSION/` SavedModels as `zoo export` (or anything else) writes
  them (`models/NAME/` alone is served as NAME); each model serves its highest version,
  TF Serving's default policy.
- `--model_config_file`: TF Serving's text-format `ModelServerConfig`
  (`model_config_list { config { name base_path model_version_policy version_labels } }`),
  with `latest { num_versions }`, `all {}` or `specific { versions }` policies and
  labels such as `stable`/`canary`. The file is re-read when it changes.

A polling thread loads new versions without a restart; requests keep going to the
versions already loaded until a new one has loaded, and a version whose directory is
deleted stops being served. Signatures run as the SavedModel's own graph, not through
Keras, as TF Serving runs them: the MetaGraph in a `tf.compat.v1.Session`, TF1-era
SavedModels (whose signature tensors may carry no shape) and TF2 ones alike.

`ServingError` (and its `NotFound`, `BodyTooLarge`, `Unavailable`) carry the HTTP status
a refused request gets; the gRPC service maps them to status codes.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.serving import SIGNATURE_DEFAULT
from zoo.serving.errors import BodyTooLarge, FailedPrecondition, NotFound, ServingError, Unavailable  # noqa: F401

log = logging.getLogger("zoo.serving")


# ------------------------------------------------------------------------ servables
@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: np.dtype  # numpy dtype; `object` for DT_STRING
    shape: tuple | None  # None: unknown rank; -1 entries: any size
    dtype_name: str  # "DT_FLOAT": what error messages and metadata call it
    tensor_name: str = ""  # the graph tensor ("x:0"), for TF1 SavedModels


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: dict
    outputs: dict
    method_name: str = "tensorflow/serving/predict"

    @property
    def batchable(self):
        """Every input and output has a leading dimension of any size (TF Serving's
        batching concatenates requests along it and splits the answers on it)."""
        return all(
            info.shape is not None and len(info.shape) >= 1 and info.shape[0] < 0
            for info in (*self.inputs.values(), *self.outputs.values())
        )


class Servable:
    """One loaded version of one model: its signatures, ready to run.

    Args:
        name, version, path: the model, its version and its SavedModel directory.
        batching: a `zoo.serving.batching.BatchingParameters`, or None. With it, calls
            to a batchable signature from concurrent requests are merged into one.
        threads: `(intra_op, inter_op)` threads of the model's Session; 0 lets
            TensorFlow choose (one per core), as TF Serving's
            `--tensorflow_intra_op_parallelism` / `--tensorflow_inter_op_parallelism`.
    """

    def __init__(self, name, version, path, batching=None, threads=(0, 0)):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.name = name
        self.version = int(version)
        self.path = Path(path)
        self.batching = batching
        self._batchers = {}
        self._batchers_lock = threading.Lock()
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
        # Every SavedModel runs as TF Serving runs it: its MetaGraph in a Session, the
        # signature's tensors fed and fetched by name. TF2's object loader would bind
        # each call to the concrete function's input signature (refusing a shape the
        # graph accepts), and its v1-in-v2 loader reads a TF1 TensorInfo written
        # without a shape as a scalar ("Shapes must be equal rank, but are 2 and 0").
        self.tf1 = not graph.object_graph_def.nodes  # written by TF 1.x (for messages)
        self._callables = {}
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=int(threads[0]), inter_op_parallelism_threads=int(threads[1])))
        from tensorflow.python.util import deprecation

        with self._graph.as_default(), deprecation.silence():
            tf.compat.v1.saved_model.loader.load(self._session, ["serve"], str(self.path))
        self.signatures = {}
        for key, definition in self.signature_defs.items():
            if key.startswith("__"):
                continue  # "__saved_model_init_op": run by the loader, not by requests
            self.signatures[key] = Signature(
                name=key,
                inputs={k: _tensor_info(k, v) for k, v in definition.inputs.items()},
                outputs={k: _tensor_info(k, v) for k, v in definition.outputs.items()},
                method_name=definition.method_name,
            )

    def signature(self, name):
        name = name or SIGNATURE_DEFAULT
        if name not in self.signatures:
            raise FailedPrecondition(f'Serving signature key "{name}" not found.')
        return self.signatures[name]

    def predict(self, signature_name, inputs, output_filter=()):
        """Run a signature on `{input name: numpy array}`; returns `{output: array}`.

        Arrays must already have the signature's dtypes (REST converts JSON to them,
        gRPC sends typed tensors); names and dtypes are checked here so a bad request
        gets a message naming the input instead of a graph error. Shapes are left to
        the graph, as TF Serving leaves them; when the graph refuses one, the message
        also names the input whose shape is not the declared one.
        """
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
            array = np.asarray(array)
            if array.dtype != info.dtype and not (info.dtype == object and array.dtype.kind in "OSU"):
                raise ServingError(
                    f"Input {key!r} of signature {signature.name!r} must be {info.dtype_name}. "
                    f"Received: dtype={array.dtype.name}"
                )
            feeds[key] = array
        unknown = sorted(set(output_filter) - set(signature.outputs))
        if unknown:
            raise ServingError(
                f"output_filter names outputs {sorted(signature.outputs)} of {signature.name!r} "
                f"only. Received: output_filter={list(output_filter)}"
            )
        try:
            if self.batching is not None and signature.batchable:
                outputs = self.batcher(signature)(feeds)
            else:
                outputs = self.run(signature, feeds)
        except ServingError as error:
            # The graph's own words first, as TF Serving gives them; then, where an
            # input's shape is not the signature's, which input and what it wanted.
            hints = [_shape_hint(key, array.shape, signature.inputs[key], signature.name)
                     for key, array in feeds.items()]
            hints = [hint for hint in hints if hint]
            if hints:
                raise type(error)(f"{str(error).rstrip('.')}. {'; '.join(hints)}") from None
            raise
        return {key: outputs[key] for key in (output_filter or signature.outputs)}

    def run(self, signature, feeds):
        """The signature's graph on checked numpy feeds → `{output: numpy array}`."""
        import tensorflow as tf

        try:
            keys = sorted(feeds)
            values = self._callable(signature, tuple(keys))(*[feeds[key] for key in keys])
            return dict(zip(sorted(signature.outputs), values))
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise ServingError(_graph_error_message(error)) from None

    def _callable(self, signature, keys):
        # A callable, not Session.run: Session.run checks each feed's shape against the
        # placeholder's in Python, and TF Serving lets the graph decide (its
        # half_plus_two answers [[2.5, 3.0], [3.5, 4.0]] for [[1, 2], [3, 4]] sent to
        # an x of shape [-1, 1]).
        from tensorflow.core.protobuf import config_pb2

        cache_key = (signature.name, keys)
        function = self._callables.get(cache_key)
        if function is None:
            options = config_pb2.CallableOptions(
                feed=[signature.inputs[key].tensor_name for key in keys],
                fetch=[signature.outputs[key].tensor_name for key in sorted(signature.outputs)],
            )
            function = self._callables[cache_key] = self._session._make_callable_from_options(options)
        return function

    def batcher(self, signature):
        """The `Batcher` that merges concurrent calls to `signature` (one per signature)."""
        with self._batchers_lock:
            batcher = self._batchers.get(signature.name)
            if batcher is None:
                from zoo.serving.batching import Batcher

                batcher = Batcher(lambda feeds: self.run(signature, feeds), self.batching,
                                  name=f"{self.name}/{self.version}/{signature.name}")
                self._batchers[signature.name] = batcher
            return batcher

    def close(self):
        with self._batchers_lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()
        if self._session is not None:
            self._session.close()

    def status(self):
        return version_status(self.version, "AVAILABLE")


def version_status(version, state, error_code="OK", error_message=""):
    """One entry of TF Serving's `model_version_status`, as its REST API writes it."""
    return {
        "version": str(version),
        "state": state,
        "status": {"error_code": error_code, "error_message": error_message},
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
    from tensorflow.core.framework import types_pb2

    dtype = tf.dtypes.as_dtype(proto.dtype)
    if proto.tensor_shape.unknown_rank or not proto.HasField("tensor_shape"):
        shape = None  # a TF1 TensorInfo written without a shape: any shape
    else:
        shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    numpy_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
    return TensorInfo(name, numpy_dtype, shape, types_pb2.DataType.Name(proto.dtype), proto.name)


def _shape_hint(key, shape, info, signature_name):
    """Where `shape` is not the input's declared shape: a line saying so, else None."""
    if info.shape is None:
        return None
    fits = len(shape) == len(info.shape) and all(
        want < 0 or want == got for want, got in zip(info.shape, shape)
    )
    if fits:
        return None
    wanted = "[" + ", ".join("N" if d < 0 else str(d) for d in info.shape) + "]"
    return (f"Input {key!r} of signature {signature_name!r} is declared {wanted} "
            f"({info.dtype_name}). Received: shape={list(shape)}")


# ------------------------------------------------------------------- model config
@dataclass(frozen=True)
class ModelConfig:
    """One model a store serves: where its versions are and which of them to serve.

    `policy` is TF Serving's version policy: `"latest"` (the `count` highest versions),
    `"all"`, or `"specific"` (`versions`). `labels` maps names such as `"stable"` to
    versions.
    """

    name: str
    base_path: Path
    policy: str = "latest"
    count: int = 1
    versions: tuple = ()
    labels: tuple = ()  # ((label, version), ...): hashable, so configs compare


def read_model_config(path, data=None):
    """TF Serving's text-format `ModelServerConfig` file → `[ModelConfig]`.

    A relative `base_path` is taken relative to the file's directory. `data`, if given,
    is the file's bytes, already read. Raises `ZooError` (one line) for a file that
    cannot be read, is not UTF-8 or is not a valid config.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    try:
        text = (path.read_bytes() if data is None else data).decode("utf-8")
    except OSError as error:
        raise ZooError(f"Cannot read the model config file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ZooError(f"Cannot read the model config file {path}: it is not UTF-8 text "
                       f"({error.reason} at byte {error.start})") from None
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ZooError(f"{path} is not a text-format ModelServerConfig: {error}") from None
    return model_configs(config, relative_to=path.parent)


def model_configs(config, relative_to=None):
    """A `ModelServerConfig` proto → `[ModelConfig]`, checked as TF Serving checks it."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ZooError("custom_model_config is not supported: use model_config_list.")
    configs, names = [], set()
    for entry in config.model_config_list.config:
        if not entry.name:
            raise ZooError("Every model config needs a name.")
        if entry.name in names:
            raise ZooError(f"Illegal to list model {entry.name} multiple times in config list")
        names.add(entry.name)
        if entry.model_platform not in ("", "tensorflow"):
            raise ZooError(f"Model {entry.name}: model_platform {entry.model_platform!r} is not served here "
                           "(only 'tensorflow').")
        if not entry.base_path:
            raise ZooError(f"Model {entry.name} has no base_path.")
        base_path = Path(entry.base_path)
        if relative_to is not None and not base_path.is_absolute():
            base_path = Path(relative_to) / base_path
        policy = entry.model_version_policy.WhichOneof("policy_choice") or "latest"
        count, versions = 1, ()
        if policy == "latest":
            count = entry.model_version_policy.latest.num_versions or 1
        elif policy == "specific":
            versions = tuple(sorted(set(entry.model_version_policy.specific.versions)))
            if not versions:
                raise ZooError(f"Model {entry.name}: a specific version policy needs versions.")
        for label, version in entry.version_labels.items():
            if version <= 0:
                raise ZooError(f"Model {entry.name}: label {label!r} names version {version}.")
        configs.append(ModelConfig(entry.name, base_path, policy, count, versions,
                                   tuple(sorted(entry.version_labels.items()))))
    return configs


# ------------------------------------------------------------------------------ store
class ModelStore:
    """The models a server serves, each at the versions its policy asks for.

    Args:
        base_path: a directory of `NAME/VERSION/` SavedModels, or one `NAME/` holding
            `VERSION/` directories. Each model serves its highest version.
        poll_seconds: float. How often to look for new versions and a changed config
            file (TF Serving's default is 1 s). `0` disables polling; call
            `refresh()` yourself.
        model_config_file: TF Serving's text-format `ModelServerConfig`, instead of
            `base_path`: several models, version policies and labels.
        batching: a `zoo.serving.batching.BatchingParameters`, or None for no batching.
        on_load: called as `on_load(name, version, path, ok)` after each load attempt
            (metrics count them).
        threads: `(intra_op, inter_op)` Session threads for every model (0: TF's choice).
    """

    def __init__(self, base_path=None, poll_seconds=1.0, model_config_file=None, batching=None, on_load=None,
                 threads=(0, 0)):
        if (base_path is None) == (model_config_file is None):
            raise ZooError("Serve either a model base path or a --model_config_file, not both or neither.")
        self.base_path = Path(base_path) if base_path is not None else None
        if self.base_path is not None and not self.base_path.is_dir():
            raise ZooError(f"Model base path {self.base_path} is not a directory.")
        self.model_config_file = Path(model_config_file) if model_config_file is not None else None
        self._configs = None
        self._config_data = None  # the config file's bytes, as last read
        self._config_problem = None  # what was last logged about an unreadable config file
        if self.model_config_file is not None:
            try:
                self._config_data = self.model_config_file.read_bytes()
            except OSError as error:
                raise ZooError(f"Cannot read the model config file {self.model_config_file}: "
                               f"{error.strerror or error}") from None
            self._configs = read_model_config(self.model_config_file, self._config_data)  # a bad file fails at start
        self.poll_seconds = poll_seconds
        self.batching = batching
        self.threads = threads
        self.on_load = on_load
        self._versions = {}  # name -> {version: Servable}
        self._labels = {}  # name -> {label: version}
        self._failed = {}  # (name, version) -> (tree_stamp, message): retried once its files change
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # ---------------------------------------------------------------- configuration
    def model_dirs(self):
        if self.base_path is None:
            return {config.name: config.base_path for config in self.configs()}
        if version_dirs(self.base_path):
            return {self.base_path.resolve().name: self.base_path}
        return {
            p.name: p
            for p in sorted(self.base_path.iterdir())
            if p.is_dir() and not p.name.startswith(".")
        }

    def configs(self):
        if self._configs is not None:
            return list(self._configs)
        return [ModelConfig(name, path) for name, path in self.model_dirs().items()]

    def reload_config(self, configs):
        """Serve exactly `configs` (`[ModelConfig]`, e.g. from `model_configs(proto)`):
        new models and versions are loaded, dropped ones unloaded, labels moved.
        Returns when done, as TF Serving's HandleReloadConfigRequest does; raises
        `ZooError` if a label names a version that is not available."""
        with self._refresh_lock:
            previous = self._configs
            self._configs = list(configs)
            try:
                self._sync_all(strict=True)
            except ZooError:
                self._configs = previous
                self._sync_all()
                raise

    def _reread_config_file(self):
        """Serve the config file's new contents if they changed. A file that cannot be
        read, is not UTF-8 or is not a valid config is logged in one line, once until
        it changes again, and the last good config keeps serving."""
        if self.model_config_file is None:
            return
        try:
            data = self.model_config_file.read_bytes()
        except OSError as error:
            self._config_trouble(f"Cannot read the model config file {self.model_config_file}: "
                                 f"{error.strerror or error}")
            return
        if data == self._config_data:
            return
        self._config_data = data
        try:
            self._configs = read_model_config(self.model_config_file, data)
        except ZooError as error:
            self._config_problem = None  # a new version of the file: said once, even if the same complaint
            self._config_trouble(str(error))
            return
        self._config_problem = None
        log.info("model config %s changed: %s", self.model_config_file,
                 ", ".join(config.name for config in self._configs) or "(no models)")

    def _config_trouble(self, message):
        if message != self._config_problem:
            self._config_problem = message
            log.error("%s; serving the previous config", " ".join(message.split()))

    # ---------------------------------------------------------------------- loading
    def refresh(self):
        """Load what the config asks for and is not served yet, unload what it no
        longer asks for; returns the `name/version`s loaded."""
        with self._refresh_lock:
            self._reread_config_file()
            return self._sync_all()

    def _sync_all(self, strict=False):
        loaded = []
        configs = self.configs()
        for config in configs:
            loaded += self._sync(config, strict)
        wanted = {config.name for config in configs}
        for name in [n for n in self.names() if n not in wanted]:
            self._set(name, {}, {})
            log.info("stopped serving %s: no longer in the config", name)
        return loaded

    def _sync(self, config, strict=False):
        name = config.name
        with self._lock:
            current = dict(self._versions.get(name, {}))
        available = dict(version_dirs(config.base_path))
        # A deleted version directory (a rollback) stops being served.
        current = {v: s for v, s in current.items() if v in available and s.path.is_dir()}
        loaded, serving = [], {}
        if config.policy == "latest":
            # The highest versions that load; a broken newest version leaves the one
            # below it serving, as TF Serving does.
            for version in sorted(available, reverse=True):
                if len(serving) == config.count:
                    break
                servable = current.get(version) or self._load(name, version, available[version], loaded)
                if servable is not None:
                    serving[version] = servable
        else:
            wanted = sorted(available) if config.policy == "all" else [v for v in config.versions if v in available]
            for version in wanted:
                servable = current.get(version) or self._load(name, version, available[version], loaded)
                if servable is not None:
                    serving[version] = servable
        labels = {}
        for label, version in config.labels:
            if version in serving:
                labels[label] = version
            elif strict:
                raise ZooError(f"Request to assign label to version {version} of model {name}, "
                               "which is not currently available for inference")
            else:
                log.warning("label %s of model %s names version %s, which is not being served", label, name, version)
        self._set(name, serving, labels)
        if len(serving) < len(current) or set(serving) != set(current):
            gone = sorted(set(current) - set(serving))
            if gone:
                log.info("stopped serving %s version(s) %s", name, ", ".join(map(str, gone)))
        for version in set(current) - set(serving):
            current[version].close()
        return loaded

    def _load(self, name, version, path, loaded):
        key = (name, version)
        stamp = tree_stamp(path)
        if stamp is None:
            return None
        failed = self._failed.get(key)
        if failed is not None and failed[0] == stamp:
            return None
        try:
            servable = Servable(name, version, path, batching=self.batching, threads=self.threads)
        except Exception as error:  # a broken version must not stop the others
            self._failed[key] = (stamp, f"{type(error).__name__}: {error}")
            log.error("could not load %s version %s from %s: %s", name, version, path, error)
            if self.on_load:
                self.on_load(name, version, path, False)
            return None
        self._failed.pop(key, None)
        # TensorFlow leaves ~460k Python objects behind a load; a full collection walks
        # them all (~160 ms, a stall every request then waits out). They live as long as
        # the process, so they go to the permanent generation.
        gc.freeze()
        log.info("serving %s version %s from %s", name, version, path)
        loaded.append(f"{name}/{version}")
        if self.on_load:
            self.on_load(name, version, path, True)
        return servable

    def _set(self, name, serving, labels):
        with self._lock:
            if serving:
                self._versions[name] = serving
                self._labels[name] = labels
            else:
                self._versions.pop(name, None)
                self._labels.pop(name, None)

    # -------------------------------------------------------------------- requests
    def get(self, name, version=None, label=None):
        """The servable a request for `name` (at `version` or `label`) reaches."""
        with self._lock:
            versions = self._versions.get(name)
            labels = self._labels.get(name, {})
        if label is not None:
            if not versions or label not in labels:
                # TF Serving answers INVALID_ARGUMENT (400) here, not NOT_FOUND.
                raise ServingError(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if not versions:
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {request}")
        if version is None:
            return versions[max(versions)]
        if int(version) not in versions:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return versions[int(version)]

    def status(self, name, version=None):
        """TF Serving's `model_version_status` list for `name` (one version or all)."""
        with self._lock:
            versions = dict(self._versions.get(name, {}))
        failed = {v: message for (n, v), (_, message) in list(self._failed.items()) if n == name}
        if version is not None:
            version = int(version)
            if version in versions:
                return [versions[version].status()]
            if version in failed:
                return [version_status(version, "END", "UNKNOWN", failed[version])]
            raise NotFound(f"Could not find version {version} of model {name}")
        if not versions and not failed:
            raise NotFound(f"Could not find any versions of model {name}")
        statuses = {v: s.status() for v, s in versions.items()}
        for v, message in failed.items():
            statuses.setdefault(v, version_status(v, "END", "UNKNOWN", message))
        return [statuses[v] for v in sorted(statuses, reverse=True)]

    def names(self):
        with self._lock:
            return sorted(self._versions)

    def labels(self, name):
        with self._lock:
            return dict(self._labels.get(name, {}))

    def servables(self):
        with self._lock:
            return [s for versions in self._versions.values() for s in versions.values()]

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
        for servable in self.servables():
            servable.close()

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

