"""Transfer learning shared by every image model: the policy, not the loop.

Heads (`replace_head`), freezing (`freeze`, `unfreeze`, BatchNorm kept in inference
mode), layer groups (`layerwise_multipliers`), cached features, two-phase `fine_tune`
and `lr_find` on cached features. Training itself goes through `zoo.training.fit`.
"""

from zoo.transfer.head import replace_head  # noqa: F401
from zoo.transfer.fine_tune import fine_tune, fit_one_cycle  # noqa: F401,E402
from zoo.transfer.freeze import freeze, layerwise_multipliers, unfreeze  # noqa: F401,E402
from zoo.transfer.lr_find import lr_find  # noqa: F401,E402
