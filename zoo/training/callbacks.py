"""The callbacks `zoo.training.fit` owns: the history / metrics.json writer, TensorBoard
logs, and the learning-rate finder. (Checkpoint, resume and the best epoch are in
`zoo.training.checkpoint`.)

fastai's habit: one loop, everything else a callback.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import numpy as np

from zoo import io

METRICS_FILE = "metrics.json"


def current_lr(optimizer):
    """The learning rate the optimizer used for its last step (a float)."""
    lr = optimizer.learning_rate
    if callable(lr) and not hasattr(lr, "numpy"):
        lr = lr(optimizer.iterations)
    return float(np.asarray(lr))


def epoch_lr(optimizer, first_step, last_step):
    """The mean learning rate over optimizer steps `[first_step, last_step)`.

    With a schedule, the rate after the epoch is only where it ended (a one-cycle
    phase would read as its tiny final rate): sample the schedule across the epoch.
    """
    lr = optimizer.learning_rate
    schedule = getattr(optimizer, "_learning_rate", None)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(np.asarray(lr))
    if last_step <= first_step:
        return float(np.asarray(schedule(first_step)))
    steps = np.unique(np.linspace(first_step, last_step - 1, num=min(16, last_step - first_step)).round())
    return float(np.mean([float(np.asarray(schedule(int(step)))) for step in steps]))


def _scalars(logs):
    return {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}


class HistoryWriter(keras.callbacks.Callback):
    """Appends one record per epoch to `history`; writes `metrics.json` (atomically)
    when training ends. (A killed run's history lives on in its checkpoint's state, and
    a multi-phase task writes metrics.json itself once, at the end.)

    A record: `epoch` (counted over the whole run, 1-based), the logs' scalars (loss,
    metrics, `val_*`), `lr` (the mean rate over the epoch's steps), `seconds`, and the
    caller's `tags` (e.g. `phase`).

    With `step_history` (a list), the training scalars are also recorded within each
    epoch — what `curves.png` draws between the epochs' points, so that a run of one or
    two epochs still shows a curve: at most `STEP_POINTS` records per epoch, each the
    mean over a stretch of consecutive steps, `{"epoch", **tags, "at", <scalars>}`,
    where `at` is the stretch's middle in epochs (0.5: half-way through epoch 1).
    Keras' batch logs are running means over the epoch; a stretch's own mean is
    recovered from them (`(k2 * mean_k2 - k1 * mean_k1) / (k2 - k1)`).
    """

    def __init__(self, history, path=None, tags=None, extra=None, step_history=None):
        super().__init__()
        self.history = history
        self.path = Path(path) if path else None
        self.tags = dict(tags or {})
        self.extra = extra  # callable returning more keys for metrics.json, or None
        self.step_history = step_history

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        optimizer = getattr(self.model, "optimizer", None)
        self._first_step = int(np.asarray(optimizer.iterations)) if optimizer is not None else 0
        self._running = []  # (steps done in the epoch, {key: running mean})

    def on_train_batch_end(self, batch, logs=None):
        if self.step_history is not None:
            scalars = {k: v for k, v in _scalars(logs).items() if not k.startswith("val_")}
            if scalars:
                self._running.append((int(batch) + 1, scalars))

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, **self.tags, **_scalars(logs)}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            record["lr"] = epoch_lr(optimizer, self._first_step, int(np.asarray(optimizer.iterations)))
        record["seconds"] = round(time.perf_counter() - self._t0, 3)
        # A resumed epoch replaces what an interrupted attempt may have left.
        self.history[:] = [h for h in self.history if h["epoch"] != record["epoch"]]
        self.history.append(record)
        if self.step_history is not None:
            self.step_history[:] = [s for s in self.step_history if s["epoch"] != record["epoch"]]
            self.step_history.extend(step_records(self._running, epoch + 1, self.tags))

    def on_train_end(self, logs=None):
        if self.path is not None:
            steps = {"step_history": self.step_history} if self.step_history is not None else {}
            io.write_json(self.path, {"history": self.history, **steps,
                                      **(self.extra() if self.extra else {})})


STEP_POINTS = 50  # records per epoch in a run's step_history, at most


def step_records(running, epoch, tags=None, points=STEP_POINTS):
    """An epoch's `step_history` records from Keras' running means after each call of
    the train function: `running` is `[(steps done, {key: mean over those steps})]`.
    The steps are cut into at most `points` stretches; each record is a stretch's own
    mean, placed at its middle (`at`, in epochs: `epoch - 1 + fraction`)."""
    if not running:
        return []
    total = running[-1][0]
    ends = [0, *(n for n, _ in running)]
    if len(running) > points:  # keep `points` boundaries, evenly spread, the last one included
        keep = np.unique(np.linspace(0, len(running) - 1, num=points).round().astype(int))
        running = [running[i] for i in keep]
        ends = [0, *(n for n, _ in running)]
    records, before = [], {}
    for (start, (end, means)) in zip(ends[:-1], running):
        if end <= start:
            continue
        values = {}
        for key, mean in means.items():
            low = before.get(key, 0.0) * start
            values[key] = float(f"{(mean * end - low) / (end - start):.6g}")
        records.append({"epoch": int(epoch), **dict(tags or {}), "at": round(epoch - 1 + (start + end) / 2 / total, 4),
                        **values})
        before = means
    return records


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with the header counting the run's epochs, not the call's.

    A run fitted in phases would otherwise read `Epoch 1/1` then `Epoch 2/5`, and a
    one-epoch fit gets no header at all. A run with a time budget (`minutes`) has no
    epoch count worth printing (its cap is only a bound the clock never reaches): its
    header is the budget's clock, `Epoch 3 (4:10 of 15:00)` — the training time spent
    before the epoch (over the whole run, resumes included: `history`'s `seconds`) of
    the time allowed.
    """

    def __init__(self, total_epochs, minutes=None, history=None):
        super().__init__()
        self.total_epochs = total_epochs
        self.minutes = minutes
        self.history = history if history is not None else []

    def header(self, epoch):
        if self.minutes:
            spent = sum(h.get("seconds", 0.0) for h in self.history if h.get("epoch", 0) <= epoch)
            return f"Epoch {epoch + 1} ({clock(spent)} of {clock(float(self.minutes) * 60.0)})"
        return f"Epoch {epoch + 1}/{self.total_epochs}"

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose:
            print(self.header(epoch), flush=True)


def clock(seconds):
    """`m:ss` (`h:mm:ss` from an hour): 250 -> '4:10', 900 -> '15:00'."""
    minutes, secs = divmod(int(round(max(float(seconds), 0.0))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TensorBoardLogger(keras.callbacks.Callback):
    """Scalars every epoch and the images a task provides, as TensorBoard event files.

    Written with the `tensorboard` package's protos and record format (`EventFile`), so
    it works on every Keras backend without importing TensorFlow (Keras' `TensorBoard`
    callback imports `tensorflow.summary`, and tensorboard's own `EventFileWriter`
    imports TensorFlow for its file layer whenever it is installed). Training logs go to `LOG_DIR/train`, validation
    logs (the `val_` keys) to `LOG_DIR/validation` under the same tag, as Keras lays
    them out, so TensorBoard overlays the two curves.

    Args:
        log_dir: path. Usually `RUN/logs`.
        images: callable `(epoch) -> {tag: uint8 (H, W, 3) array}` or None, called at
            the end of each epoch (a confusion matrix, sample grids).
        image_every: int. Epochs between image summaries; the last epoch always gets
            one when `on_train_end` is reached. Defaults to `1`.
    """

    def __init__(self, log_dir, images=None, image_every=1):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.images = images
        self.image_every = max(int(image_every), 1)
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = EventFile(self.log_dir / name)
        return self._writers[name]

    def _event(self, name, step, values):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values))
        self._writer(name).add_event(event)

    def on_epoch_end(self, epoch, logs=None):
        from tensorboard.compat.proto import summary_pb2

        train, val = [], []
        scalars = _scalars(logs)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            scalars["learning_rate"] = current_lr(optimizer)
        for key, value in scalars.items():
            if key.startswith("val_"):
                val.append(summary_pb2.Summary.Value(tag=f"epoch_{key[4:]}", simple_value=value))
            else:
                train.append(summary_pb2.Summary.Value(tag=f"epoch_{key}", simple_value=value))
        if train:
            self._event("train", epoch + 1, train)
        if val:
            self._event("validation", epoch + 1, val)
        if self.images is not None and (epoch + 1) % self.image_every == 0:
            self.write_images(epoch + 1, self.images(epoch + 1))
        for writer in self._writers.values():
            writer.flush()

    def write_images(self, step, images):
        """Write `{tag: uint8 (H, W, 3) array}` as PNG image summaries at `step`."""
        from tensorboard.compat.proto import summary_pb2

        values = []
        for tag, array in (images or {}).items():
            array = np.asarray(array, dtype="uint8")
            values.append(summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
                height=array.shape[0], width=array.shape[1], colorspace=array.shape[2],
                encoded_image_string=_png(array))))
        if values:
            self._event("validation", step, values)
            self._writer("validation").flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class EventFile:
    """One TensorBoard event file: `events.out.tfevents.TIME.HOST.PID.N` in `log_dir`,
    TFRecord-framed `Event` protos (tensorboard's `RecordWriter`), flushed on request."""

    _count = 0

    def __init__(self, log_dir):
        import socket

        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        EventFile._count += 1
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{EventFile._count}"
        self.path = log_dir / name
        self._records = RecordWriter(open(self.path, "wb"))
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_event(self, event):
        self._records.write(event.SerializeToString())

    def flush(self):
        self._records.flush()

    def close(self):
        if not self._records.closed:
            self._records.close()


def _png(array):
    import io as stdlib_io

    from PIL import Image

    buffer = stdlib_io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class LRFinder(keras.callbacks.Callback):
    """The learning-rate range test as a callback (Smith, 2015; fastai's `LRFinder`).

    Run inside `fit` with one batch per epoch (`steps_per_epoch=1`), so that each
    epoch's logged loss is exactly that batch's loss: the rate grows exponentially from
    `start_lr` to `end_lr` over `num_steps` steps, the loss is smoothed (exponential
    average with bias correction), training stops once it diverges, and the weights
    are restored when training ends.
    """

    def __init__(self, start_lr=1e-7, end_lr=10.0, num_steps=100, diverge=4.0, beta=0.98):
        super().__init__()
        self.start_lr, self.end_lr = float(start_lr), float(end_lr)
        self.num_steps = int(num_steps)
        self.diverge, self.beta = float(diverge), float(beta)
        self.lrs, self.losses = [], []

    def lr_at(self, step):
        ratio = (self.end_lr / self.start_lr) ** (1.0 / max(self.num_steps - 1, 1))
        return self.start_lr * ratio ** step

    def on_train_begin(self, logs=None):
        self._saved = [np.array(v) for v in self.model.weights]
        self._smoothed, self._best = 0.0, np.inf

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.lr_at(epoch))

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        loss = float((logs or {}).get("loss", np.nan))
        self._smoothed = self.beta * self._smoothed + (1 - self.beta) * loss
        value = self._smoothed / (1 - self.beta ** step)
        self.lrs.append(self.lr_at(epoch))
        self.losses.append(value)
        self._best = min(self._best, value)
        if not np.isfinite(value) or value > self.diverge * self._best or step >= self.num_steps:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for variable, value in zip(self.model.weights, self._saved):
            variable.assign(value)


class TimeLimit(keras.callbacks.Callback):
    """Stop training at the end of the epoch after which another would not fit in the
    budget (`--minutes M`), and anneal the learning rate to the budget.

    The budget counts training time over the whole run: a resumed run starts with the
    seconds its `history` already records, so `--minutes 15` means fifteen minutes of
    training however often the run was interrupted. An epoch is only cut at its end, so
    every epoch the run records was scored on the held-out data.

    With `anneal_from=LR` the learning rate falls linearly with the time spent, from LR
    to zero at the budget: when the budget, not an epoch count, is what
    is fixed, a linear decay to it beats a constant rate or a step schedule (Li et al.,
    "Budgeted Training", https://arxiv.org/abs/1905.04753).

    Args:
        minutes: float. Training time allowed.
        history: list. The run's history records (each with `seconds`).
        anneal_from: float or None. The rate at the start of the run to decay with the
            clock (the optimizer's rate must be a plain value, not a schedule); None
            leaves the rate alone. Defaults to `None`.
    """

    def __init__(self, minutes, history, anneal_from=None):
        super().__init__()
        self.budget = float(minutes) * 60.0
        self.history = history
        self.anneal_from = anneal_from
        self.stopped_epoch = None

    def _spent(self):
        return sum(h.get("seconds", 0.0) for h in self.history)

    def on_train_begin(self, logs=None):
        if self.anneal_from is not None and not hasattr(self.model.optimizer.learning_rate, "assign"):
            raise ValueError("`anneal_from` needs an optimizer with a plain learning rate, not a schedule.")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._spent_before = self._spent()

    def on_train_batch_begin(self, batch, logs=None):
        if self.anneal_from is not None:
            elapsed = self._spent_before + time.perf_counter() - self._epoch_start
            self.model.optimizer.learning_rate.assign(self.anneal_from * max(0.0, 1.0 - elapsed / self.budget))

    def on_epoch_end(self, epoch, logs=None):
        spent = self._spent()
        last = self.history[-1].get("seconds", 0.0) if self.history else 0.0
        if spent + last > self.budget:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
