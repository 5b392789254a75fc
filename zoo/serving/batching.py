"""Server-side request batching, as TF Serving's `--enable_batching` does it.

Concurrent requests to one signature are queued, merged along axis 0 into one batch,
run once, and the answer split back so each request gets exactly its rows:

    >>> parameters = read_batching_parameters("batching.config")
    >>> batcher = Batcher(run, parameters, name="lenet/1/serving_default")
    >>> batcher({"images": one_image})      # from many request threads at once
    {'probabilities': array([[...]], dtype=float32)}

The rules are TF Serving's (`SharedBatchScheduler` and `BatchingSession`):

- A request joins the open batch of its queue. The batch closes when it holds
  `max_batch_size` rows, when a request does not fit in it (a new batch opens), or
  when its oldest request has waited `batch_timeout_micros`; a closed batch runs on
  the first free one of `num_batch_threads` threads. While every thread is busy the
  open batch keeps filling, so under load batches grow by themselves even with a
  timeout of 0 (TF Serving's advice for CPUs: start there).
- At most `max_enqueued_batches` batches wait per queue; a request that would need
  one more is refused with `Overloaded` (HTTP 503, gRPC UNAVAILABLE).
- A request of more than `max_batch_size` rows is refused ("Task size N is larger
  than maximum input batch size M"); with `enable_large_batch_splitting` one of more
  than `max_execution_batch_size` rows is split over several batches and its answer
  put back together.
- Requests whose inputs differ in a dimension other than the first never share a
  batch (TF Serving would fail such a batch); with `pad_variable_length_inputs` they
  do, each input padded at the end of every dimension to the batch's largest size
  with its own first value, as TF Serving pads — while the padded batch holds at most
  twice the elements its requests sent: a request that would pad it further opens a
  new batch (TF Serving pads any mix, so one request 10^6 long makes each of its
  neighbours 10^6 long).
- `allowed_batch_sizes` pads a batch with copies of its last request's first row up
  to the next allowed size; the padding rows are dropped from the answers.

Where zoo differs from TF Serving:

- **A bad request does not fail its neighbours.** TF Serving fails a whole batch when
  its run fails, so one client sending, say, bytes that are not an image to a
  signature that decodes images in its graph fails every request merged with it.
  Here a batch whose `run` raises is run again in halves, each half split again
  while it fails, down to single requests: every good request still gets its answer
  (the same rows as unbatched) and every bad one an error of its own, the error of
  the smallest piece that held it (for a single request, its own). Each piece is
  padded to `allowed_batch_sizes` as a batch would be. The cost is bounded: a batch
  of N requests runs at most 2N - 1 times (all of them bad), and one bad request among
  N costs about 2·log2(N) runs more. Errors that are not about any request's data are
  not retried, since a smaller batch would meet them too: `Unavailable` (the queue is
  `Overloaded`, the model is being unloaded) and what is not an `Exception`
  (`KeyboardInterrupt`, `SystemExit`). Every other error is retried, model bugs
  included: telling a data error from a bug would need the model's help, and a
  retried bug costs time, never a wrong answer. An output of the wrong number of
  rows is the model's fault, not a request's, and fails the batch as it is.
- **Parameters are bounded.** TF Serving takes any int64; a `max_batch_size` of 10^9
  with a `batch_timeout_micros` of 10^12 (11 days) hangs every request, an
  `allowed_batch_sizes` of [100000] pads a one-row request to 100,000 rows, and
  10^9 `num_batch_threads` cannot start. `BatchingParameters` refuses values past
  these bounds, in one line naming the field, the value and the limit:

  - `max_batch_size`, `max_execution_batch_size` (and so every allowed size) at most
    `MAX_BATCH_SIZE` = 100,000 rows: TF Serving's examples and users' configs stay
    within a few thousand, and 100,000 rows are already 15 GB of 224×224 RGB images;
  - `batch_timeout_micros` at most `MAX_BATCH_TIMEOUT_MICROS` = 60,000,000 (1 minute):
    TF Serving advises 0 to a few milliseconds, and a request held longer than a
    minute has outlived any client's patience;
  - `num_batch_threads` at most the larger of 256 and 4 per core (`max_batch_threads()`):
    batches run on the cores, more threads only wait;
  - `max_enqueued_batches` at most `MAX_ENQUEUED_BATCHES` = 100,000, and the rows the
    queue can hold (`max_enqueued_batches` × the rows of a batch) at most
    `MAX_QUEUED_ROWS` = 10,000,000, so a full queue stays bounded in memory (a request
    past it is refused with `Overloaded`);
  - padding at most doubles a batch or adds at most `MAX_PADDING_STEP` = 1,024 rows,
    whichever allows more: each allowed size is at most twice the one before it or
    1,024 more (the first at most 1,024). `[8, 16, 32, ..., 1024]` and a single
    `[512]` pass; `[100000]` (one row run as 100,000) does not.

All queues with the same `num_batch_threads` and `thread_pool_name` share one pool of
threads, as TF Serving's one `SharedBatchScheduler` per server: batches of several
models or signatures take turns, oldest first, instead of competing for the cores.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.serving.errors import ServingError, Unavailable

log = logging.getLogger("zoo.serving")

__all__ = ["BatchingParameters", "read_batching_parameters", "Batcher", "Overloaded"]


# The bounds on BatchingParameters (see the module docstring for why these values).
MAX_BATCH_SIZE = 100_000
MAX_BATCH_TIMEOUT_MICROS = 60_000_000
MAX_ENQUEUED_BATCHES = 100_000
MAX_QUEUED_ROWS = 10_000_000
MAX_PADDING_STEP = 1024


def max_batch_threads():
    """The most `num_batch_threads` this machine takes: the larger of 256 and 4 per core."""
    return max(256, 4 * (os.cpu_count() or 1))


class Overloaded(Unavailable):
    """The batch queue is full: the request is turned away (HTTP 503, UNAVAILABLE)."""

    status = 503
    code = "UNAVAILABLE"


# ------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's `BatchingParameters` (session_bundle_config.proto), with its
    defaults for fields a file leaves out: those of `SharedBatchScheduler` (batches of
    up to 1000, no timeout, 10 batches queued, a thread per core).

    Invalid values raise `ZooError` when the object is made.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "batch_threads"
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0  # 0: max_batch_size (only used when splitting)

    def __post_init__(self):
        object.__setattr__(self, "allowed_batch_sizes", tuple(int(s) for s in self.allowed_batch_sizes))
        problem = self._problem()
        if problem:
            raise ZooError(f"Batching parameters: {problem}")

    @property
    def execution_batch_size(self):
        """The most rows one batch runs with."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size

    def _problem(self):
        """`"field: what is wrong"`, or "" when the parameters are usable."""
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                return f"{name} must be a positive integer. Received: {value!r}"
        value = self.batch_timeout_micros
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"batch_timeout_micros must be an integer >= 0. Received: {value!r}"
        value = self.max_execution_batch_size
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"max_execution_batch_size must be a positive integer. Received: {value!r}"
        if self.enable_large_batch_splitting and value > self.max_batch_size:
            return (f"max_execution_batch_size ({value}) must not be larger than "
                    f"max_batch_size ({self.max_batch_size})")
        # Bounds TF Serving does not have (the module docstring says why).
        for name, limit, words in (
            ("max_batch_size", MAX_BATCH_SIZE, "rows"),
            ("max_execution_batch_size", MAX_BATCH_SIZE, "rows"),
            ("batch_timeout_micros", MAX_BATCH_TIMEOUT_MICROS, "(1 minute)"),
            ("num_batch_threads", max_batch_threads(), "(the larger of 256 and 4 per core)"),
            ("max_enqueued_batches", MAX_ENQUEUED_BATCHES, "batches"),
        ):
            value = getattr(self, name)
            if value > limit:
                return f"{name} must be at most {limit} {words}. Received: {value}"
        queued = self.max_enqueued_batches * self.execution_batch_size
        if queued > MAX_QUEUED_ROWS:
            return (f"max_enqueued_batches times the rows of a batch must be at most {MAX_QUEUED_ROWS}, so a "
                    f"full queue stays bounded in memory; {self.max_enqueued_batches} times "
                    f"{self.execution_batch_size} is {queued}. Received: max_enqueued_batches="
                    f"{self.max_enqueued_batches}")
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(s < 1 for s in sizes) or any(b <= a for a, b in zip(sizes, sizes[1:])):
                return f"allowed_batch_sizes must be positive and increasing. Received: {list(sizes)}"
            # TF Serving's check (bundle_factory_util.cc / batching_session.cc).
            limit = self.execution_batch_size
            if sizes[-1] != limit:
                wanted = "max_execution_batch_size" if limit != self.max_batch_size else "max_batch_size"
                return (f"Last entry in allowed_batch_sizes must match {wanted}; last entry was "
                        f"{sizes[-1]}; expected {limit}")
            # Padding at most doubles a batch or adds MAX_PADDING_STEP rows: a batch one
            # row over an allowed size runs as the next one.
            for before, size in zip((0,) + sizes, sizes):
                if size > max(2 * before, before + MAX_PADDING_STEP):
                    return (f"allowed_batch_sizes must each be at most twice the one before or "
                            f"{MAX_PADDING_STEP} more (the first at most {MAX_PADDING_STEP}), so padding stays "
                            f"small; {size} after {before} would run a batch of {before + 1} "
                            f"row{'s' if before else ''} as {size}. Received: {list(sizes)}")
        return ""


_INT_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
               "max_execution_batch_size")
_WRAPPED = {  # field: (number, wrapper type) as in session_bundle_config.proto
    "max_batch_size": (1, "Int64Value"),
    "batch_timeout_micros": (2, "Int64Value"),
    "max_enqueued_batches": (3, "Int64Value"),
    "num_batch_threads": (4, "Int64Value"),
    "thread_pool_name": (5, "StringValue"),
    "enable_large_batch_splitting": (8, "BoolValue"),
    "max_execution_batch_size": (9, "Int64Value"),
}
_proto_class = None


def _batching_parameters_proto():
    """The `tensorflow.serving.BatchingParameters` message class, built from its
    descriptor (tensorflow-serving-api does not ship session_bundle_config_pb2), in a
    pool of its own so it clashes with nothing."""
    global _proto_class
    if _proto_class is not None:
        return _proto_class
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="zoo/session_bundle_config_batching.proto", package="tensorflow.serving",
        syntax="proto3", dependency=[wrappers.name])
    message = proto.message_type.add(name="BatchingParameters")
    Field = descriptor_pb2.FieldDescriptorProto
    for name, (number, wrapper) in _WRAPPED.items():
        message.field.add(name=name, number=number, type=Field.TYPE_MESSAGE,
                          type_name=f".google.protobuf.{wrapper}", label=Field.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=Field.TYPE_INT64, label=Field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=Field.TYPE_BOOL,
                      label=Field.LABEL_OPTIONAL)
    pool.Add(proto)
    _proto_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
    return _proto_class


def parse_batching_parameters(text, source="batching parameters"):
    """TF Serving's text-format `BatchingParameters` → `BatchingParameters`;
    `source` names the text in error messages."""
    from google.protobuf import text_format

    message = _batching_parameters_proto()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        detail = str(error).replace('Message type "tensorflow.serving.BatchingParameters"', "BatchingParameters")
        lines = text.splitlines()
        number = error.GetLine() if hasattr(error, "GetLine") else None
        if number and 0 < number <= len(lines) and lines[number - 1].strip() \
                and lines[number - 1].strip() not in detail:
            detail += f" (line {number}: {lines[number - 1].strip()[:80]!r})"
        if 'Expected "{"' in detail:
            detail += "; write wrapped fields as max_batch_size { value: 32 }"
        raise ZooError(f"{source} is not a text-format BatchingParameters: {detail}") from None
    values = {}
    for name in _WRAPPED:
        if message.HasField(name):
            values[name] = getattr(message, name).value
    if message.allowed_batch_sizes:
        values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = bool(message.pad_variable_length_inputs)
    if values.get("thread_pool_name") == "":
        values.pop("thread_pool_name")
    try:
        return BatchingParameters(**values)
    except ZooError as error:
        raise ZooError(f"{source}: {str(error).removeprefix('Batching parameters: ')}") from None


def read_batching_parameters(path):
    """TF Serving's text-format batching parameters file → `BatchingParameters`, e.g.

        max_batch_size { value: 32 }
        batch_timeout_micros { value: 2000 }
        num_batch_threads { value: 2 }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 32

    Unknown fields, bad syntax and unusable values raise `ZooError` with one line
    naming the file and the field.
    """
    from zoo.io import read_config_text

    path = Path(path)
    text = read_config_text(path, "batching parameters file")
    return parse_batching_parameters(text, source=f"Batching parameters file {path}")


def format_batching_parameters(parameters):
    """`BatchingParameters` → the text a batching parameters file holds."""
    lines = []
    for f in fields(parameters):
        value = getattr(parameters, f.name)
        if f.name == "allowed_batch_sizes":
            lines += [f"allowed_batch_sizes: {size}" for size in value]
        elif f.name == "pad_variable_length_inputs":
            if value:
                lines.append("pad_variable_length_inputs: true")
        elif f.name == "thread_pool_name":
            lines.append(f'thread_pool_name {{ value: "{value}" }}')
        elif f.name == "enable_large_batch_splitting":
            if value:
                lines.append("enable_large_batch_splitting { value: true }")
        elif f.name == "max_execution_batch_size":
            if value:
                lines.append(f"max_execution_batch_size {{ value: {value} }}")
        else:
            lines.append(f"{f.name} {{ value: {value} }}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------- scheduling
class _Task:
    __slots__ = ("inputs", "size", "done", "outputs", "error", "enqueued")

    def __init__(self, inputs, size):
        self.inputs = inputs
        self.size = size
        self.done = threading.Lock()  # held until the answer (or error) is in
        self.done.acquire()
        self.outputs = None
        self.error = None
        self.enqueued = 0.0


class _Batch:
    __slots__ = ("key", "tasks", "size", "start", "closed", "shapes", "elements")

    def __init__(self, key, now):
        self.key = key
        self.tasks = []
        self.size = 0
        self.start = now
        self.closed = False  # full, or superseded by a newer batch: runs as soon as a thread is free
        self.shapes = {}  # pad_variable_length_inputs: input -> its largest shape after axis 0
        self.elements = 0  # pad_variable_length_inputs: the elements its requests sent


class _Scheduler:
    """A pool of batch threads shared by queues (`Batcher`s): each free thread takes
    the schedulable batch whose oldest request has waited longest."""

    _shared = {}
    _shared_lock = threading.Lock()

    @classmethod
    def acquire(cls, threads, name, batcher):
        with cls._shared_lock:
            scheduler = cls._shared.get((threads, name))
            if scheduler is None or scheduler.stopping:
                scheduler = cls._shared[(threads, name)] = cls(threads, name)
            with scheduler.cond:
                scheduler.queues.append(batcher)
            return scheduler

    def release(self, batcher):
        with _Scheduler._shared_lock:
            with self.cond:
                if batcher in self.queues:
                    self.queues.remove(batcher)
                if self.queues:
                    return
                self.stopping = True
                self.cond.notify_all()
            if _Scheduler._shared.get(self.key) is self:
                del _Scheduler._shared[self.key]
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)

    def __init__(self, threads, name):
        self.key = (threads, name)
        self.cond = threading.Condition(threading.Lock())
        self.queues = []
        self.stopping = False
        self.threads = [
            threading.Thread(target=self._work, name=f"zoo-{name}-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _next(self):
        """Under `cond`: the batch to run now and its queue, else (None, seconds to wait)."""
        now = time.monotonic()
        best = best_queue = None
        wait = None
        for queue in self.queues:
            timeout = queue._timeout
            for batch in queue._batches:
                if batch.closed or queue._closing or now >= batch.start + timeout:
                    if best is None or batch.start < best.start:
                        best, best_queue = batch, queue
                else:
                    left = batch.start + timeout - now
                    wait = left if wait is None else min(wait, left)
        return best, best_queue, wait

    def _work(self):
        while True:
            with self.cond:
                while True:
                    batch, queue, wait = self._next()
                    if batch is not None:
                        queue._take(batch)
                        if any(q._batches for q in self.queues):
                            self.cond.notify()  # another thread may have work (or a deadline) now
                        break
                    if self.stopping:
                        return
                    self.cond.wait(wait)
            queue._process(batch)


# ------------------------------------------------------------------------- batcher
class Batcher:
    """Merges concurrent calls into batches for `run`, one signature's unbatched call.

    Args:
        run: callable(dict[str, np.ndarray]) -> dict[str, np.ndarray]. Every input and
            output has the batch on axis 0; a batch of N rows answers N rows.
        parameters: `BatchingParameters`.
        name: names the queue in errors and logs, e.g. `"lenet/1/serving_default"`.

    `batcher(inputs)` blocks the calling thread until its rows of a merged batch are
    back, and returns `{output: array}` with exactly its rows (or raises what `run`
    raised, `Overloaded` when the queue is full, `ServingError` for a request that
    cannot be batched). When `run` fails on a merged batch, the batch is run again
    in halves down to single requests, so only the requests that make `run` fail get
    an error (see the module docstring). `stats` counts what ran: `batches`,
    `requests`, `rows`, `padding` (rows added for `allowed_batch_sizes`), `retries`
    (calls of `run` on pieces of failed batches) and `sizes`, a `Counter` of the
    batch sizes `run` was called with, retried pieces included; `latencies` holds the
    seconds each recent request spent in the batcher (queued, merged, run and split).
    """

    def __init__(self, run, parameters: BatchingParameters, name: str = ""):
        if not isinstance(parameters, BatchingParameters):
            raise ZooError(f"Batcher needs BatchingParameters. Received: {type(parameters).__name__}")
        self.run = run
        self.parameters = parameters
        self.name = name or getattr(run, "__name__", "batcher")
        self._timeout = parameters.batch_timeout_micros / 1e6
        self._limit = parameters.execution_batch_size
        self._batches = deque()  # waiting batches, oldest first (the open ones included)
        self._open = {}  # key -> the open batch for inputs of that kind
        self._closing = False
        self._running = 0
        self.stats = _new_stats()
        self.latencies = deque(maxlen=100_000)
        self._scheduler = _Scheduler.acquire(parameters.num_batch_threads, parameters.thread_pool_name, self)
        self._cond = self._scheduler.cond

    def reset_stats(self):
        """Zero `stats` and `latencies` (e.g. between benchmark runs)."""
        with self._cond:
            self.stats = _new_stats()
            self.latencies.clear()

    def __repr__(self):
        return f"Batcher({self.name!r}, {self.parameters})"

    # ------------------------------------------------------------------ requests
    def __call__(self, inputs):
        inputs = {key: np.asarray(value) for key, value in inputs.items()}
        size = self._task_size(inputs)
        p = self.parameters
        if size > p.max_batch_size:
            raise ServingError(f"Task size {size} is larger than maximum input batch size {p.max_batch_size}")
        if size == 0:
            return self.run(inputs)  # nothing to merge
        tasks = self._enqueue(inputs, size)
        if len(tasks) == 1:
            return self._wait(tasks[0])
        # enable_large_batch_splitting: the pieces ran in several batches.
        parts = [self._wait(task) for task in tasks]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def _task_size(self, inputs):
        if not inputs:
            raise ServingError(f"{self.name}: a batched signature needs at least one input")
        sizes = set()
        for key, value in inputs.items():
            if value.ndim == 0:
                raise ServingError(f"Input {key!r} is a scalar; batching needs a batch dimension (axis 0) "
                                   f"in every input of {self.name}")
            sizes.add(value.shape[0])
        if len(sizes) != 1:
            raise ServingError("Batching Run() input tensors must have equal 0th-dimension size. "
                               f"Received: {', '.join(f'{k}: {v.shape[0]}' for k, v in sorted(inputs.items()))}")
        return sizes.pop()

    def _key(self, inputs):
        """Which requests may share a batch: same inputs, dtypes and (unless padding)
        the same sizes after axis 0."""
        if self.parameters.pad_variable_length_inputs:
            return tuple((k, v.dtype.str, v.ndim) for k, v in sorted(inputs.items()))
        return tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items()))

    def _enqueue(self, inputs, size):
        """Queue a request: one task, or (`enable_large_batch_splitting`) pieces of it,
        the first filling the open batch, the others `max_execution_batch_size` rows
        each, as TF Serving splits. Returns the tasks."""
        key = self._key(inputs)
        limit = self._limit
        with self._cond:
            if self._closing:
                raise Unavailable(f"{self.name} is being unloaded; retry the request")
            now = time.monotonic()
            batch = self._open.get(key)
            room = limit - batch.size if batch is not None else 0
            if not self.parameters.enable_large_batch_splitting and size > room:
                room = 0  # without splitting a task never straddles batches
            if room and self._bloats(batch, inputs, min(size, room)):
                room = 0
            pieces = [min(size, room)] if room else []
            while sum(pieces) < size:
                pieces.append(min(limit, size - sum(pieces)))
            new_batches = len(pieces) - (1 if room else 0)
            if new_batches and len(self._batches) + new_batches > self.parameters.max_enqueued_batches:
                raise Overloaded(
                    f"The batch scheduling queue to which this task was submitted is full; currently "
                    f"{len(self._batches)} batches enqueued and max_enqueued_batches is "
                    f"{self.parameters.max_enqueued_batches} ({self.name})"
                )
            tasks, start = [], 0
            for rows in pieces:
                part = inputs if rows == size else {k: v[start:start + rows] for k, v in inputs.items()}
                tasks.append(_Task(part, rows))
                start += rows
            wake = False
            for task in tasks:
                task.enqueued = now
                batch = self._open.get(key)
                if batch is not None and (batch.size + task.size > limit
                                          or self._bloats(batch, task.inputs, task.size)):
                    batch.closed, wake = True, True
                    del self._open[key]
                    batch = None
                if batch is None:
                    batch = self._open[key] = _Batch(key, now)
                    self._batches.append(batch)
                    wake = True
                batch.tasks.append(task)
                batch.size += task.size
                if self.parameters.pad_variable_length_inputs:
                    for name, value in task.inputs.items():
                        have = batch.shapes.get(name, value.shape[1:])
                        batch.shapes[name] = tuple(max(a, b) for a, b in zip(have, value.shape[1:]))
                        batch.elements += task.size * math.prod(value.shape[1:])
                if batch.size >= limit:
                    batch.closed, wake = True, True
                    del self._open[key]
            if wake:  # a batch to run now, or a new deadline to wait for
                self._cond.notify()
            return tasks

    def _bloats(self, batch, inputs, rows):
        """pad_variable_length_inputs: whether `rows` rows of `inputs` joining `batch`
        would pad it to more than twice the elements its requests sent (one long
        request would make every neighbour as long); such a request opens a new batch."""
        if not self.parameters.pad_variable_length_inputs or batch is None or not batch.tasks:
            return False
        padded, sent = 0, batch.elements
        for name, value in inputs.items():
            shape = tuple(max(a, b) for a, b in zip(batch.shapes[name], value.shape[1:]))
            padded += (batch.size + rows) * math.prod(shape)
            sent += rows * math.prod(value.shape[1:])
        return padded > 2 * sent

    def _wait(self, task):
        task.done.acquire()
        if task.error is not None:
            error = task.error
            try:
                error = copy.copy(error)  # each caller raises its own object
            except Exception:  # noqa: BLE001  (an exception that cannot be copied)
                pass
            raise error
        return task.outputs

    # ---------------------------------------------------------------- batch threads
    def _take(self, batch):
        """Under the scheduler's lock: `batch` leaves the queue for a batch thread."""
        self._batches.remove(batch)
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        batch.closed = True
        self._running += 1

    def _process(self, batch):
        tasks = batch.tasks
        runs = []  # (padded rows, rows) of each call of run: the batch, then any retried pieces
        try:
            self._run_pieces(tasks, runs)
        finally:
            with self._cond:
                stats = self.stats
                stats["batches"] += 1
                stats["requests"] += len(tasks)
                stats["rows"] += batch.size
                stats["retries"] += max(0, len(runs) - 1)
                for padded, rows in runs:
                    stats["padding"] += padded - rows
                    stats["sizes"][padded] += 1
                done = time.monotonic()
                self.latencies.extend(done - task.enqueued for task in tasks)
                self._running -= 1
                if self._closing:
                    self._cond.notify_all()
            for task in tasks:
                task.done.release()

    def _run_pieces(self, tasks, runs):
        """Run `tasks` as one batch and give each its rows; if `run` fails, run each
        half again (recursively, down to single requests), so a request that breaks
        the model fails alone. Every task ends with `outputs` or `error`."""
        size = sum(task.size for task in tasks)
        padded = _round_up(size, self.parameters.allowed_batch_sizes)
        runs.append((padded, size))
        try:
            outputs = self.run(self._merge(tasks, padded))
        except Exception as error:  # noqa: BLE001  (a request's error, or the batch's)
            if len(tasks) == 1 or not _retryable(error):
                for task in tasks:
                    task.error = error
                return
            if len(runs) == 1:
                log.debug("%s: a batch of %d requests failed (%s: %s); running it again in halves",
                          self.name, len(tasks), type(error).__name__, error)
            half = len(tasks) // 2
            self._run_pieces(tasks[:half], runs)
            self._run_pieces(tasks[half:], runs)
            return
        except BaseException as error:  # noqa: BLE001  (KeyboardInterrupt...: every caller gets it)
            for task in tasks:
                task.error = error
            return
        try:
            self._split(tasks, outputs, padded)
        except BaseException as error:  # noqa: BLE001  (the model's answer is unusable: every caller gets it)
            for task in tasks:
                task.error = error

    def _merge(self, tasks, padded):
        size = sum(task.size for task in tasks)
        if len(tasks) == 1 and padded == size:
            return tasks[0].inputs
        merged = {}
        for key in tasks[0].inputs:
            arrays = [task.inputs[key] for task in tasks]
            if self.parameters.pad_variable_length_inputs:
                arrays = _pad_to_common_shape(arrays)
            if padded > size:
                # TF Serving pads with the last request's first row: a real input.
                arrays.append(np.repeat(arrays[-1][:1], padded - size, axis=0))
            merged[key] = np.concatenate(arrays)
        return merged

    def _split(self, tasks, outputs, padded):
        if not isinstance(outputs, dict):
            raise ServingError(f"{self.name}: the batched call returned {type(outputs).__name__}, not a dict")
        outputs = {key: np.asarray(value) for key, value in outputs.items()}
        for key, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != padded:
                raise ServingError(
                    f"Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
                    f"sizes of the input tensors: output {key!r} has shape {list(value.shape)} for a batch "
                    f"of {padded} ({self.name})"
                )
        if len(tasks) == 1:
            task = tasks[0]
            task.outputs = outputs if padded == task.size else {k: v[:task.size] for k, v in outputs.items()}
            return
        start = 0
        for task in tasks:
            end = start + task.size
            task.outputs = {key: value[start:end] for key, value in outputs.items()}
            start = end

    # -------------------------------------------------------------------- closing
    def close(self, timeout=30.0):
        """Refuse new requests, run the queued ones, and leave the thread pool (its
        threads stop when no queue uses them)."""
        with self._cond:
            if self._closing and self._scheduler is None:
                return
            self._closing = True
            self._cond.notify_all()
            deadline = time.monotonic() + timeout
            while (self._batches or self._running) and time.monotonic() < deadline:
                if threading.current_thread() in self._scheduler.threads:
                    break  # closed from inside a batch: nothing to wait for here
                self._cond.wait(0.05)
            left = [task for batch in self._batches for task in batch.tasks]
            self._batches.clear()
            self._open.clear()
        for task in left:  # only if the batch threads did not drain in time
            task.error = Unavailable(f"{self.name} was unloaded before the request ran")
            task.done.release()
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.release(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _new_stats():
    return {"batches": 0, "requests": 0, "rows": 0, "padding": 0, "retries": 0, "sizes": Counter()}


def _retryable(error):
    """Whether a failed batch is worth running again in pieces: not when the error is
    about the server (`Unavailable`: overloaded, unloading), which every piece would
    meet too."""
    return not isinstance(error, Unavailable)


def _round_up(size, allowed):
    for allowed_size in allowed:
        if allowed_size >= size:
            return allowed_size
    return size


def _pad_to_common_shape(arrays):
    """Pad each array at the end of every axis but 0 to the largest size among them,
    with the array's own first value (TF Serving's `AddPadding`)."""
    target = tuple(max(sizes) for sizes in itertools.zip_longest(*(a.shape[1:] for a in arrays), fillvalue=0))
    padded = []
    for array in arrays:
        if array.shape[1:] == target:
            padded.append(array)
            continue
        widths = [(0, 0)] + [(0, want - have) for want, have in zip(target, array.shape[1:])]
        fill = array.flat[0] if array.size else np.zeros((), array.dtype)[()]
        padded.append(np.pad(array, widths, mode="constant", constant_values=fill) if array.dtype != object
                      else _pad_object(array, target, fill))
    return padded


def _pad_object(array, target, fill):
    out = np.empty((array.shape[0], *target), dtype=object)
    out[...] = fill
    out[(slice(None), *(slice(0, n) for n in array.shape[1:]))] = array
    return out
