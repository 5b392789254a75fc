"""Two-phase fine-tuning (fastai's `fine_tune`), on Keras 3 and any backend.

Phase 1 trains the new head with the base frozen (BatchNorm in inference mode). When the
training data is not augmented, the frozen base gives the same features every epoch, so
they are computed once and the head trains on them: the same model, far less compute.
Phase 2 unfreezes the base (BatchNorm stays in inference mode unless `train_bn=True`)
and trains everything with discriminative learning rates — earlier layers lower —
under a one-cycle schedule.

A checkpoint (weights, optimizer state, history) is written atomically after every
epoch; `resume=True` continues from it without redoing finished epochs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from zoo.transfer.freeze import base_layers, freeze, head_layers, unfreeze

STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"


# ------------------------------------------------------------------------------ data
def _is_arrays(data):
    return isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape")


def _steps(data, batch_size):
    if _is_arrays(data):
        return int(np.ceil(len(data[0]) / batch_size))
    cardinality = getattr(data, "cardinality", None)
    if cardinality is not None:
        count = int(cardinality())
        if count > 0:
            return count
    return sum(1 for _ in data)


def _batches(data, batch_size):
    if _is_arrays(data):
        x, y = data
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
    else:
        for batch in data:
            yield batch[0], batch[1]


def _fit_args(data, batch_size):
    if _is_arrays(data):
        return {"x": data[0], "y": data[1], "batch_size": batch_size}
    return {"x": data, "shuffle": False}  # a dataset shuffles itself


def augmented(data):
    """Whether `data` may be augmented: True unless it says otherwise (or is arrays)."""
    if data is None or _is_arrays(data):
        return False
    return bool(getattr(data, "augmented", True))


# -------------------------------------------------------------------- cached features
def head_split(model):
    """`(cache_tensor, trained_head_layers)`: where features can be cached, and the
    head layers that still train. Weightless head layers right after the base
    (global pooling) are folded into the cached features."""
    head = head_layers(model)
    if not head:
        raise ValueError(f"{model.name} has no `head_*` layers: use zoo.transfer.replace_head first.")
    start = 0
    while start < len(head) and not head[start].weights and "Dropout" not in type(head[start]).__name__:
        start += 1
    cache_tensor = head[start].input if start < len(head) else head[-1].output
    return cache_tensor, head[start:]


def feature_extractor(model):
    import keras

    cache_tensor, _ = head_split(model)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, cache_tensor, name=f"{model.name}_features")


def head_model(model):
    """A model from cached features to the output, sharing the head's layers."""
    import keras

    cache_tensor, trained = head_split(model)
    inputs = keras.Input(shape=tuple(cache_tensor.shape[1:]), name="features")
    x = inputs
    for layer in trained:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def compute_features(extractor, data, batch_size=32):
    """Run the frozen base once over `data`; returns `(features, labels)` arrays."""
    features, labels = [], []
    for x, y in _batches(data, batch_size):
        features.append(np.asarray(extractor.predict_on_batch(np.asarray(x))))
        labels.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(labels)


# ------------------------------------------------------------------------- checkpoints
class _Checkpoint:
    """Per-epoch state in `directory`: weights, optimizer variables, history."""

    def __init__(self, directory):
        self.directory = Path(directory) if directory else None

    def load(self):
        if not self.directory or not (self.directory / STATE_FILE).is_file():
            return None
        return json.loads((self.directory / STATE_FILE).read_text())

    def save(self, model, optimizer, state):
        if not self.directory:
            return
        from zoo.runs import atomic_write_json

        self.directory.mkdir(parents=True, exist_ok=True)
        weights = self.directory / WEIGHTS_FILE
        tmp_weights = self.directory / f".tmp.{os.getpid()}.{WEIGHTS_FILE}"
        model.save_weights(tmp_weights)
        os.replace(tmp_weights, weights)
        tmp_opt = self.directory / f".tmp.{os.getpid()}.{OPTIMIZER_FILE}"
        with open(tmp_opt, "wb") as f:
            np.savez(f, *[np.asarray(v) for v in optimizer.variables])
        os.replace(tmp_opt, self.directory / OPTIMIZER_FILE)
        # The state file is written last: it names an epoch only once its files exist.
        atomic_write_json(self.directory / STATE_FILE, state)

    def restore_weights(self, model):
        model.load_weights(self.directory / WEIGHTS_FILE)

    def restore_optimizer(self, optimizer, variables):
        path = self.directory / OPTIMIZER_FILE
        if not path.is_file():
            return
        with np.load(path, allow_pickle=False) as saved:
            values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        optimizer.build(variables)
        if len(values) == len(optimizer.variables):
            for variable, value in zip(optimizer.variables, values):
                if tuple(variable.shape) == value.shape:
                    variable.assign(value)


def _epoch_callback(full_model, phase, checkpoint, history, started):
    import keras

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            optimizer = self.model.optimizer
            lr = optimizer.learning_rate
            record = {
                "epoch": epoch + 1,
                "phase": phase,
                **{k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0},
                "lr": float(np.asarray(lr)),
                "seconds": round(time.time() - self.t0, 3),
            }
            history.append(record)
            checkpoint.save(full_model, optimizer, {
                "epochs_done": epoch + 1, "phase": phase, "history": history, "started": started,
            })

    return EpochEnd()


# --------------------------------------------------------------------------- fine_tune
def _compile(model, optimizer):
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def fine_tune(
    model,
    train,
    val=None,
    epochs=1,
    freeze_epochs=1,
    base_lr=1e-3,
    lr_mult=100.0,
    batch_size=32,
    cache_features="auto",
    train_bn=False,
    checkpoint_dir=None,
    resume=False,
    callbacks=(),
    verbose=1,
):
    """Fine-tune `model` (a base with a `replace_head` head) in two phases.

    Args:
        model: keras.Model with `head_*` layers (see `zoo.transfer.replace_head`).
        train: a dataset of `(images, labels)` batches (tf.data or any iterable), or a
            tuple of arrays `(x, y)`. Labels are class ids.
        val: validation data, same forms, or None.
        epochs: int. Epochs with the base unfrozen (phase 2).
        freeze_epochs: int. Epochs training the head only (phase 1). Defaults to `1`.
        base_lr: float. Peak learning rate of the head; phase 2 uses `base_lr / 2` at the
            head and `base_lr / 2 / lr_mult` at the first layer. Defaults to `1e-3`.
        lr_mult: float. Ratio between the head's and the first layer's learning rate in
            phase 2. Defaults to `100`.
        batch_size: int. Batch size when `train` is arrays (and for cached features).
        cache_features: `"auto"`, True or False. Train phase 1 on features computed
            once. `"auto"` does so when `train` is not augmented (a dataset says so with
            an `augmented = False` attribute; arrays are never augmented).
        train_bn: bool. Let BatchNorm layers train in phase 2. Defaults to `False`.
        checkpoint_dir: path or None. Where per-epoch checkpoints go.
        resume: bool. Continue from `checkpoint_dir` if it holds a checkpoint.
        callbacks: extra Keras callbacks for both phases.
        verbose: int. Keras progress (0, 1 or 2).

    Returns:
        dict with `history` (one record per epoch: epoch, phase, loss, accuracy,
        val_loss, val_accuracy, lr, seconds), `cached_features` and `seconds` per phase.
    """
    import keras

    if freeze_epochs < 0 or epochs < 0:
        raise ValueError(f"Epoch counts must be >= 0. Received: epochs={epochs}, freeze_epochs={freeze_epochs}")
    checkpoint = _Checkpoint(checkpoint_dir)
    state = checkpoint.load() if resume else None
    done = state["epochs_done"] if state else 0
    history = state["history"] if state else []
    started = state.get("started", time.time()) if state else time.time()
    if state:
        checkpoint.restore_weights(model)
    total = freeze_epochs + epochs
    use_cache = (not augmented(train)) if cache_features == "auto" else bool(cache_features)
    seconds = {}

    # Phase 1: the head alone, base frozen.
    if done < freeze_epochs:
        t0 = time.time()
        freeze(model)
        if use_cache:
            extractor = feature_extractor(model)
            train_data = compute_features(extractor, train, batch_size)
            val_data = compute_features(extractor, val, batch_size) if val is not None else None
            trainer = head_model(model)
            fit_args = _fit_args(train_data, batch_size)
            fit_args["shuffle"] = True
        else:
            trainer, train_data, val_data = model, train, val
            fit_args = _fit_args(train, batch_size)
        steps = _steps(train_data, batch_size) * freeze_epochs
        optimizer = keras.optimizers.Adam(learning_rate=_one_cycle(base_lr, steps, pct_start=0.99))
        _compile(trainer, optimizer)
        if state and state.get("phase") == 1:
            checkpoint.restore_optimizer(optimizer, trainer.trainable_variables)
        trainer.fit(
            **fit_args, validation_data=_validation(val_data), epochs=freeze_epochs, initial_epoch=done,
            callbacks=[_epoch_callback(model, 1, checkpoint, history, started), *callbacks], verbose=verbose,
        )
        done = freeze_epochs
        seconds["phase1"] = round(time.time() - t0, 3)

    # Phase 2: everything, earlier layers slower.
    if done < total:
        t0 = time.time()
        from zoo.transfer.optimizers import DiscriminativeAdam, layerwise_multipliers

        unfreeze(model, train_bn=train_bn)
        peak = base_lr / 2
        steps = _steps(train, batch_size) * epochs
        optimizer = DiscriminativeAdam(
            learning_rate=_one_cycle(peak, steps), lr_multipliers=layerwise_multipliers(model, lr_mult)
        )
        _compile(model, optimizer)
        if state and state.get("phase") == 2:
            checkpoint.restore_optimizer(optimizer, model.trainable_variables)
        model.fit(
            **_fit_args(train, batch_size), validation_data=_validation(val), epochs=total, initial_epoch=done,
            callbacks=[_epoch_callback(model, 2, checkpoint, history, started), *callbacks], verbose=verbose,
        )
        seconds["phase2"] = round(time.time() - t0, 3)
    # Leave the model ready for inference and saving (compiled, base as trained).
    return {"history": history, "cached_features": use_cache, "seconds": seconds}


def _validation(data):
    if data is None:
        return None
    return data if not _is_arrays(data) else (data[0], data[1])


def _one_cycle(max_lr, steps, pct_start=0.25):
    from zoo.transfer.schedules import OneCycle

    return OneCycle(max_lr, steps, pct_start=pct_start)


def fit_one_cycle(model, train, val=None, epochs=1, lr=1e-3, batch_size=32, verbose=1, callbacks=()):
    """Train all trainable layers with a one-cycle schedule (used for from-scratch baselines)."""
    import keras

    steps = _steps(train, batch_size) * epochs
    _compile(model, keras.optimizers.Adam(learning_rate=_one_cycle(lr, steps)))
    return model.fit(**_fit_args(train, batch_size), validation_data=_validation(val), epochs=epochs,
                     verbose=verbose, callbacks=list(callbacks))


def layer_change(before, model):
    """Relative change `|w - w0| / |w0|` per base layer with weights, in graph order."""
    changes = []
    for layer in base_layers(model):
        if not layer.weights or layer.name not in before:
            continue
        old = before[layer.name]
        new = [np.asarray(w) for w in layer.weights]
        num = np.sqrt(sum(float(np.sum((n - o) ** 2)) for n, o in zip(new, old)))
        den = np.sqrt(sum(float(np.sum(o ** 2)) for o in old)) or 1.0
        changes.append((layer.name, num / den))
    return changes


def snapshot(model):
    """Copies of every layer's weights, `{layer name: [arrays]}`."""
    return {layer.name: [np.array(w) for w in layer.weights] for layer in model.layers if layer.weights}
