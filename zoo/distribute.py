"""Training on more than one device: `--distribute mirrored|multiworker`.

    >>> from zoo.distribute import strategy
    >>> from zoo.training import fit, strategy_scope
    >>> chosen = strategy("mirrored")          # every local GPU (or CPU device)
    >>> with strategy_scope(chosen):
    ...     model = build()
    >>> fit(model, data, strategy=chosen)      # the batch size given is the global batch

Each backend's own engine, never a home-made one:
- TensorFlow: `tf.distribute.MirroredStrategy` (the local devices); several machines
  (`multiworker`, `tf.distribute.MultiWorkerMirroredStrategy` from `TF_CONFIG`) are
  refused for now, because Keras 3's `fit` fails under that strategy
  (keras-team/keras#20585) and zoo's own loop for it is not written yet;
- JAX: Keras' `keras.distribution.DataParallel` over the local devices.

The batch size a run is given is the global batch, split evenly over the replicas, so
a run's updates are the same on one device or several (tests check the weights agree).
The learning rate is not scaled: with the same global batch it means the same thing; a
larger global batch on more devices usually wants a proportionally larger rate (Goyal
et al., 2017), which is left to the user.

A room of its own because the TensorFlow strategies need TensorFlow; `zoo.training`
only enters whatever scope it is given (`strategy_scope`).
"""

from __future__ import annotations

import json
import os

from zoo.errors import OptionError

DISTRIBUTIONS = ("none", "mirrored", "multiworker")


def strategy(name="none"):
    """The distribution `--distribute NAME` asks for on the current Keras backend: an
    object with `scope()` for `zoo.training.strategy_scope`, or None for one device."""
    import keras

    if name in (None, "none"):
        return None
    if name not in DISTRIBUTIONS:
        raise OptionError(f"`distribute` must be one of {', '.join(DISTRIBUTIONS)}. Received: distribute={name!r}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if name == "mirrored":
            devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                [d.name for d in tf.config.list_logical_devices("CPU")]
            return tf.distribute.MirroredStrategy(devices)
        if not os.environ.get("TF_CONFIG"):
            raise OptionError("--distribute multiworker needs TF_CONFIG naming the cluster and this worker's task "
                              '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                              '"task": {"type": "worker", "index": 0}}).')
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as error:
            raise OptionError(f"TF_CONFIG is not JSON: {error}") from None
        # Keras 3's fit fails under MultiWorkerMirroredStrategy ("unsupported type
        # PerReplica", keras-team/keras#20585, tensorflow#72388; seen here with TF 2.21
        # and Keras 3.15 on two workers over loopback), and zoo's own loop for it is not
        # built yet: refuse in one line rather than fail inside the first step.
        raise OptionError("--distribute multiworker is not available yet: Keras 3's fit fails under "
                          "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585) and zoo's own "
                          "training loop for it is still to come. Use --distribute mirrored on one machine.")
    if backend == "jax":
        if name == "multiworker":
            raise OptionError("--distribute multiworker runs on the TensorFlow backend; on JAX use mirrored "
                              "(Keras' DataParallel over this machine's devices).")
        import jax

        return keras.distribution.DataParallel(devices=jax.devices())
    raise OptionError(f"--distribute runs on the TensorFlow and JAX backends. Received: backend={backend!r}")


def replicas(chosen):
    """How many replicas `chosen` (a `strategy(...)` result or None) trains on."""
    if chosen is None:
        return 1
    count = getattr(chosen, "num_replicas_in_sync", None)
    if count is not None:
        return int(count)
    mesh = getattr(chosen, "device_mesh", None)
    return int(mesh.shape[0]) if mesh is not None else 1
