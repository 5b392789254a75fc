"""Discriminative learning rates: each variable's step scaled by its own multiplier.

Scaling gradients would not work for Adam (it is invariant to gradient scale), so the
multiplier is applied to the learning rate inside `update_step`, which every Keras 3
backend calls once per variable.
"""

import keras


@keras.saving.register_keras_serializable(package="zoo")
class DiscriminativeAdam(keras.optimizers.Adam):
    """Adam whose learning rate is multiplied per variable.

    Args:
        lr_multipliers: dict. `{variable.path: multiplier}`; missing paths use 1.0.
        **kwargs: passed to `keras.optimizers.Adam`.
    """

    def __init__(self, lr_multipliers=None, **kwargs):
        super().__init__(**kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})

    def build(self, variables):
        super().build(variables)
        # By index: inside a TF graph update_step sees raw tf.Variables, which have no path.
        self._multiplier_by_index = [self.lr_multipliers.get(v.path, 1.0) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._multiplier_by_index[self._get_variable_index(variable)]
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}


def layerwise_multipliers(model, lr_mult):
    """Multipliers spaced geometrically over the base's weighted layers.

    The first weighted layer of the base gets `1 / lr_mult`, the last one just below 1,
    the head 1: earlier (more generic) features move less, as in fastai's
    `slice(lr / lr_mult, lr)`.
    """
    from zoo.transfer.freeze import base_layers

    weighted = [layer for layer in base_layers(model) if layer.trainable_weights]
    multipliers = {}
    count = len(weighted)
    for index, layer in enumerate(weighted):
        exponent = 1.0 - index / count  # 1 at the input, -> 0 towards the head
        for variable in layer.trainable_weights:
            multipliers[variable.path] = float(lr_mult ** -exponent)
    return multipliers
