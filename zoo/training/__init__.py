"""The one training path: every kind of model compiles and fits here.

`fit` (thirteen arguments: the model, its data, and three objects — `Defaults` for what
to train for, `Settings` for how it runs here, `Tracking` for what the run records),
the callbacks a run gets (`run_callbacks`: `Checkpoint` with resume and the best epoch,
`HistoryWriter`, `TensorBoardLogger`, `TimeLimit`), the one `lr_find`, learning-rate
schedules and the discriminative-rate optimizer. Backend-agnostic Keras 3: no
TensorFlow imported here.
"""

import sys
import types

# Imported on first use (PEP 562), so that a light submodule (`zoo.training.distribute`'s
# TF_CONFIG checks, which the CLI runs before any backend starts) imports no Keras.
_LAZY = {
    **dict.fromkeys(("HistoryWriter", "LRFinder", "TensorBoardLogger", "TimeLimit"), "zoo.training.callbacks"),
    "Checkpoint": "zoo.training.checkpoint",
    **dict.fromkeys(("CHECKPOINT_DIR", "LOG_DIR", "OPTIMIZERS", "Defaults", "FitResult", "Tracking", "compile_model",
                     "fit", "recompile", "run_callbacks", "balanced_class_weight"), "zoo.training.fit"),
    **dict.fromkeys(("LRFindResult", "compute_features", "lr_find"), "zoo.training.lr_find"),
    "DiscriminativeAdam": "zoo.training.optimizers",
    **dict.fromkeys(("OneCycle", "one_cycle"), "zoo.training.schedules"),
    **dict.fromkeys(("PRECISIONS", "Settings", "precision", "resolve_precision", "resolve_steps_per_execution",
                     "strategy_scope"), "zoo.training.settings"),
}

__all__ = sorted(_LAZY)


class _Package(types.ModuleType):
    """`zoo.training.fit` and `zoo.training.lr_find` stay the functions: importing the
    submodules of the same names would otherwise rebind them to the modules (as the
    eager imports here used to overwrite)."""

    def __setattr__(self, name, value):
        if name in ("fit", "lr_find") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'zoo.training' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
