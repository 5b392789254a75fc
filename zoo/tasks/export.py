"""What every task's `signatures` shares (the contract is in `zoo.tasks`' docstring).

A task module's `signatures(source, top_k=5, classes=None)` returns `(endpoints,
metadata)`; `zoo.serving.export` writes the endpoints with `keras.export.ExportArchive`
and publishes them. A model that belongs to no task, or a task's bare model with nothing
of its run around it (a registry model, a `.keras` file), is exported by
`model_signatures`: one `serving_default`, its input (named `inputs`) → `outputs`.

Nothing here imports TensorFlow or Keras until a function runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.errors import ZooError

SIGNATURE_DEFAULT = "serving_default"  # TF Serving's default signature key
NO_TASK = "other"  # zoo.json's task for a model that belongs to no task


def model_of(source):
    """The Keras model of a `signatures` source: a run's `.model`, or the model itself."""
    from zoo import runs

    return source.model if isinstance(source, runs.Run) else source


def check_one_input_one_output(model):
    """Raise `ZooError` unless `model` is a built model with one input and one output."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise ZooError(
            "export handles models with one input and one output, built with keras.Input. "
            f"Received: {model.name}, a {type(model).__name__} with no symbolic inputs")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ZooError(
            "export handles models with one input and one output. "
            f"Received: {len(inputs)} inputs and {len(outputs)} outputs ({model.name})"
        )


def image_input_size(model):
    """`[height, width]` of a model taking `(N, H, W, 3)` images of a fixed size, else None."""
    shape = tuple(model.inputs[0].shape)
    if len(shape) == 4 and shape[-1] == 3 and None not in shape[1:]:
        return [int(d) for d in shape[1:3]]
    return None


def call(model, inputs):
    """`model(inputs)` for inference. A model built as keras.Model([input], ...) expects a
    list; a bare tensor works but warns on every trace."""
    return model([inputs] if isinstance(model.input, list) else inputs, training=False)


def model_signatures(model):
    """The export of a plain model: `serving_default`, its one input as `inputs` (its
    own dtype and shape) → `outputs`. Metadata: the input size of an image model."""
    import tensorflow as tf

    check_one_input_one_output(model)
    spec = tf.TensorSpec(model.inputs[0].shape, tf.as_dtype(model.inputs[0].dtype), name="inputs")

    @tf.function(input_signature=[spec])
    def serve(inputs):
        return {"outputs": call(model, inputs)}

    endpoints = {SIGNATURE_DEFAULT: (serve, {"inputs": ["inputs"], "outputs": ["outputs"]})}
    return endpoints, {"input_size": image_input_size(model)}


@dataclass
class Portable:
    """What one LiteRT or ONNX file holds (`zoo.serving.portable`): a task module's
    `portable(source, classes=None)` returns it (the contract is in `zoo.tasks`).

    Attributes:
        function: a `tf.function` with an `input_signature` of named `TensorSpec`s whose
            batch dimension is None, returning a dict of named outputs: the file's
            inputs and outputs, by those names.
        model: the Keras model it calls (named in a refusal).
        files: `{file name: text}` written beside the file (`labels.txt`).
        metadata: `{key: text}` the ONNX file carries too (`labels`).
        calibration: `callable(folder_or_None) -> uint8 (N, ...)` inputs for int8
            quantisation (a run's own training images), or None where int8 is not offered.
    """

    function: object
    model: object
    files: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    calibration: object = None


def model_portable(model):
    """The portable file of a plain model: its forward pass, its one input (`inputs`,
    its own dtype and shape) → `outputs`, as `model_signatures` exports it."""
    import tensorflow as tf

    check_one_input_one_output(model)
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.as_dtype(model.inputs[0].dtype), name="inputs")

    @tf.function(input_signature=[spec])
    def forward(inputs):
        return {"outputs": call(model, inputs)}

    return Portable(function=forward, model=model)
