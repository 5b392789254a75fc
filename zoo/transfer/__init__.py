"""Transfer learning shared by every image model: heads, freezing, fine-tuning."""

from zoo.transfer.head import replace_head  # noqa: F401
from zoo.transfer.fine_tune import fine_tune, fit_one_cycle  # noqa: F401,E402
from zoo.transfer.freeze import freeze, unfreeze  # noqa: F401,E402
from zoo.transfer.lr_find import lr_find  # noqa: F401,E402
