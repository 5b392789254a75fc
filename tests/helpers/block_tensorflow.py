"""A pytest plugin (`-p helpers.block_tensorflow`) that makes TensorFlow impossible to
import, as on the GPU machines that have only JAX: `.ci/run` runs the core's tests
(registry, architectures, weights, transfer) on the JAX backend under it.

An import finder refuses `tensorflow` (and its submodules) the way a machine without it
does, with `ModuleNotFoundError`. It leaves no `sys.modules["tensorflow"]` entry: Keras
takes the presence of that key to mean TensorFlow was imported (its preprocessing
layers then reach for it), which a machine without TensorFlow never shows.
"""

import importlib.abc
import sys


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/helpers/block_tensorflow.py)",
                                      name=name)
        return None


if "tensorflow" in sys.modules:
    raise RuntimeError("tensorflow was imported before helpers.block_tensorflow could block it")
sys.meta_path.insert(0, _NoTensorFlow())
