"""A pytest plugin (`-p helpers.block_tensorflow`) that makes TensorFlow impossible to
import, as on the GPU machines that have only JAX: `.ci/run` runs the core's tests
(registry, architectures, weights, transfer) on the JAX backend under it."""

import sys

sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError
