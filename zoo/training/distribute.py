"""Training on more than one device or machine: `--distribute mirrored|multiworker`.

    >>> from zoo.training.distribute import strategy
    >>> from zoo.training import Settings, fit
    >>> settings = Settings(strategy=strategy("mirrored"))   # every local GPU (or CPU device)
    >>> with settings.building():
    ...     model = build()
    >>> fit(model, data, settings=settings)    # the batch size given is the global batch

Each backend's own engine, never a home-made one:
- TensorFlow: `tf.distribute.MirroredStrategy` over the local devices, and
  `tf.distribute.MultiWorkerMirroredStrategy` over the machines `TF_CONFIG` names.
  Keras 3's own `fit` trains under both, with the two fixes in
  `_teach_keras_fit_distribution` (for several workers: keras-team/keras#20585);
- JAX: Keras' `keras.distribution.DataParallel` over the local devices.

The batch size a run is given is the global batch, split evenly over the replicas, so
a run's updates are the same on one device, several, or several machines (tests check
the weights agree). The learning rate is not scaled: with the same global batch it
means the same thing; a larger global batch on more devices usually wants a
proportionally larger rate (Goyal et al., 2017), which is left to the user.

With several workers every worker runs the same command. The chief (the `chief` task,
or worker 0 when the cluster has none) writes the run directory it is given; every
other worker writes its own beside it (`RUN.worker-1`, ...), since each needs its own
checkpoints to resume from and two writers must never share one directory. A worker
that dies stops the others with `WorkerLostError` within seconds (TensorFlow's
coordination service notices the missing heartbeats), not a hang.

A room of its own because the TensorFlow strategies need TensorFlow; `zoo.training`
only enters whatever scope it is given (`strategy_scope`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re

from zoo.errors import OptionError, ZooError

DISTRIBUTIONS = ("none", "mirrored", "multiworker")
_MULTI_WORKER = None


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

        _teach_keras_fit_distribution()
        if name == "mirrored":
            devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                [d.name for d in tf.config.list_logical_devices("CPU")]
            return tf.distribute.MirroredStrategy(devices)
        global _MULTI_WORKER
        if _MULTI_WORKER is None:
            cluster_task()  # a missing or malformed TF_CONFIG is one clear line, not a stack trace
            try:
                _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as error:
                if "program startup" not in str(error):
                    raise
                raise OptionError("--distribute multiworker must be set up before TensorFlow runs anything in this "
                                  "process: call zoo.training.distribute.strategy('multiworker') first thing (zoo train "
                                  "and zoo finetune do).") from None
        return _MULTI_WORKER  # one per process: TensorFlow configures its collectives once
    if backend == "jax":
        if name == "multiworker":
            raise OptionError("--distribute multiworker runs on the TensorFlow backend; on JAX use mirrored "
                              "(Keras' DataParallel over this machine's devices).")
        import jax

        return keras.distribution.DataParallel(devices=jax.devices())
    raise OptionError(f"--distribute runs on the TensorFlow and JAX backends. Received: backend={backend!r}")


@functools.lru_cache(maxsize=None)
def accelerator():
    """What the current Keras backend computes on: `("gpu", (major, minor))` for an
    NVIDIA GPU and its compute capability (None when the backend does not say),
    `("tpu", None)`, or `("cpu", None)`. Used for the fast training defaults; asked
    once per process (every `fit` asks), and without starting TensorFlow's runtime, so
    logical devices can still be configured afterwards."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform in ("gpu", "cuda", "rocm"):
                return "gpu", _capability(getattr(device, "compute_capability", None))
            return ("tpu", None) if device.platform == "tpu" else ("cpu", None)
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("TPU"):
                return "tpu", None
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return "gpu", _capability(details.get("compute_capability"))
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return "gpu", tuple(torch.cuda.get_device_capability())
    except (ImportError, RuntimeError):  # no device runtime at all: a CPU
        pass
    return "cpu", None


def _capability(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(".")
    try:
        return tuple(int(v) for v in value)[:2]
    except (TypeError, ValueError):
        return None


def replicas(chosen):
    """How many replicas `chosen` (a `strategy(...)` result or None) trains on."""
    if chosen is None:
        return 1
    count = getattr(chosen, "num_replicas_in_sync", None)
    if count is not None:
        return int(count)
    mesh = getattr(chosen, "device_mesh", None)
    return int(mesh.shape[0]) if mesh is not None else 1


class WorkerLostError(ZooError):
    """A worker of a multi-worker run stopped answering; the others stop too."""


def cluster_task(environ=None):
    """`(task_type, task_index, cluster)` from `TF_CONFIG`, checked.

    Raises:
        OptionError: TF_CONFIG is missing, not JSON, or does not name this task in its
            cluster.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not raw:
        raise OptionError(f"--distribute multiworker needs TF_CONFIG naming the cluster and this worker's task "
                          f"(e.g. {example}).")
    try:
        config = json.loads(raw)
    except ValueError as error:
        raise OptionError(f"TF_CONFIG is not JSON: {error}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise OptionError(f"TF_CONFIG must have a \"cluster\" and a \"task\" (e.g. {example}). Received: {raw}")
    task_type, index = task.get("type"), task.get("index", 0)
    members = cluster.get(task_type)
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise OptionError(f"TF_CONFIG's task {task_type!r} {index!r} is not in its cluster "
                          f"{ {k: len(v) for k, v in cluster.items() if isinstance(v, list)} }.")
    return task_type, index, cluster


def is_chief(environ=None):
    """Whether this process is the multi-worker run's chief: the `chief` task, or worker
    0 in a cluster with no chief (TensorFlow's rule). True when there is no TF_CONFIG."""
    if not (os.environ if environ is None else environ).get("TF_CONFIG"):
        return True
    task_type, index, cluster = cluster_task(environ)
    return task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)


def worker_run_dir(out, distribute="none", environ=None):
    """The run directory this process writes: `out` itself, except for a worker other
    than the chief of a multi-worker run, which writes `OUT.worker-N` beside it."""
    if distribute != "multiworker" or is_chief(environ):
        return out
    from pathlib import Path

    task_type, index, _ = cluster_task(environ)
    out = Path(out)
    return out.with_name(f"{out.name}.{task_type}-{index}")


@contextlib.contextmanager
def worker_losses(distribute="none"):
    """Turn a lost peer in a multi-worker run into `WorkerLostError`, one line naming it."""
    if distribute != "multiworker":
        yield
        return
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError) as error:
        text = str(error)
        lost = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", text)))
        who = f" ({', '.join(lost)} stopped answering)" if lost else ""
        task_type, index, _ = cluster_task()
        raise WorkerLostError(
            f"{task_type} {index}: the multi-worker run lost a worker{who}, so every worker stops. Start all of "
            f"them again with --resume to continue from the last finished epoch. TensorFlow said: "
            f"{type(error).__name__}: {_first_line(text)}") from None


def check_same_epoch(chosen, epochs_done):
    """Raise unless every worker of a multi-worker run resumes from the same epoch.

    Each worker resumes from its own run directory; if a worker was stopped between the
    others' checkpoint and its own, the workers would start from different epochs and
    train different weights with the same gradients, silently. A no-op for one worker.
    """
    extended = getattr(chosen, "extended", None)
    if extended is None or not getattr(extended, "_in_multi_worker_mode", lambda: False)():
        return
    import tensorflow as tf

    @tf.function
    def gather():
        return chosen.gather(chosen.run(lambda: tf.constant([epochs_done], tf.int64)), axis=0)

    found = [int(v) for v in gather().numpy()]
    if len(set(found)) > 1:
        task_type, index, _ = cluster_task()
        raise WorkerLostError(
            f"{task_type} {index}: the workers' runs stopped at different epochs ({', '.join(map(str, found))} "
            f"finished, worker by worker), so they cannot resume together. Copy the chief's run directory over "
            f"each other worker's (RUN.worker-N) and resume, or start again with --overwrite.")


def _first_line(text):
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ")):
            return line[:300]
    return text[:300]


_KERAS_TAUGHT = False


def _teach_keras_fit_distribution():
    """Two fixes to Keras 3's own `fit`, `evaluate` and `predict` under a
    `tf.distribute` strategy; with them a run under `MultiWorkerMirroredStrategy`
    trains at all (keras-team/keras#20585, tensorflow#72388: the TensorFlow tutorial
    fails with "unsupported type PerReplica"), and a distributed run sees its data in
    the same order as a run on one device.

    1. Before the first step Keras builds the model from a batch it takes from a fresh
       iterator over the distributed data. That batch is averaged across workers, a
       collective that fails eagerly across processes; and taking it moves a dataset
       that reshuffles each iteration on to its next order, so a distributed run's first
       epoch saw the order of a one-device run's second. Only shapes and dtypes are
       needed: they come from the dataset's element spec, and nothing is iterated.
    2. Across workers each step's logs (scalars) are averaged with `axis=0`, which a
       scalar has not: the mean over replicas is `axis=None`.

    Tests train two workers over loopback, and two devices in one process, to the
    weights of one process.
    """
    global _KERAS_TAUGHT
    if _KERAS_TAUGHT:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    multi_worker = tf_trainer._collective_all_reduce_multi_worker
    reduce_per_replica = tf_trainer.reduce_per_replica
    symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_across_workers(values, strategy, reduction):
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    def build_from_element_spec(self, iterator=None, data_batch=None):
        dataset = getattr(iterator, "_distributed_dataset", None)
        if self._distribute_strategy is None or dataset is None:
            return symbolic_build(self, iterator=iterator, data_batch=data_batch)
        # A worker's spec is per replica; each replica's part has the same shape.
        spec = tree.map_structure(lambda s: s._value_specs[0] if hasattr(s, "_value_specs") else s,
                                  dataset.element_spec)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=spec)

    tf_trainer.reduce_per_replica = reduce_across_workers
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_element_spec
    _KERAS_TAUGHT = True
