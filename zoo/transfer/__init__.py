"""Transfer learning shared by every image model: the policy, not the loop.

Heads (`replace_head`), freezing (`freeze`, `unfreeze`, BatchNorm kept in inference
mode), layer groups (`layerwise_multipliers`), cached features (`cached_features`, for
`zoo.training.lr_find(..., features=...)` and the frozen phase), two-phase `fine_tune`,
and TF Hub modules as Keras 3 layers (`hub_layer`: the TensorFlow-backend code is
`zoo.transfer.hub`, imported when called). Training itself goes through `zoo.training.fit`.
"""

from zoo.transfer.head import replace_head  # noqa: F401
from zoo.transfer.features import cached_features  # noqa: F401,E402
from zoo.transfer.fine_tune import fine_tune, fit_one_cycle  # noqa: F401,E402
from zoo.transfer.freeze import freeze, layerwise_multipliers, unfreeze  # noqa: F401,E402


def hub_layer(handle, trainable=False, output_key=None, arguments=None, name=None):
    """A TF Hub module (a TF2 SavedModel) as a Keras 3 layer; see `zoo.transfer.hub`.

    A module is code: its graph's ops run on load and on every call (zoo says so in one
    line the first time a process loads one from outside the TF Hub cache)."""
    from zoo.transfer.hub import hub_layer as build

    return build(handle, trainable=trainable, output_key=output_key, arguments=arguments, name=name)
