"""The one training path: every kind of model compiles and fits here.

`fit` (defaults from the task, strategy scope, precision, steps_per_execution, XLA),
its callbacks (`Checkpoint` with resume and the best epoch, `HistoryWriter`,
`TensorBoardLogger`, `LRFinder`), `lr_find`, learning-rate schedules and the
discriminative-rate optimizer. Backend-agnostic Keras 3: no TensorFlow imported here.
"""

from zoo.training.callbacks import HistoryWriter, LRFinder, TensorBoardLogger, TimeLimit  # noqa: F401
from zoo.training.checkpoint import Checkpoint  # noqa: F401
from zoo.training.fit import (  # noqa: F401
    CHECKPOINT_DIR, LOG_DIR, PRECISIONS, Defaults, FitResult, compile_model, fit, precision, recompile,
    resolve_precision, resolve_steps_per_execution, strategy_scope,
)
from zoo.training.lr_find import LRFindResult, lr_find  # noqa: F401
from zoo.training.optimizers import DiscriminativeAdam  # noqa: F401
from zoo.training.schedules import OneCycle, one_cycle  # noqa: F401
