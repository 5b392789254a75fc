"""`fit`: the one place in zoo that compiles and trains a model.

Every kind of model trains through it — a classifier's head on cached features, a
fine-tuned base, a GAN with its own `train_step` and two optimizers, the learning-rate
finder, a painted image. Three objects say everything besides the data:

- `Defaults`: what to train for (loss, metrics, optimizer, learning rate, the metric
  that picks the best epoch): a task's defaults, keras-hub's `compile(loss="auto")` idea;
- `Settings` (`zoo.training.settings`): how it runs on this machine (precision,
  distribution strategy, steps per compiled call, XLA);
- `Tracking`: what the run records (its directory, checkpoint + resume, best epoch,
  history / metrics.json, TensorBoard, early stopping, a time budget) — the callbacks
  every run gets, built by one factory, `run_callbacks`.

    from zoo.training import Defaults, Tracking, fit
    result = fit(model, (x, y), val=(xv, yv), epochs=5, defaults=Defaults.classifier(),
                 tracking=Tracking(run_dir="runs/a"))   # runs/a/metrics.json, checkpoints/, logs/
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import keras

from zoo.training import data as data_forms
from zoo.training.callbacks import METRICS_FILE, HistoryWriter, RunProgress, TensorBoardLogger, TimeLimit
from zoo.training.checkpoint import Checkpoint
from zoo.training.settings import Settings

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
              "rmsprop": keras.optimizers.RMSprop}


class NewModelsAreNotRetracing(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <function TensorFlowTrainer...>
    triggered tf.function retracing" warning, and only that one.

    TensorFlow counts traces per Python code object, and Keras makes every model's
    train, test and predict functions from the same code: five models' functions
    traced within ten calls read as "retracing" though none was traced twice. `--lr
    auto` on a small folder does exactly that — the sweep's train function, then each
    phase's train and test functions — and got the warning. (A real retrace inside a
    fit would be of Keras' inner `one_step_on_data`, which runs in the outer function's
    graph and is not counted here either.) Installed on the `tensorflow` logger when
    this module is imported (by `fit`, `lr_find`, the transfer module): plain
    `logging`, nothing of TensorFlow's is imported.
    """

    def filter(self, record):
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "TensorFlowTrainer." in message)


if not any(isinstance(f, NewModelsAreNotRetracing) for f in logging.getLogger("tensorflow").filters):
    logging.getLogger("tensorflow").addFilter(NewModelsAreNotRetracing())


@dataclass(frozen=True)
class Defaults:
    """What a model trains for: a task's defaults, each replaceable (`defaults.replace(...)`).

    Attributes:
        loss: a Keras loss (name or object), or None for a model that computes its own
            (a custom `train_step` or `compute_loss`).
        metrics: tuple of Keras metrics.
        optimizer: a name in `OPTIMIZERS` or a Keras optimizer. Defaults to `"adam"`.
        learning_rate: float or a schedule. Defaults to `1e-3`.
        compile_args: dict or None. Passed to the model's own `compile` instead of the
            above (a GAN's `compile(d_optimizer=..., g_optimizer=...)`).
        monitor: str or None. The log key that picks the best epoch when there is
            validation data (`"val_accuracy"`), and its `mode` (`"max"` or `"min"`).
        train_monitor: str or None. What picks the best epoch without validation data.
        tie_monitor: str or None. What breaks a tie of `monitor` (lower is better).
        class_weight: dict or None. `{class id: weight}` scaling each example's loss
            by its class (Keras' `fit(class_weight=...)`), e.g. `balanced_class_weight`.
    """

    loss: object = None
    metrics: tuple = ()
    optimizer: object = "adam"
    learning_rate: object = 1e-3
    compile_args: dict | None = None
    monitor: str | None = "val_loss"
    mode: str = "min"
    train_monitor: str | None = None
    train_mode: str = "min"
    tie_monitor: str | None = None
    class_weight: dict | None = None

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def make_optimizer(self):
        if isinstance(self.optimizer, str):
            return OPTIMIZERS[self.optimizer](learning_rate=self.learning_rate)
        return self.optimizer

    def monitor_for(self, has_val):
        """`(monitor, mode)` that picks the best epoch, with or without validation data."""
        return (self.monitor, self.mode) if has_val else (self.train_monitor, self.train_mode)

    @classmethod
    def classifier(cls, learning_rate=1e-3, label_smoothing=0.0, soft_labels=False):
        """Class-id labels, softmax outputs: the image classifier's defaults (the loss
        with `label_smoothing`; `soft_labels`: training batches that carry label
        distributions, MixUp's and CutMix's; `zoo.training.losses`)."""
        import keras

        from zoo.training.losses import class_accuracy, sparse_crossentropy

        accuracy = keras.metrics.MeanMetricWrapper(class_accuracy, name="accuracy") if soft_labels else "accuracy"
        return cls(loss=sparse_crossentropy(label_smoothing, soft_labels), metrics=(accuracy,),
                   learning_rate=learning_rate,
                   monitor="val_accuracy", mode="max", train_monitor="loss", train_mode="min",
                   tie_monitor="val_loss")

    @classmethod
    def segmenter(cls, num_classes, learning_rate=1e-3, ignore_index=255):
        """Masks of class ids, a softmax per pixel: the segmenter's defaults. Pixels
        equal to `ignore_index` count for nothing; the best epoch is the one of the
        highest validation mean IoU (`val_mean_iou`)."""
        import keras

        from zoo.training.losses import MaskedSparseCrossentropy, PixelAccuracy

        mean_iou = keras.metrics.MeanIoU(num_classes=num_classes, ignore_class=ignore_index, sparse_y_pred=False,
                                         name="mean_iou")
        return cls(loss=MaskedSparseCrossentropy(ignore_index), metrics=(PixelAccuracy(ignore_index), mean_iou),
                   learning_rate=learning_rate, monitor="val_mean_iou", mode="max", train_monitor="loss",
                   train_mode="min", tie_monitor="val_loss")

    @classmethod
    def own_loss(cls, monitor=None, train_monitor=None, **changes):
        """A model that computes its own loss (a GAN, an autoencoder, a painted image)."""
        return cls(loss=None, monitor=monitor, train_monitor=train_monitor, **changes)


@dataclass(frozen=True)
class Tracking:
    """What a run records while it trains; `run_callbacks` turns it into callbacks.

    Attributes:
        run_dir: path or None. Where `metrics.json`, `checkpoints/` and `logs/` go.
        checkpoint: `"auto"` (a `Checkpoint` in `run_dir/checkpoints`, in memory
            without a run_dir), a `Checkpoint` shared across calls, or None for none.
        resume: bool. Continue from the checkpoint's last finished epoch.
        best: bool. Track the best epoch by the defaults' monitor (or `monitor`).
        monitor: `"auto"` (the task's) or a log key.
        restore_best: bool. End holding the best epoch's weights (the last epoch's stay
            in the checkpoint).
        early_stopping: int or None. Patience in epochs.
        minutes: float or None. A training-time budget over the whole run
            (`TimeLimit`); `anneal_from` decays a plain learning rate to zero by then.
        tensorboard: bool or a `TensorBoardLogger`. Log to `run_dir/logs`.
        tensorboard_images: callable `(epoch) -> {tag: uint8 image}` or None.
        saved_model: keras.Model or None. What the checkpoint saves and restores, when
            the model trained is only part of it (a head on cached features).
        history: list or None. Per-epoch records, shared across the calls of one run.
        step_history: list or None. The training scalars within each epoch (at most
            `STEP_POINTS` records an epoch; see `HistoryWriter`), shared like `history`:
            metrics.json's `step_history`, drawn between the epochs in curves.png.
        tags: dict. Keys added to every history record (`{"phase": 1}`).
        write_metrics: bool. Write `run_dir/metrics.json` when training ends (a run in
            several phases writes it once, at the end).
        metrics_extra: callable returning more keys for metrics.json, or None.
        total_epochs: int or None. The run's epoch count for the progress header.
    """

    run_dir: object = None
    checkpoint: object = "auto"
    resume: bool = False
    best: bool = True
    monitor: str | None = "auto"
    restore_best: bool = True
    early_stopping: int | None = None
    minutes: float | None = None
    anneal_from: float | None = None
    tensorboard: object = True
    tensorboard_images: object = None
    saved_model: object = None
    history: list | None = None
    step_history: list | None = None
    tags: dict = field(default_factory=dict)
    write_metrics: bool = True
    metrics_extra: object = None
    total_epochs: int | None = None

    @classmethod
    def off(cls, **changes):
        """Nothing recorded: no checkpoint, no best epoch, no logs (a sweep, a baseline)."""
        return cls(checkpoint=None, best=False, restore_best=False, tensorboard=False, **changes)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def monitor_for(self, defaults, has_val):
        """`(monitor, mode)`: the log key that picks the best epoch (None: no best epoch)."""
        if self.monitor == "auto":
            monitor, mode = defaults.monitor_for(has_val)
        else:
            monitor = self.monitor
            mode = "max" if monitor and ("acc" in monitor or "auc" in monitor) else "min"
        return (monitor if self.best else None), mode

    def shared(self, defaults, has_val):
        """This tracking with its checkpoint and history made, for a run that fits in
        several calls (phases) sharing them: the checkpoint knows the epochs done
        before the first call."""
        if self.checkpoint != "auto" and self.history is not None and self.step_history is not None:
            return self
        history = self.history if self.history is not None else []
        checkpoint = self.checkpoint
        step_history = self.step_history
        if step_history is None:  # a checkpoint of the caller's keeps its own
            step_history = checkpoint.step_history if isinstance(checkpoint, Checkpoint) else []
        if checkpoint == "auto":
            monitor, mode = self.monitor_for(defaults, has_val)
            directory = Path(self.run_dir) / CHECKPOINT_DIR if self.run_dir else None
            checkpoint = Checkpoint(directory, monitor=monitor, mode=mode, model=self.saved_model, history=history,
                                    resume=self.resume, step_history=step_history)
            if has_val and monitor == defaults.monitor:
                checkpoint.tie_monitor = defaults.tie_monitor
        return self.replace(checkpoint=checkpoint, history=history, step_history=step_history)


@dataclass
class FitResult:
    """What a run's training did: the per-epoch `history` (the whole run's, across
    calls) and the `step_history` within its epochs, the best epoch and its value,
    whether the model now holds the best epoch's weights, the `Checkpoint` (to restore
    the best epoch later, or clear it), the `settings` it ran with (resolved), and
    `info` a training policy adds (a two-phase fine-tune's seconds per phase, whether
    it cached features)."""

    history: list
    step_history: list = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    monitor: str | None = None
    restored_best: bool = False
    checkpoint: Checkpoint | None = None
    stopped_early: bool = False
    settings: Settings | None = None
    info: dict = field(default_factory=dict)

    @property
    def last_epoch(self):
        if self.checkpoint is not None and self.checkpoint.state:
            return self.checkpoint.epochs_done
        return self.history[-1]["epoch"] if self.history else 0


@dataclass
class RunCallbacks:
    """`run_callbacks`' result: the callbacks in order, and the ones `fit` asks after."""

    callbacks: list
    history: list
    step_history: list
    checkpoint: Checkpoint | None
    monitor: str | None
    stopper: object = None
    time_limit: object = None


def run_callbacks(tracking, defaults, has_val, epochs, verbose):
    """The callbacks every run gets, from `tracking`: history (and metrics.json),
    checkpoint + resume + best epoch, TensorBoard, the progress header, early stopping
    and the time budget — the one factory for them."""
    run_dir = Path(tracking.run_dir) if tracking.run_dir else None
    monitor, mode = tracking.monitor_for(defaults, has_val)
    was_made = tracking.checkpoint == "auto"
    tracking = tracking.shared(defaults, has_val)
    history, step_history, checkpoint = tracking.history, tracking.step_history, tracking.checkpoint
    if checkpoint is not None and not was_made and tracking.saved_model is not None:
        checkpoint.saved_model = tracking.saved_model

    metrics_file = run_dir / METRICS_FILE if run_dir and tracking.write_metrics else None
    callbacks = [HistoryWriter(history, metrics_file, tags=tracking.tags, extra=tracking.metrics_extra,
                               step_history=step_history)]
    if checkpoint is not None:
        callbacks.append(checkpoint)
    if tracking.tensorboard and run_dir is not None:
        callbacks.append(tracking.tensorboard if isinstance(tracking.tensorboard, TensorBoardLogger)
                         else TensorBoardLogger(run_dir / LOG_DIR, images=tracking.tensorboard_images))
    if verbose:
        callbacks.append(RunProgress(tracking.total_epochs or epochs, minutes=tracking.minutes, history=history))
    stopper = time_limit = None
    if tracking.early_stopping:
        stopper = keras.callbacks.EarlyStopping(monitor=monitor or "loss", mode=mode,
                                                patience=int(tracking.early_stopping))
        callbacks.append(stopper)
    if tracking.minutes:
        time_limit = TimeLimit(tracking.minutes, history, anneal_from=tracking.anneal_from)
        callbacks.append(time_limit)
    return RunCallbacks(callbacks, history, step_history, checkpoint, monitor, stopper, time_limit)


def balanced_class_weight(labels, num_classes):
    """scikit-learn's "balanced" class weights: `n / (K * n_c)` for class c of K with
    n_c of the n training examples, so that every class weighs as much in the loss
    (a class with no example gets 0)."""
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype="int64"), minlength=num_classes)
    total = counts.sum()
    return {c: float(total / (num_classes * counts[c])) if counts[c] else 0.0 for c in range(num_classes)}


def ordered(own, extra):
    """The run's callbacks and the caller's, the caller's that say `runs_first` (a
    `RecalibrateBatchNorm`: what the checkpoint saves must already be changed) ahead."""
    first = [c for c in extra if getattr(c, "runs_first", False)]
    return [*first, *own, *(c for c in extra if not getattr(c, "runs_first", False))]


def progress_verbosity(verbose):
    """Keras' `verbose` for `"auto"`: the live bar on a terminal, otherwise one line
    per epoch (a bar redrawn with carriage returns is noise in a log or a pipe)."""
    if verbose == "auto":
        import sys

        return 1 if sys.stdout.isatty() else 2
    return verbose


def recompile(model):
    """Compile `model` again from its own compile config, if it was compiled.

    Keras fixes the trainable variables when a model is compiled: after freezing or
    unfreezing, compile again (with a fresh optimizer, since the old one's slots belong
    to the old set of variables).
    """
    config = model.get_compile_config() if getattr(model, "compiled", False) else None
    if config:
        model.compile_from_config(config)
    return model


def compile_model(model, defaults=None, steps_per_execution=1, jit_compile="auto"):
    """Compile `model` for `defaults` (`compile_args` go to the model's own `compile`)."""
    defaults = defaults or Defaults()
    if defaults.compile_args is not None:
        model.compile(**{"steps_per_execution": steps_per_execution, **defaults.compile_args})
        return model
    model.compile(optimizer=defaults.make_optimizer(), loss=defaults.loss, metrics=list(defaults.metrics),
                  steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    return model


def fit(model, train, val=None, *, epochs=1, defaults=None, settings=None, tracking=None, batch_size=32,
        steps_per_epoch=None, shuffle=True, compile=True, callbacks=(), verbose=1):
    """Compile and train `model`; the run's files go under `tracking.run_dir`.

    Args:
        model: keras.Model. Trained in place (built under `settings.building()`).
        train: `(x, y)` arrays, a `tf.data.Dataset` of batches, or an iterable of them.
        val: validation data in the same forms, or None.
        epochs: int. The epoch to stop at, counted over the whole run (a resumed or
            second-phase call continues the count). Defaults to `1`.
        defaults: `Defaults`. Loss, metrics, optimizer, rate and best-epoch metric.
        settings: `Settings` or None (float32 on one device... whatever "auto" means
            here). Its strategy must be the one the model was built under.
        tracking: `Tracking` or None (a checkpoint in memory, best epoch restored).
        batch_size: int. Batch size for array data (for a strategy: the global batch).
        steps_per_epoch: int or None. Batches per epoch (None: one pass).
        shuffle: bool. Shuffle array data each epoch. Datasets shuffle themselves.
        compile: bool. Compile before training; False keeps the model's compiled state.
        callbacks: more Keras callbacks.
        verbose: `"auto"`, 0, 1 or 2 (`"auto"`: the bar on a terminal, a line per epoch
            otherwise).

    Returns:
        `FitResult`.
    """
    defaults = defaults or Defaults()
    tracking = tracking or Tracking()
    verbose = progress_verbosity(verbose)
    settings = (settings or Settings()).resolved(
        steps_per_epoch or data_forms.known_num_batches(train, batch_size))
    own = run_callbacks(tracking, defaults, val is not None, epochs, verbose)
    checkpoint = own.checkpoint
    initial_epoch = checkpoint.epochs_done if checkpoint is not None else 0
    if settings.strategy is not None:  # every worker asks, or one would wait for the others
        from zoo.training.distribute import check_same_epoch

        check_same_epoch(settings.strategy, initial_epoch)

    result = FitResult(history=own.history, step_history=own.step_history, checkpoint=checkpoint,
                       monitor=own.monitor, settings=settings)
    target = tracking.saved_model if tracking.saved_model is not None else model
    with settings.scope():
        if compile:
            compile_model(model, defaults, settings.steps_per_execution, settings.jit_compile)
        if initial_epoch < epochs:
            model.fit(
                **data_forms.keras_fit_args(train, batch_size, shuffle), validation_data=data_forms.validation(val),
                epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                class_weight=defaults.class_weight, callbacks=ordered(own.callbacks, callbacks), verbose=verbose,
            )
        elif checkpoint is not None and checkpoint.state:
            # Nothing left to train in this call: the checkpoint still holds its state.
            checkpoint.restore(target, which="last")
    if own.stopper is not None:
        result.stopped_early = bool(own.stopper.stopped_epoch)
    if own.time_limit is not None and own.time_limit.stopped_epoch:
        result.info["time_limit_epoch"] = own.time_limit.stopped_epoch
    if checkpoint is not None and checkpoint.state:
        result.best_epoch = checkpoint.best_epoch
        result.best_value = checkpoint.state.get("best_value")
        if tracking.restore_best and result.best_epoch is not None and result.best_epoch != checkpoint.epochs_done:
            checkpoint.restore_best(target)
            result.restored_best = True
    return result
