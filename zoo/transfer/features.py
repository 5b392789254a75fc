"""Cached features: a frozen base gives the same features every epoch, so compute them
once and train the head on them — the same model, a fraction of the compute.
"""

from __future__ import annotations

from zoo.transfer.freeze import head_layers


def head_split(model):
    """`(cache_tensor, trained_head_layers)`: where features can be cached, and the
    head layers that still train. Weightless head layers right after the base
    (global pooling) are folded into the cached features."""
    head = head_layers(model)
    if not head:
        raise ValueError(f"{model.name} has no `head_*` layers: use zoo.transfer.replace_head first.")
    start = 0
    while start < len(head) and not head[start].weights and "Dropout" not in type(head[start]).__name__:
        start += 1
    cache_tensor = head[start].input if start < len(head) else head[-1].output
    return cache_tensor, head[start:]


def feature_extractor(model):
    """The model from its input to the cached features (the frozen base + pooling)."""
    import keras

    cache_tensor, _ = head_split(model)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, cache_tensor, name=f"{model.name}_features")


def head_model(model):
    """A model from cached features to the output, sharing the head's layers."""
    import keras

    cache_tensor, trained = head_split(model)
    inputs = keras.Input(shape=tuple(cache_tensor.shape[1:]), name="features")
    x = inputs
    for layer in trained:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def frozen_base(model):
    """Whether `model` has a head and its base has nothing left to train."""
    from zoo.transfer.freeze import base_layers

    return bool(head_layers(model)) and not any(layer.trainable_weights for layer in base_layers(model))


def cached_features(model):
    """`(feature_extractor, head_model)` for training the head on features computed
    once (`zoo.training.lr_find(..., features=...)`), or None when the base still
    trains and its features would change every step."""
    return (feature_extractor(model), head_model(model)) if frozen_base(model) else None
