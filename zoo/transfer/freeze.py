"""Freezing and unfreezing the base of a model, BatchNorm kept in inference mode.

The head is every layer named `head_*` (what `replace_head` adds); the base is the rest.

In Keras 3 a BatchNormalization layer with `trainable=False` runs in inference mode: it
normalises with its moving statistics and never updates them. That is what a frozen
pretrained block needs. When a base is unfrozen, its BatchNorm layers stay frozen by
default: with small fine-tuning batches, re-estimating ImageNet statistics wrecks the
features the head was just trained on (keras-team/keras#9214). `train_bn=True` lets
them train again, on purpose.
"""

from __future__ import annotations

from zoo.training import recompile

HEAD_PREFIX = "head_"


def is_head(layer):
    return layer.name.startswith(HEAD_PREFIX)


def is_batch_norm(layer):
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def base_layers(model):
    """The base's layers in graph order (inputs and the head excluded)."""
    return [layer for layer in model.layers if not is_head(layer) and layer.__class__.__name__ != "InputLayer"]


def head_layers(model):
    return [layer for layer in model.layers if is_head(layer)]


def _position(model, point, argument):
    """Index into `base_layers(model)` for a layer name or a fraction in [0, 1]."""
    layers = base_layers(model)
    if isinstance(point, str):
        names = [layer.name for layer in layers]
        if point not in names:
            raise ValueError(
                f"`{argument}` must name a layer of {model.name}'s base, or be a fraction in "
                f"[0, 1]. Received: {argument}={point!r}"
            )
        return names.index(point)
    if isinstance(point, (int, float)) and not isinstance(point, bool) and 0 <= point <= 1:
        return int(round(point * len(layers)))
    raise ValueError(
        f"`{argument}` must be a layer name or a fraction in [0, 1]. Received: {argument}={point!r}"
    )


def freeze(model, until=None):
    """Freeze the base (all of it, or up to and including layer `until`).

    Args:
        model: keras.Model. A model with a `replace_head` head (or any model: with no
            `head_*` layers, the whole model is the base).
        until: str, float or None. A layer name (frozen inclusive), a fraction of the
            base's layers (from the input side), or None for the whole base.

    Returns:
        The model, changed in place (and recompiled if it was compiled).
    """
    layers = base_layers(model)
    stop = len(layers) if until is None else _position(model, until, "until") + (1 if isinstance(until, str) else 0)
    for layer in layers[:stop]:
        layer.trainable = False
    for layer in layers[stop:]:
        layer.trainable = True
    for layer in head_layers(model):
        layer.trainable = True
    recompile(model)
    return model


def unfreeze(model, from_=None, train_bn=False):
    """Make the base trainable from layer `from_` on (or all of it).

    Args:
        model: keras.Model.
        from_: str, float or None. First layer to train (a name or a fraction of the base
            from the input side); None unfreezes the whole base.
        train_bn: bool. Also train BatchNorm layers (and let them update their moving
            statistics). Defaults to `False`: they stay in inference mode.

    Returns:
        The model, changed in place (and recompiled if it was compiled).
    """
    layers = base_layers(model)
    start = 0 if from_ is None else _position(model, from_, "from_")
    for index, layer in enumerate(layers):
        trainable = index >= start and (train_bn or not is_batch_norm(layer))
        layer.trainable = trainable
    for layer in head_layers(model):
        layer.trainable = True
    recompile(model)
    return model


def trainable_summary(model):
    """`(trainable, frozen)` parameter counts."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return trainable, frozen


def layerwise_multipliers(model, lr_mult):
    """Multipliers spaced geometrically over the base's weighted layers.

    The first weighted layer of the base gets `1 / lr_mult`, the last one just below 1,
    the head 1: earlier (more generic) features move less, as in fastai's
    `slice(lr / lr_mult, lr)`.
    """
    weighted = [layer for layer in base_layers(model) if layer.trainable_weights]
    multipliers = {}
    count = len(weighted)
    for index, layer in enumerate(weighted):
        exponent = 1.0 - index / count  # 1 at the input, -> 0 towards the head
        for variable in layer.trainable_weights:
            multipliers[variable.path] = float(lr_mult ** -exponent)
    return multipliers
