"""What zoo's commands print: the backend started quietly, nothing twice.

TensorFlow's C++ libraries write 6–9 lines when they load on a CPU machine (absl's
"All log messages before absl::InitializeLog()", oneDNN, cudart stubs, a `cuInit`
failure that alarms users) — before TensorFlow's own logging starts, so
`TF_CPP_MIN_LOG_LEVEL` cannot reach them. `start_backend` loads the backend with the
process's stderr captured, drops exactly those known lines and passes anything else
(a real error) through.
"""

from __future__ import annotations

import os
import re
import sys

STARTUP_NOISE = re.compile(
    "|".join((
        r"All log messages before absl::InitializeLog\(\) is called",
        r"oneDNN custom operations are on",
        r"cudart_stub\.cc",
        r"Could not find cuda drivers",
        r"failed call to cuInit",
        r"cuda_executor\.cc",
        r"cuda_diagnostics\.cc",
        r"cpu_feature_guard\.cc",
        r"To enable the following instructions: .* in other operations, rebuild TensorFlow",
        r"rebuild TensorFlow with the appropriate compiler flags",
        r"Unable to register cu(DNN|FFT|BLAS) factory",
        r"computation placer already registered",
        r"TF-TRT Warning",
        r"Attempting to register factory for plugin",
    ))
)


def start_backend(setup=None):
    """Import Keras and its backend (and TensorFlow where zoo needs it) without the
    start-up chatter; returns the lines that were let through.

    `setup`, if given, runs after the imports and before the first operation: what must
    come before TensorFlow's runtime starts (a multi-worker strategy) goes there."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:  # imported already (zoo used from Python): quiet by now
        if setup is not None:
            setup()
        return []
    from zoo.io import captured_stderr

    with captured_stderr() as captured:
        try:
            import tensorflow as tf
        except ImportError:  # a JAX-only machine: nothing of TensorFlow's to quiet
            tf = None
        if tf is not None:
            tf.config.list_physical_devices()  # where a CUDA build tries cuInit
        import keras  # noqa: F401
        if setup is not None:
            setup()
        if tf is not None and keras.backend.backend() == "tensorflow":
            keras.ops.convert_to_tensor(0)  # the first op loads oneDNN's kernels
    kept = [line for line in captured if line.strip() and not STARTUP_NOISE.search(line)]
    for line in kept:
        print(line, file=sys.stderr)
    return kept
