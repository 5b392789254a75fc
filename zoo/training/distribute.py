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

Starting, each worker first checks `TF_CONFIG` (one line naming what is wrong) and
waits, in Python, until every other task of the cluster has started
(`wait_for_cluster`): it says within a second which task it waits for and where, and
gives up after `ZOO_CLUSTER_TIMEOUT` seconds (default 300) with one line naming the
task that never answered. TensorFlow's own start-up waits without a deadline and
without seeing Ctrl-C or SIGTERM; here both stop the wait.

A room of its own because the TensorFlow strategies need TensorFlow; `zoo.training`
only enters whatever scope it is given (`strategy_scope`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import signal
import socket
import sys
import threading
import time

from zoo.errors import OptionError, ZooError

DISTRIBUTIONS = ("none", "mirrored", "multiworker")
_MULTI_WORKER = None
CLUSTER_TIMEOUT_ENV = "ZOO_CLUSTER_TIMEOUT"
DEFAULT_CLUSTER_TIMEOUT = 300.0  # seconds a worker waits for the others to start
_JOBS = ("chief", "worker")  # the tasks MultiWorkerMirroredStrategy trains on
_CLUSTER_READY = False


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
            wait_for_cluster()  # TF_CONFIG checked (one line, not a stack trace); every other task started
            main = threading.current_thread() is threading.main_thread()
            sigterm = signal.getsignal(signal.SIGTERM) if main else None
            try:
                _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as error:
                if "program startup" not in str(error):
                    raise
                raise OptionError("--distribute multiworker must be set up before TensorFlow runs anything in this "
                                  "process: call zoo.training.distribute.strategy('multiworker') first thing (zoo train "
                                  "and zoo finetune do).") from None
            finally:
                if main:
                    # TensorFlow's coordination service takes SIGTERM for a preemption notice
                    # that nothing here listens to, so a worker would ignore it: give it back.
                    signal.signal(signal.SIGTERM, signal.SIG_DFL if sigterm is None else sigterm)
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


_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}')


def cluster_task(environ=None):
    """`(task_type, task_index, cluster)` from `TF_CONFIG`, checked.

    Raises:
        OptionError: one line naming what is wrong: TF_CONFIG is missing or not JSON;
            its cluster is not `{"chief"/"worker": ["host:port", ...]}` (an address
            that is not a string, has no port, a port that is not 1-65535, the same
            address twice); its task is not one of the cluster's.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not raw or not raw.strip():
        raise OptionError(f"--distribute multiworker needs TF_CONFIG naming the cluster and this worker's task "
                          f"(e.g. {_EXAMPLE}).")
    try:
        config = json.loads(raw)
    except ValueError as error:
        raise OptionError(f"TF_CONFIG is not JSON ({error}). Received: {_short(raw)}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise OptionError(f"TF_CONFIG must be a JSON object with a \"cluster\" and a \"task\" (e.g. {_EXAMPLE}). "
                          f"Received: {_short(raw)}")
    seen = {}
    for job, members in cluster.items():
        if job not in _JOBS:
            raise OptionError(f"TF_CONFIG's cluster may name only {' and '.join(repr(j) for j in _JOBS)} tasks "
                              f"(MultiWorkerMirroredStrategy has no parameter servers or evaluators). "
                              f"Received: {job!r}")
        if not isinstance(members, list) or not members:
            raise OptionError(f"TF_CONFIG's cluster must give each job a list of \"host:port\" addresses. "
                              f"Received: {job!r}: {_short(json.dumps(members))}")
        if job == "chief" and len(members) > 1:
            raise OptionError(f"TF_CONFIG's cluster may have one chief. Received: {len(members)} chief addresses")
        for index, address in enumerate(members):
            parse_address(address, f"{job} {index}")
            if address in seen:
                raise OptionError(f"TF_CONFIG gives {seen[address]} and {job} {index} the same address {address}: "
                                  f"each task needs its own host:port.")
            seen[address] = f"{job} {index}"
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise OptionError(f"TF_CONFIG's task type must be one of its cluster's jobs ({', '.join(cluster) or 'none'}). "
                          f"Received: type={task_type!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        count = len(cluster[task_type])
        raise OptionError(f"TF_CONFIG's task {task_type!r} {index!r} is not in its cluster: the index must be a whole "
                          f"number from 0 to {count - 1} (it has {count} {task_type} address(es)).")
    return task_type, index, cluster


def parse_address(address, who="the task"):
    """`(host, port)` of a TF_CONFIG address `"host:port"` (`"[::1]:port"` for IPv6).

    Raises:
        OptionError: one line naming `who` and what is wrong with the address.
    """
    if not isinstance(address, str):
        raise OptionError(f"TF_CONFIG's {who} address must be a \"host:port\" string (e.g. \"10.0.0.1:12345\"). "
                          f"Received: {json.dumps(address)}")
    host, colon, port = address.strip().rpartition(":")
    if not colon or not host or "]" in port:
        raise OptionError(f"TF_CONFIG's {who} address has no port: write it as host:port "
                          f"(e.g. \"10.0.0.1:12345\"). Received: {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise OptionError(f"TF_CONFIG's {who} address must be host:port with a host name or IP address. "
                          f"Received: {address!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise OptionError(f"TF_CONFIG's {who} address must end in a port from 1 to 65535. Received: {address!r}")
    return host, int(port)


def _short(text, limit=200):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def cluster_timeout(environ=None):
    """Seconds a worker waits for the rest of its cluster to start: `ZOO_CLUSTER_TIMEOUT`,
    default 300.

    Raises:
        OptionError: the variable is set to something other than a positive number.
    """
    raw = (os.environ if environ is None else environ).get(CLUSTER_TIMEOUT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_CLUSTER_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise OptionError(f"{CLUSTER_TIMEOUT_ENV} must be a positive number of seconds. "
                          f"Received: {CLUSTER_TIMEOUT_ENV}={raw!r}")
    return value


def wait_for_cluster(environ=None, timeout=None, stream=None):
    """Check `TF_CONFIG`, then wait until every other task of its cluster has started.

    TensorFlow's own start-up (`MultiWorkerMirroredStrategy()`) blocks in C++ until
    every task has joined, with no deadline, no word, and deaf to Ctrl-C and SIGTERM.
    This waits first, in Python: it listens on this task's own port (so the others see
    it has started) and connects to each other task's address, until each has
    answered, either here or from TensorFlow's server once that task is past its own
    wait. Within a second it prints which tasks it waits for (again every minute); it
    gives up after `timeout` seconds with one line naming the tasks that never
    answered. Ctrl-C (KeyboardInterrupt) and SIGTERM stop it as they stop any Python
    code. Once per process; a one-task cluster returns at once.

    Args:
        environ: mapping. Where `TF_CONFIG` and `ZOO_CLUSTER_TIMEOUT` are read. Defaults
            to `os.environ`.
        timeout: float. Seconds to wait. Defaults to `ZOO_CLUSTER_TIMEOUT`, else 300.
        stream: file. Where the waiting lines go. Defaults to `sys.stderr`.

    Raises:
        OptionError: TF_CONFIG or ZOO_CLUSTER_TIMEOUT is malformed, or this task's port
            is taken by another process.
        ClusterTimeoutError: a task did not answer within `timeout` seconds.
    """
    global _CLUSTER_READY
    task_type, index, cluster = cluster_task(environ)
    timeout = cluster_timeout(environ) if timeout is None else float(timeout)
    if _CLUSTER_READY:
        return
    me = f"{task_type} {index}"
    peers = {f"{job} {i}": parse_address(address) for job, members in cluster.items()
             for i, address in enumerate(members) if (job, i) != (task_type, index)}
    if not peers:
        _CLUSTER_READY = True
        return
    stream = sys.stderr if stream is None else stream
    listener = _Listener(me, parse_address(cluster[task_type][index])[1])
    started = time.monotonic()
    waiting, reasons, told = dict(peers), {}, None
    try:
        while True:
            for name in [n for n in waiting if n in listener.heard]:
                del waiting[name]
            for name, (host, port) in list(waiting.items()):
                reason = _knock(host, port, me)
                if reason is None:
                    del waiting[name]
                else:
                    reasons[name] = reason
            now = time.monotonic()
            if not waiting:
                break
            if now - started >= timeout:
                raise ClusterTimeoutError(
                    f"{me}: {_tasks(waiting, reasons)} did not answer within {timeout:g} s, so this worker stops. "
                    f"Start the same command on every task TF_CONFIG names; {CLUSTER_TIMEOUT_ENV} sets how long "
                    f"to wait (now {timeout:g} s).")
            if (told is None and now - started >= 1.0) or (told is not None and now - told >= 60):
                told = now
                print(f"{me}: waiting for {_tasks(waiting)} to start ({now - started:.0f} s so far; gives up "
                      f"after {timeout:g} s, set {CLUSTER_TIMEOUT_ENV} to change)", file=stream, flush=True)
            time.sleep(min(0.25, max(0.0, timeout - (now - started))))
    finally:
        listener.close()
    if told is not None:
        print(f"{me}: every task of the cluster has started ({time.monotonic() - started:.0f} s)", file=stream,
              flush=True)
    _CLUSTER_READY = True


class ClusterTimeoutError(OptionError):
    """A task of a multi-worker cluster did not start within the deadline."""


def _tasks(names, reasons=None):
    parts = []
    for name, (host, port) in names.items():
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = f" ({reasons[name]})" if reasons and reasons.get(name) else ""
        parts.append(f"{name} at {where}{reason}")
    return ", ".join(parts)


_HELLO = b"zoo-cluster"


def _knock(host, port, me):
    """None if something listens at host:port (a task waiting, or its TensorFlow
    server); else why not, in a few words. Tells a waiting zoo task who knocked, so it
    counts this task as started even after this task's own listener is gone."""
    try:
        connection = socket.create_connection((host, port), timeout=1.0)
    except socket.gaierror:
        return "host name not found"
    except socket.timeout:
        return "no answer"
    except OSError as error:
        return (error.strerror or str(error)).lower()
    with connection:
        try:
            connection.settimeout(0.5)
            if connection.recv(len(_HELLO)) == _HELLO:
                connection.sendall(f" {me}\n".encode())
        except OSError:  # TensorFlow's server says nothing first: it has started all the same
            pass
    return None


class _Listener:
    """This task's own port, held while it waits: the other tasks' knocks answer there,
    and each says who knocked (`heard`). Closed before TensorFlow takes the port."""

    def __init__(self, me, port):
        self.heard = set()
        self._stop = threading.Event()
        try:
            if socket.has_dualstack_ipv6():
                self._socket = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
            else:
                self._socket = socket.create_server(("", port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise OptionError(f"{me}: port {port} of this task's TF_CONFIG address is in use by another process "
                                  f"on this machine (a worker of an earlier run still running?).") from None
            self._socket = None  # the others will find this task once its TensorFlow server is up
            return
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="zoo-cluster-listener", daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:  # timeout, or closed
                continue
            with connection:
                try:
                    connection.settimeout(1.0)
                    connection.sendall(_HELLO)
                    reply = connection.recv(64).decode("ascii", "replace").split()
                except OSError:
                    continue
                if len(reply) == 2:
                    self.heard.add(" ".join(reply))

    def close(self):
        if self._socket is None:
            return
        self._stop.set()
        self._thread.join()
        self._socket.close()
        self._socket = None


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
