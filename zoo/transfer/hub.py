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
"""

from __future__ import annotations

from pathlib import Path

import keras

from zoo.errors import OptionError, ZooError


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
    """
    return HubLayer(handle, trainable=trainable, output_key=output_key, arguments=arguments, name=name)


def resolve_handle(handle):
    """A handle → the local directory of its SavedModel."""
    path = Path(str(handle)).expanduser()
    if path.exists():
        return path
    if "://" in str(handle) or str(handle).startswith(("tfhub.dev/", "kaggle.com/", "www.kaggle.com/")):
        try:
            import tensorflow_hub
        except ImportError as error:  # pragma: no cover - tensorflow-hub is a dependency
            raise ZooError(f"Resolving {handle} needs tensorflow-hub: {error}") from None
        try:
            return Path(tensorflow_hub.resolve(str(handle)))
        except Exception as error:  # no network, a wrong handle: one line naming it
            raise ZooError(f"Cannot resolve the hub handle {handle}: {type(error).__name__}: {error}. "
                           "Offline, pass the module's directory (or set $TFHUB_CACHE_DIR to a cache "
                           "holding it).") from None
    raise ZooError(f"No SavedModel at {handle}: not a directory, and not a tfhub.dev or Kaggle handle.")


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
    `hub_layer`."""

    def __init__(self, handle, trainable=False, output_key=None, arguments=None, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        if keras.backend.backend() != "tensorflow":
            raise OptionError(f"A TF Hub module is a TensorFlow graph: hub_layer needs KERAS_BACKEND=tensorflow. "
                              f"Received: backend={keras.backend.backend()!r}")
        self.handle = str(handle)
        self.output_key = output_key
        self.arguments = dict(arguments or {})
        self._module = _load(resolve_handle(handle))
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
                "arguments": self.arguments}


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
