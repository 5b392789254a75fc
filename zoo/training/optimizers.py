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
