"""The one training path: every kind of model compiles and fits here.

`fit` (twelve arguments: the model, its data, and three objects — `Defaults` for what
to train for, `Settings` for how it runs here, `Tracking` for what the run records),
the callbacks a run gets (`run_callbacks`: `Checkpoint` with resume and the best epoch,
`HistoryWriter`, `TensorBoardLogger`, `TimeLimit`), the one `lr_find`, learning-rate
schedules and the discriminative-rate optimizer. Backend-agnostic Keras 3: no
TensorFlow imported here.
"""

from zoo.training.callbacks import HistoryWriter, LRFinder, TensorBoardLogger, TimeLimit  # noqa: F401
from zoo.training.checkpoint import Checkpoint  # noqa: F401
from zoo.training.fit import (  # noqa: F401
    CHECKPOINT_DIR, LOG_DIR, OPTIMIZERS, Defaults, FitResult, Tracking, compile_model, fit, recompile, run_callbacks,
)
from zoo.training.lr_find import LRFindResult, compute_features, lr_find  # noqa: F401
from zoo.training.optimizers import DiscriminativeAdam  # noqa: F401
from zoo.training.schedules import OneCycle, one_cycle  # noqa: F401
from zoo.training.settings import (  # noqa: F401
    PRECISIONS, Settings, precision, resolve_precision, resolve_steps_per_execution, strategy_scope,
)
