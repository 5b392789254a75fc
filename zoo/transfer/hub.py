"""TF Hub modules as Keras 3 layers (`zoo.transfer.hub_layer`).

A room of its own because it needs TensorFlow, like `zoo.data` and `zoo.serving`:
`zoo.transfer` itself stays backend-agnostic and imports this only when called.

`tensorflow_hub.KerasLayer` is a Keras 2 (`tf_keras`) layer, so a Keras 3 model refuses
it ("Only instances of keras.Layer can be added", tensorflow/hub#903, #920), and
`keras.layers.TFSMLayer` calls one endpoint without `training` or the module's
regularisation losses. `hub_layer` reads a TF2 SavedModel the way hub's reusable
SavedModels are meant to be used:

    >>> import keras, zoo
    >>> features = zoo.transfer.hub_layer("path/to/feature_vector", trainable=True)
    >>> inputs = keras.Input((224, 224, 3))
    >>> model = keras.Model(inputs, keras.layers.Dense(5)(features(inputs)))

- the module's `__call__(inputs, training)` is called with Keras' `training`, so its
  dropout and batch norm behave as in training or inference;
- its variables are the layer's weights, wrapping the module's own `tf.Variable`s (no
  copy): with `trainable=True` the module's trainable variables train and the others
  (batch-norm statistics) stay frozen; with `trainable=False` none change;
- its `regularization_losses` are added to the model's losses while it trains.

A handle is a local SavedModel directory, or a tfhub.dev / Kaggle handle that
tensorflow-hub resolves (and caches in `$TFHUB_CACHE_DIR`) on a connected machine.
TensorFlow backend only: the module is a TensorFlow graph.

A module is code, not data: loading a SavedModel runs its graph's ops (on load and on
every call), whatever they do — read or write files, open sockets — with the rights
of the process. So:

- the first time a process loads a module from outside the TF Hub cache zoo resolves
  handles into (a directory of your own, or a module fetched now), it prints one line
  saying so;
- a model file never fetches: a hub layer inside a `.keras` file loads the local
  directory recorded when it was saved (`local_path` in its config), or its handle if that
  is a local directory, or the cached copy of a module fetched earlier; a URL it would
  have to download is refused in one line (`RemoteCodeError`) unless the loader is told
  to trust it (`zoo.runs.load_model_file(path, trust_remote_code=True)`, the CLI's
  `--trust-remote-code`, or `with zoo.transfer.hub.trust_remote_code(): ...` around
  `zoo.load_run`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import sys
from pathlib import Path

import keras

from zoo.errors import OptionError, ZooError


class RemoteCodeError(ZooError):
    """A model file's hub layer names a module that would have to be downloaded, and
    the loader was not told to trust remote code."""


# Scoped, not global: set by the loader around one load (`trust_remote_code`), and by
# `HubLayer.from_config` while a layer is rebuilt from a file's config.
_TRUSTED = contextvars.ContextVar("zoo_hub_trust_remote_code", default=False)
_FROM_FILE = contextvars.ContextVar("zoo_hub_from_file", default=False)
# The module directories this process has already said it loads (the one-line notice).
_ANNOUNCED = set()


@contextlib.contextmanager
def trust_remote_code(trusted=True):
    """Within this block, a model file's hub layer may download its module from the URL
    it names (and so run that module's graph).

    Loading a model file never fetches otherwise. Only for files whose origin you trust:
    a module's graph runs its ops on load and on every call.

    >>> import zoo, zoo.transfer.hub
    >>> with zoo.transfer.hub.trust_remote_code():
    ...     run = zoo.load_run("runs/from-a-colleague")

    Args:
        trusted: bool. Whether to trust remote modules inside the block. Defaults to
            `True` (`False` turns trust off again inside an outer block).
    """
    token = _TRUSTED.set(bool(trusted))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def hub_layer(handle, trainable=False, output_key=None, arguments=None, name=None):
    """A Keras 3 layer over a TF2 SavedModel from TF Hub (or any path).

    Args:
        handle: str. A SavedModel directory, or a hub handle
            (`https://tfhub.dev/...`, `https://www.kaggle.com/models/...`) that
            tensorflow-hub resolves on a connected machine.
        trainable: bool. Fine-tune the module's trainable variables. Defaults to
            `False`.
        output_key: str or None. For a module that returns a dict, the output to
            use. Defaults to `None` (the module must return one tensor).
        arguments: dict or None. Extra keyword arguments for every call of the
            module (e.g. `{"batch_norm_momentum": 0.99}`). Defaults to `None`.
        name: str or None. The layer's name.

    Returns:
        A `HubLayer`.

    A module is code, not data: its graph's ops run when it loads and on every call,
    with your process's rights (file and network ops included). The first time a
    process loads a module from outside the TF Hub cache, zoo prints one line saying
    so. A model saved with a hub layer records the module's local directory; loading
    that file loads the directory and never downloads (see `trust_remote_code`).
    """
    return HubLayer(handle, trainable=trainable, output_key=output_key, arguments=arguments, name=name)


def is_remote(handle):
    """Whether `handle` is not a local path but something tensorflow-hub would fetch."""
    text = str(handle)
    return "://" in text or text.startswith(("tfhub.dev/", "kaggle.com/", "www.kaggle.com/"))


def cached_module(handle):
    """The directory where tensorflow-hub keeps `handle`'s module once fetched
    (`$TFHUB_CACHE_DIR/<sha1 of the handle>`), if it is there; looks, never fetches."""
    try:
        from tensorflow_hub import resolver
    except ImportError:  # pragma: no cover - tensorflow-hub is a dependency
        return None
    directory = Path(resolver.tfhub_cache_dir(use_temp=True)) / hashlib.sha1(str(handle).encode("utf8")).hexdigest()
    # tensorflow-hub downloads into a temporary directory and renames it: one that
    # exists and is not empty is a whole module.
    if directory.is_dir() and any(directory.iterdir()):
        return directory
    return None


def resolve_handle(handle):
    """A handle → the local directory of its SavedModel (a URL is fetched, or taken
    from tensorflow-hub's cache)."""
    return _locate(handle)[0]


def _locate(handle, path=None):
    """`(directory, fetched)`: where the module is on this machine, and whether it was
    downloaded now. Inside `HubLayer.from_config` (a model file) a download is refused
    unless `trust_remote_code` is on."""
    if path is not None:
        recorded = Path(str(path)).expanduser()
        if recorded.is_dir():  # the directory recorded at save time: the user's own disk
            return recorded, False
    local = Path(str(handle)).expanduser()
    if local.exists():
        return local, False
    if is_remote(handle):
        cached = cached_module(handle)
        if cached is not None:
            return cached, False
        if _FROM_FILE.get() and not _TRUSTED.get():
            raise RemoteCodeError(
                f"Refusing to download the hub module {handle} that the model file names: loading a model file "
                "never fetches (a module's graph runs its ops on load and on call). If you trust the file, pass "
                "--trust-remote-code (in Python: trust_remote_code=True, or `with "
                "zoo.transfer.hub.trust_remote_code():`).")
        try:
            import tensorflow_hub
        except ImportError as error:  # pragma: no cover - tensorflow-hub is a dependency
            raise ZooError(f"Resolving {handle} needs tensorflow-hub: {error}") from None
        try:
            return Path(tensorflow_hub.resolve(str(handle))), True
        except Exception as error:  # no network, a wrong handle: one line naming it
            raise ZooError(f"Cannot resolve the hub handle {handle}: {type(error).__name__}: {error}. "
                           "Offline, pass the module's directory (or set $TFHUB_CACHE_DIR to a cache "
                           "holding it).") from None
    raise ZooError(f"No SavedModel at {handle}: not a directory, and not a tfhub.dev or Kaggle handle.")


def _in_hub_cache(directory):
    try:
        from tensorflow_hub import resolver
    except ImportError:  # pragma: no cover - tensorflow-hub is a dependency
        return False
    return Path(directory).resolve().parent == Path(resolver.tfhub_cache_dir(use_temp=True)).resolve()


def _announce(directory, fetched_from=None):
    """One line, the first time this process loads a module from outside the TF Hub
    cache (a directory of the user's, or a module fetched now)."""
    key = str(Path(directory).resolve())
    if key in _ANNOUNCED or (fetched_from is None and _in_hub_cache(directory)):
        return
    _ANNOUNCED.add(key)
    source = f" (downloaded from {fetched_from})" if fetched_from else ""
    print(f"zoo: loading the TF Hub module at {directory}{source}: a module runs its own TensorFlow graph, on "
          "load and on every call, with this process's rights; load only modules you trust.",
          file=sys.stderr, flush=True)


def _load(path):
    import tensorflow as tf

    if (path / "tfhub_module.pb").exists():
        raise ZooError(f"{path} is a TF1 hub module (hub.Module format): Keras 3 cannot call it. Use the "
                       "module's TF2 SavedModel version (most tfhub.dev models have one).")
    if not (path / "saved_model.pb").exists():
        raise ZooError(f"{path} holds no saved_model.pb: not a SavedModel.")
    try:
        return tf.saved_model.load(str(path))
    except Exception as error:
        raise ZooError(f"Cannot load the SavedModel at {path}: {type(error).__name__}: {error}") from None


@keras.saving.register_keras_serializable(package="zoo")
class HubLayer(keras.layers.Layer):
    """A TF2 SavedModel's `__call__` (or `serving_default` signature) as a layer; see
    `hub_layer`. Its config records `local_path`, the module's directory on this
    machine, which a saved model loads back instead of resolving `handle` again."""

    def __init__(self, handle, trainable=False, output_key=None, arguments=None, local_path=None, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        if keras.backend.backend() != "tensorflow":
            raise OptionError(f"A TF Hub module is a TensorFlow graph: hub_layer needs KERAS_BACKEND=tensorflow. "
                              f"Received: backend={keras.backend.backend()!r}")
        self.handle = str(handle)
        self.output_key = output_key
        self.arguments = dict(arguments or {})
        directory, fetched = _locate(handle, local_path)
        # Recorded in the config: a saved model loads this directory back, never a URL.
        self.local_path = str(Path(directory).resolve())
        _announce(directory, self.handle if fetched else None)
        self._module = _load(directory)
        self._signature = None
        if callable(self._module) and hasattr(self._module, "__call__") and _has_call(self._module):
            self._accepts_training = _accepts_training(self._module)
        elif "serving_default" in getattr(self._module, "signatures", {}):
            self._signature = self._module.signatures["serving_default"]
            self._accepts_training = False
        else:
            raise ZooError(f"The SavedModel at {self.handle} has neither a callable `__call__` nor a "
                           "`serving_default` signature: nothing to call.")
        # A reusable hub SavedModel lists its `variables`; any other module's are the
        # ones its functions capture.
        variables = list(getattr(self._module, "variables", None) or [])
        if not variables:
            functions = [self._signature] if self._signature is not None else \
                list(getattr(self._module.__call__, "concrete_functions", []))
            for function in functions:
                variables += list(function.variables)
        seen = set()
        for variable in variables:
            if id(variable) in seen:
                continue
            seen.add(id(variable))
            # A Keras variable around the module's own tf.Variable (no copy): what the
            # optimizer updates is what the module's graph reads.
            wrapped = keras.Variable(initializer=variable, trainable=variable.trainable, dtype=variable.dtype,
                                     shape=variable.shape, name=variable.name.split(":")[0].replace("/", "_"))
            self._track_variable(wrapped)
        self._regularizers = list(getattr(self._module, "regularization_losses", None) or [])
        self.built = True

    def call(self, inputs, training=None):
        import tensorflow as tf

        if self._signature is not None:
            outputs = self._signature(tf.convert_to_tensor(inputs), **self.arguments)
        elif self._accepts_training:
            outputs = self._module(inputs, training=bool(training) and self.trainable, **self.arguments)
        else:
            outputs = self._module(inputs, **self.arguments)
        if self.trainable and training:
            for regularizer in self._regularizers:
                self.add_loss(regularizer())
        return self._select(outputs)

    def _select(self, outputs):
        if isinstance(outputs, dict):
            if self.output_key is None:
                if len(outputs) == 1:
                    return next(iter(outputs.values()))
                raise ZooError(f"The module at {self.handle} returns {sorted(outputs)}: pass output_key= one of "
                               "them.")
            if self.output_key not in outputs:
                raise ZooError(f"output_key={self.output_key!r} is not an output of {self.handle}; it returns "
                               f"{sorted(outputs)}.")
            return outputs[self.output_key]
        if self.output_key is not None:
            raise ZooError(f"output_key={self.output_key!r} given, but {self.handle} returns one tensor, not a dict.")
        return outputs

    def compute_output_spec(self, inputs, training=None):
        import tensorflow as tf

        # Trace the module on a symbolic input to learn its output's shape and dtype.
        spec = tf.TensorSpec(inputs.shape, inputs.dtype)

        @tf.function(input_signature=[spec])
        def probe(x):
            return self.call(x, training=False)

        output = probe.get_concrete_function().structured_outputs
        return keras.KerasTensor(output.shape, dtype=output.dtype.name)

    def get_config(self):
        return {**super().get_config(), "handle": self.handle, "output_key": self.output_key,
                "arguments": self.arguments, "local_path": self.local_path}

    @classmethod
    def from_config(cls, config):
        # A config comes from a file (or clone_model): the layer is rebuilt with
        # downloads refused unless the loader trusts remote code (see `_locate`). Built
        # here rather than through Layer.from_config, which turns every error into a
        # TypeError that names the whole config.
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        token = _FROM_FILE.set(True)
        try:
            return cls(**config)
        finally:
            _FROM_FILE.reset(token)


def _has_call(module):
    # A restored object is always "callable" in Python terms; only one saved with a
    # tf.function `__call__` has concrete functions behind it.
    call = getattr(type(module), "__call__", None)
    return call is not None and hasattr(module.__call__, "concrete_functions") or \
        hasattr(getattr(module, "__call__", None), "concrete_functions")


def _accepts_training(module):
    """Whether the module's `__call__` was saved with a `training` argument."""
    function = module.__call__
    for concrete in getattr(function, "concrete_functions", []):
        spec = getattr(concrete, "structured_input_signature", None)
        if spec and ("training" in spec[1] or len(spec[0]) >= 2):
            return True
    return False
