"""`fit`: the one place in zoo that compiles and trains a model.

Every kind of model trains through it — a classifier's head on cached features, a
fine-tuned base, a GAN with its own `train_step` and two optimizers, the learning-rate
finder. The task supplies its defaults (loss, metrics, optimizer, the metric that picks
the best epoch: keras-hub's `compile(loss="auto")` idea); `fit` owns compiling, the
distribution-strategy scope, `steps_per_execution`, XLA, and the callbacks every run
gets: history / metrics.json, checkpoint + resume, best epoch, TensorBoard, early
stopping.

    from zoo.training import Defaults, fit
    result = fit(model, (x, y), val=(xv, yv), epochs=5, defaults=Defaults.classifier(),
                 run_dir="runs/a")          # runs/a/metrics.json, checkpoints/, logs/
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import keras

from zoo.training import data as data_forms
from zoo.training.callbacks import METRICS_FILE, HistoryWriter, RunProgress, TensorBoardLogger
from zoo.training.checkpoint import Checkpoint

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
              "rmsprop": keras.optimizers.RMSprop}


@dataclass(frozen=True)
class Defaults:
    """A task's training defaults: what `"auto"` means for `fit`'s arguments.

    Attributes:
        loss: a Keras loss (name or object), or None for a model that computes its own
            (a custom `train_step` or `compute_loss`).
        metrics: tuple of Keras metrics.
        optimizer: str. A name in `OPTIMIZERS`. Defaults to `"adam"`.
        learning_rate: float. Defaults to `1e-3`.
        monitor: str or None. The log key that picks the best epoch when there is
            validation data (`"val_accuracy"`), and its `mode` (`"max"` or `"min"`).
        train_monitor: str or None. What picks the best epoch without validation data.
    """

    loss: object = None
    metrics: tuple = ()
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    monitor: str | None = "val_loss"
    mode: str = "min"
    train_monitor: str | None = None
    train_mode: str = "min"
    tie_monitor: str | None = None

    def make_optimizer(self, learning_rate=None):
        return OPTIMIZERS[self.optimizer](learning_rate=self.learning_rate if learning_rate is None else learning_rate)

    @classmethod
    def classifier(cls, learning_rate=1e-3):
        """Class-id labels, softmax outputs: the image classifier's defaults."""
        return cls(loss="sparse_categorical_crossentropy", metrics=("accuracy",), learning_rate=learning_rate,
                   monitor="val_accuracy", mode="max", train_monitor="loss", train_mode="min",
                   tie_monitor="val_loss")


@dataclass
class FitResult:
    """What `fit` did: the per-epoch `history` (the whole run's, across calls), the best
    epoch and its value, whether the model now holds the best epoch's weights, and the
    `Checkpoint` (to restore the best epoch later, or clear it)."""

    history: list
    best_epoch: int | None = None
    best_value: float | None = None
    monitor: str | None = None
    restored_best: bool = False
    checkpoint: Checkpoint | None = None
    stopped_early: bool = False


def strategy_scope(strategy):
    """The scope models are built and compiled in: a `tf.distribute` strategy's, or none.

    The hook every task goes through, so that distribution is added in one place.
    """
    if strategy is None:
        return contextlib.nullcontext()
    scope = getattr(strategy, "scope", None)
    if scope is None:
        raise ValueError(f"`strategy` must have a `scope()` (a tf.distribute strategy). Received: strategy={strategy!r}")
    return scope()


PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def resolve_precision(policy="auto", float16=True):
    """The policy `"auto"` means on this machine, or `policy` itself, checked.

    `"auto"` is `mixed_bfloat16` where the hardware computes in bfloat16 (NVIDIA GPUs
    of compute capability 8.0 and later, TPUs), `mixed_float16` on older NVIDIA GPUs
    (Keras adds loss scaling; `float16=False` for models that cannot take it gets
    float32 there), and `float32` on CPUs, where mixed precision is slower. The off
    switch is `precision="float32"` (`--precision float32`).
    """
    policy = policy or "auto"
    if policy not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={policy!r}")
    if policy != "auto":
        return policy
    from zoo.distribute import accelerator

    kind, capability = accelerator()
    if kind == "tpu" or (kind == "gpu" and capability is not None and capability >= (8, 0)):
        return "mixed_bfloat16"
    if kind == "gpu":
        return "mixed_float16" if float16 else "float32"
    return "float32"


def resolve_steps_per_execution(value, batches_per_epoch=None):
    """`"auto"`: 8 batches per compiled call on a GPU or TPU, where handing control back
    to Python after every small step leaves the device idle, at most one epoch's
    batches; 1 on a CPU, where it buys nothing and callbacks see every batch. The off
    switch is `steps_per_execution=1`."""
    if value != "auto":
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`steps_per_execution` must be a positive int or 'auto'. "
                             f"Received: steps_per_execution={value!r}")
        return value
    from zoo.distribute import accelerator

    if accelerator()[0] == "cpu":
        return 1
    return max(1, min(8, batches_per_epoch or 8))


@contextlib.contextmanager
def precision(policy="auto"):
    """Build models under a mixed-precision policy (the one switch for it).

    Layers take their dtype policy when they are created, so the model must be built
    inside this block; `fit` then compiles it as usual (Keras wraps the optimizer in a
    `LossScaleOptimizer` under `mixed_float16` by itself). zoo's heads keep a float32
    softmax, so probabilities still sum to one. `"auto"`: see `resolve_precision`.
    """
    policy = resolve_precision(policy)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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


def compile_model(model, defaults=None, loss="auto", metrics="auto", optimizer="auto", learning_rate=None,
                  compile_args=None, steps_per_execution=1, jit_compile="auto"):
    """Compile `model` with the task's defaults wherever an argument is `"auto"`.

    `compile_args` goes to the model's own `compile` as it is (a GAN's
    `compile(d_optimizer=..., g_optimizer=...)`).
    """
    defaults = defaults or Defaults()
    if compile_args is not None:
        model.compile(**{"steps_per_execution": steps_per_execution, **compile_args})
        return model
    if optimizer == "auto":
        optimizer = defaults.make_optimizer(learning_rate)
    elif isinstance(optimizer, str):
        optimizer = OPTIMIZERS[optimizer](learning_rate=learning_rate or defaults.learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=defaults.loss if loss == "auto" else loss,
        metrics=list(defaults.metrics) if metrics == "auto" else metrics,
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


def fit(
    model,
    train,
    val=None,
    *,
    epochs=1,
    defaults=None,
    loss="auto",
    metrics="auto",
    optimizer="auto",
    learning_rate=None,
    compile_args=None,
    compile=True,
    batch_size=32,
    steps_per_epoch=None,
    shuffle=True,
    steps_per_execution="auto",
    jit_compile="auto",
    strategy=None,
    run_dir=None,
    checkpoint="auto",
    resume=False,
    tensorboard=True,
    tensorboard_images=None,
    best=True,
    monitor="auto",
    early_stopping=None,
    restore_best=True,
    saved_model=None,
    history=None,
    tags=None,
    metrics_extra=None,
    write_metrics=True,
    total_epochs=None,
    callbacks=(),
    verbose=1,
):
    """Compile and train `model`; the run's files go under `run_dir`.

    Args:
        model: keras.Model. Trained in place.
        train: `(x, y)` arrays, a `tf.data.Dataset` of batches, or an iterable of them.
        val: validation data in the same forms, or None.
        epochs: int. The epoch to stop at, counted over the whole run (a resumed or
            second-phase call continues the count). Defaults to `1`.
        defaults: `Defaults`. The task's loss, metrics, optimizer and best-epoch metric.
        loss, metrics, optimizer: `"auto"` (the task's), or what `keras.Model.compile`
            takes. `optimizer` may also be a name in `OPTIMIZERS`.
        learning_rate: float, a schedule, or None (the task's).
        compile_args: dict or None. Passed to the model's own `compile` instead (for
            models whose `compile` takes other arguments, such as a GAN's).
        compile: bool. Compile before training. False keeps the model's compiled
            state (used when a caller fits the same compiled model again).
        batch_size: int. Batch size for array data. Defaults to `32`.
        steps_per_epoch: int or None. Batches per epoch (None: one pass).
        shuffle: bool. Shuffle array data each epoch. Datasets shuffle themselves.
        steps_per_execution: int or `"auto"` (8 on a GPU or TPU, 1 on a CPU; see
            `resolve_steps_per_execution`). Batches per compiled call.
        jit_compile: `"auto"`, True or False: XLA compilation, as `keras.Model.compile`
            (`"auto"`: XLA wherever the model supports it, except TensorFlow on a CPU).
        strategy: a `tf.distribute` strategy or None; the model must have been built
            in `strategy_scope(strategy)` too.
        run_dir: path or None. Where `metrics.json`, `checkpoints/` and `logs/` go.
        checkpoint: `"auto"` (a `Checkpoint` in `run_dir/checkpoints` when there is a
            run_dir, in memory otherwise), a `Checkpoint` to share across calls, or
            None for none.
        resume: bool. Continue from the checkpoint's last finished epoch.
        tensorboard: bool or a `TensorBoardLogger`. Log to `run_dir/logs`.
        tensorboard_images: callable `(epoch) -> {tag: uint8 image}` or None.
        best: bool. Track the best epoch by `monitor`. Defaults to `True`.
        monitor: `"auto"` (the task's, `val_` when there is validation data) or a log key.
        early_stopping: int or None. Stop after this many epochs without improvement.
        restore_best: bool. When training ends, load the best epoch's weights into the
            model (the last epoch's stay in the checkpoint). Defaults to `True`.
        saved_model: keras.Model or None. The model the checkpoint saves and restores,
            when `model` is only part of it (a head trained on cached features).
        history: list or None. Records to append to (shared across calls of one run).
        tags: dict or None. Keys added to every history record (e.g. `{"phase": 1}`).
        metrics_extra: callable returning more keys for metrics.json, or None.
        total_epochs: int or None. The run's epoch count for the progress header, when
            this call is one phase of it. Defaults to `epochs`.
        write_metrics: bool. Write `run_dir/metrics.json` when training ends. A task
            that fits in several phases passes False and writes it once at the end.
        callbacks: more Keras callbacks.
        verbose: `"auto"`, 0, 1 or 2: Keras' progress output; `"auto"` is the bar on a
            terminal and one line per epoch otherwise.

    Returns:
        `FitResult`.
    """
    defaults = defaults or Defaults()
    verbose = progress_verbosity(verbose)
    run_dir = Path(run_dir) if run_dir else None
    history = history if history is not None else []
    if monitor == "auto":
        monitor, mode = (defaults.monitor, defaults.mode) if val is not None else (defaults.train_monitor, defaults.train_mode)
    else:
        mode = "max" if monitor and ("acc" in monitor or "auc" in monitor) else "min"
    if not best:
        monitor = None

    if checkpoint == "auto":
        directory = run_dir / CHECKPOINT_DIR if run_dir else None
        checkpoint = Checkpoint(directory, monitor=monitor, mode=mode, model=saved_model, history=history,
                                resume=resume)
        if val is not None and monitor == defaults.monitor:
            checkpoint.tie_monitor = defaults.tie_monitor
    elif checkpoint is not None:
        checkpoint.saved_model = saved_model if saved_model is not None else checkpoint.saved_model
    initial_epoch = checkpoint.epochs_done if checkpoint is not None else 0
    if strategy is not None:  # every worker asks, or one would wait for the others
        from zoo.distribute import check_same_epoch

        check_same_epoch(strategy, initial_epoch)

    metrics_file = run_dir / METRICS_FILE if run_dir and write_metrics else None
    own = [HistoryWriter(history, metrics_file, tags=tags, extra=metrics_extra)]
    if checkpoint is not None:
        own.append(checkpoint)
    if tensorboard and run_dir is not None:
        own.append(tensorboard if isinstance(tensorboard, TensorBoardLogger)
                   else TensorBoardLogger(run_dir / LOG_DIR, images=tensorboard_images))
    if verbose:
        own.append(RunProgress(total_epochs or epochs))
    stopper = None
    if early_stopping:
        stopper = keras.callbacks.EarlyStopping(monitor=monitor or "loss", mode=mode, patience=int(early_stopping))
        own.append(stopper)

    result = FitResult(history=history, checkpoint=checkpoint, monitor=monitor)
    with strategy_scope(strategy):
        if compile:
            steps_per_execution = resolve_steps_per_execution(
                steps_per_execution, steps_per_epoch or data_forms.known_num_batches(train, batch_size))
            compile_model(model, defaults, loss, metrics, optimizer, learning_rate, compile_args,
                          steps_per_execution, jit_compile)
        if initial_epoch < epochs:
            model.fit(
                **data_forms.keras_fit_args(train, batch_size, shuffle), validation_data=data_forms.validation(val),
                epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                callbacks=[*own, *callbacks], verbose=verbose,
            )
        elif checkpoint is not None and checkpoint.state:
            # Nothing left to train in this call: the checkpoint still holds its state.
            checkpoint.restore(saved_model if saved_model is not None else model, which="last")
    if stopper is not None:
        result.stopped_early = bool(stopper.stopped_epoch)
    if checkpoint is not None and checkpoint.state:
        result.best_epoch = checkpoint.best_epoch
        result.best_value = checkpoint.state.get("best_value")
        last = checkpoint.epochs_done
        if restore_best and result.best_epoch is not None and result.best_epoch != last:
            checkpoint.restore_best(saved_model if saved_model is not None else model)
            result.restored_best = True
    return result
