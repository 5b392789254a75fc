"""zoo: a Keras 3 model zoo and transfer-learning toolkit.

The public API is imported lazily so that `import zoo` (and `zoo --help`) stays fast
and does not pull in TensorFlow until a model is actually needed.
"""

__version__ = "0.1.0"

_LAZY = {
    "list_models": ("zoo.models", "list_models"),
    "info": ("zoo.models", "info"),
    "create": ("zoo.models", "create"),
    "labels": ("zoo.models", "labels"),
    "register": ("zoo.registry", "register"),
    "ModelSpec": ("zoo.registry", "ModelSpec"),
    "classify": ("zoo.tasks.classify", "classify"),
    "train": ("zoo.tasks", "train"),
    "finetune": ("zoo.tasks.image_classifier", "finetune"),
    "show": ("zoo.tasks.image_classifier", "show"),
    "kinds": ("zoo.tasks", "kinds"),
    "load_run": ("zoo.tasks", "load_run"),
    "export": ("zoo.serving.export", "export"),
    "generate": ("zoo.tasks.char_lstm", "generate"),
    "style": ("zoo.tasks.style_transfer", "style"),
    "sample": ("zoo.tasks.dcgan", "sample"),
    "explain": ("zoo.tasks.explain", "explain"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
