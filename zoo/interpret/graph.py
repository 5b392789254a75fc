"""Reading a layer's output, and feeding float pixels, in any Keras image model.

keras-io's Grad-CAM builds `keras.Model(model.inputs, [layer.output, model.output])`,
which breaks in Keras 3 on a base nested inside the model ("Graph disconnected",
keras#16355) and on a Sequential or loaded model that was "never called" (keras#20116).
zoo does not build sub-models at all: it runs the model as it is and taps the layer
while it runs. `tapped(model, layer)` wraps the layer's `call` for the duration of one
forward pass, so the tap works at any depth of nesting, on Functional, Sequential and
subclassed models alike, and on every backend.

A tap can also *add* a tensor to the layer's output. Differentiating the score with
respect to that added tensor (zero in value) is differentiating it with respect to the
layer's activation — the one way to get an intermediate gradient that works with
`jax.grad` as well as with `tf.GradientTape`.

zoo's models take uint8 images, and a gradient cannot flow through an integer input.
`pixel_layer(model)` is the first layer that sees the pixels (zoo's `Preprocess`, which
casts them to float); the forward pass replaces what that layer receives with float
pixels, so gradients reach the image, and SmoothGrad's noisy or integrated gradients'
interpolated images (not integers) reach the model unrounded.
"""

from __future__ import annotations

import contextlib

from zoo.errors import OptionError

POOLING = ("MaxPooling2D", "AveragePooling2D", "MaxPool2D", "AvgPool2D")
# Layers that only pass a feature map on (a last conv block ending in one of these is
# still the block before it).
PASS_THROUGH = POOLING + ("Dropout", "SpatialDropout2D", "ZeroPadding2D", "Cropping2D", "GaussianNoise",
                          "ActivityRegularization")


def is_model(layer):
    import keras

    return isinstance(layer, keras.Model) or (hasattr(layer, "layers") and hasattr(layer, "inputs"))


def leaf_layers(model):
    """Every layer that is not itself a model, nested models opened, in the order the
    model's graph lists them (a topological order for Functional and Sequential)."""
    found = []
    for layer in model.layers:
        if is_model(layer):
            found.extend(leaf_layers(layer))
        elif layer.__class__.__name__ != "InputLayer":
            found.append(layer)
    return found


def layer_names(model):
    return [layer.name for layer in leaf_layers(model)]


def find_layer(model, name):
    """The layer called `name` anywhere in `model` (nested models searched too), or a
    `keras.layers.Layer` passed through.

    Raises:
        ValueError: naming the layer and suggesting close names.
    """
    if not isinstance(name, str):
        return name
    for layer in leaf_layers(model):
        if layer.name == name:
            return layer
    for layer in model.layers:  # a nested model may itself be asked for by name
        if layer.name == name:
            return layer
    import difflib

    names = layer_names(model)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else f" Its 4-D layers: {', '.join(spatial_layer_names(model)[-8:])}"
    raise OptionError(f"`layer` must name a layer of {model.name}.{hint} Received: layer={name!r}")


def output_rank(layer):
    """The rank of a layer's output, from the graph when it has been called in one."""
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def spatial_layer_names(model):
    return [layer.name for layer in leaf_layers(model) if output_rank(layer) == 4]


def last_conv_layer(model):
    """The layer Grad-CAM looks at by default: the end of the last convolutional block,
    i.e. the last layer with a 4-D `(N, H, W, C)` output, stepping back over pooling and
    dropout that follow it (VGG19: `block5_conv4`, 14x14; ResNet50: `conv5_block3_out`;
    InceptionV3: `mixed10`), as Selvaraju et al. use the last convolutional layer.

    Raises:
        ValueError: when the model has no 4-D layer (nothing spatial to map).
    """
    layers = leaf_layers(model)
    spatial = [layer for layer in layers if output_rank(layer) == 4]
    if not spatial:
        raise OptionError(f"{model.name} has no layer with a (N, H, W, C) output, so there is no map to "
                         "show where it looked: Grad-CAM needs a convolutional model. Try method='saliency'.")
    index = len(spatial) - 1
    while index > 0 and spatial[index].__class__.__name__ in PASS_THROUGH:
        index -= 1
    return spatial[index]


def pixel_layer(model):
    """The first layer that receives the image: where float pixels are fed in when the
    model's own input is integer (uint8) and would cut the gradient off."""
    layer = model
    while is_model(layer):
        inner = [l for l in layer.layers if l.__class__.__name__ != "InputLayer"]
        if not inner:
            raise OptionError(f"{model.name} has no layers.")
        layer = inner[0]
    return layer


def input_dtype(model):
    try:
        return str(model.inputs[0].dtype)
    except (AttributeError, ValueError, IndexError, TypeError):
        return "float32"


def output_layer(model):
    """The last leaf layer: the one whose softmax, if any, is taken off for logits."""
    return leaf_layers(model)[-1]


class Stop(Exception):
    """Raised by a tap with `stop=True` once the layer has run: the rest of the model
    is not computed when only the layer's output is wanted."""


@contextlib.contextmanager
def tapped(layer, replace_input=None, add_to_output=None, record=None, stop=False):
    """While inside, calls of `layer` take `replace_input` as their input (when given),
    add `add_to_output` to their output (when given) and append their output (before
    the addition) to the list `record`; with `stop`, raise `Stop` right after."""
    bound = layer.call

    def call(inputs, *args, **kwargs):
        if replace_input is not None:
            inputs = replace_input
        outputs = bound(inputs, *args, **kwargs)
        if record is not None:
            record.append(outputs)
        if stop:
            raise Stop()
        if add_to_output is not None:
            outputs = outputs + add_to_output
        return outputs

    with replaced_call(layer, call):
        yield


@contextlib.contextmanager
def replaced_call(layer, call):
    """While inside, `layer` runs `call(inputs, *args, **kwargs)` instead of its own
    (an instance attribute shadowing the method; Keras' `__call__` looks it up each time)."""
    original = layer.__dict__.get("call")
    layer.call = call
    try:
        yield
    finally:
        if original is None:
            del layer.call
        else:
            layer.call = original


def passes_through(inputs, *args, **kwargs):
    return inputs


@contextlib.contextmanager
def replaced_activation(layer, activation):
    """While inside, `layer` (a Conv2D, Dense, ...) applies `activation` instead of its own."""
    original = layer.activation
    layer.activation = activation
    try:
        yield original
    finally:
        layer.activation = original


def activation_name(layer):
    return getattr(getattr(layer, "activation", None), "__name__", "")


def is_activation_layer(layer, names=("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU")):
    return layer.__class__.__name__ in names


@contextlib.contextmanager
def without_softmax(model):
    """While inside, the model outputs logits: a final softmax is taken off (Grad-CAM's
    and the gradients' score is the class's score *before* the softmax, as the papers
    use, so that other classes' scores do not enter its gradient). Yields whether a
    softmax was found."""
    import keras

    layer = output_layer(model)
    softmax_layer = layer.__class__.__name__ == "Softmax" or (
        layer.__class__.__name__ == "Activation" and activation_name(layer) == "softmax")
    if softmax_layer:
        with replaced_call(layer, passes_through):
            yield True
    elif activation_name(layer) == "softmax":
        with replaced_activation(layer, keras.activations.linear):
            yield True
    else:
        yield False
