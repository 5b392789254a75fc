"""Two-phase fine-tuning (fastai's `fine_tune`): the transfer policy over `zoo.training.fit`.

Phase 1 trains the new head with the base frozen (BatchNorm in inference mode). When the
training data is not augmented, the frozen base gives the same features every epoch, so
they are computed once and the head trains on them: the same model, far less compute.
Phase 2 unfreezes the base (BatchNorm stays in inference mode unless `train_bn=True`)
and trains everything with discriminative learning rates — earlier layers lower —
under a one-cycle schedule.

Both phases are `zoo.training.fit` calls sharing one `Checkpoint`: the run is
checkpointed every epoch (only what changes: the frozen base once), resumes from its
last finished epoch, and ends holding its best epoch by validation accuracy.
"""

from __future__ import annotations

import time

import numpy as np

from zoo.training import Checkpoint, Defaults, DiscriminativeAdam, OneCycle, fit, strategy_scope
from zoo.training.data import augmented, is_arrays, num_batches
from zoo.transfer.features import compute_features, feature_extractor, head_model
from zoo.transfer.freeze import base_layers, freeze, layerwise_multipliers, unfreeze

# The frozen phase trains a linear head on fixed features: warm up for a quarter of
# it and anneal (fastai's fit_one_cycle default). fastai's fine_tune warms up for 99 %
# of a one-epoch frozen phase, which at 5 epochs left the head at chance here.
HEAD_PCT_START = 0.25


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
    run_dir=None,
    tensorboard=True,
    tensorboard_images=None,
    best=True,
    early_stopping=None,
    steps_per_execution="auto",
    strategy=None,
    callbacks=(),
    verbose="auto",
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
        checkpoint_dir: path or None. Where per-epoch checkpoints go (default:
            `run_dir/checkpoints`, or memory without a run_dir).
        resume: bool. Continue from the checkpoint if it holds one.
        run_dir: path or None. TensorBoard logs go to `run_dir/logs`.
        tensorboard: bool. Write TensorBoard logs (with a run_dir). Defaults to `True`.
        tensorboard_images: callable `(epoch) -> {tag: uint8 image}` or None.
        best: bool. End with the best epoch's weights by validation accuracy (ties:
            lower validation loss); the last epoch's stay in the checkpoint.
        early_stopping: int or None. Patience in epochs, per phase.
        steps_per_execution: int. Batches per compiled call.
        strategy: a tf.distribute strategy or None (see `zoo.training.fit`).
        callbacks: extra Keras callbacks for both phases.
        verbose: `"auto"`, 0, 1 or 2. Keras progress (`"auto"`: a bar on a terminal, a line per
            epoch otherwise).

    Returns:
        dict with `history` (one record per epoch: epoch, phase, loss, accuracy,
        val_loss, val_accuracy, lr, seconds), `cached_features`, `seconds` per phase,
        `best_epoch`, `best_value`, `monitor`, `restored_best` and the `checkpoint`.
    """
    if freeze_epochs < 0 or epochs < 0:
        raise ValueError(f"Epoch counts must be >= 0. Received: epochs={epochs}, freeze_epochs={freeze_epochs}")
    defaults = Defaults.classifier(base_lr)
    monitor, mode = (defaults.monitor, defaults.mode) if val is not None else (defaults.train_monitor, defaults.train_mode)
    if checkpoint_dir is None and run_dir is not None:
        from pathlib import Path

        from zoo.training import CHECKPOINT_DIR

        checkpoint_dir = Path(run_dir) / CHECKPOINT_DIR
    history = []
    checkpoint = Checkpoint(checkpoint_dir, monitor=monitor if best else None, mode=mode, model=model,
                            history=history, resume=resume)
    if val is not None:
        checkpoint.tie_monitor = defaults.tie_monitor
    done = checkpoint.epochs_done
    if done:
        checkpoint.restore(model)  # the frozen base as saved, before features are computed from it
    total = freeze_epochs + epochs
    use_cache = (not augmented(train)) if cache_features == "auto" else bool(cache_features)
    common = dict(defaults=defaults, checkpoint=checkpoint, run_dir=run_dir, write_metrics=False,
                  tensorboard=tensorboard, tensorboard_images=tensorboard_images, best=best,
                  early_stopping=early_stopping, steps_per_execution=steps_per_execution, strategy=strategy,
                  saved_model=model, history=history, callbacks=callbacks, verbose=verbose, restore_best=False,
                  total_epochs=freeze_epochs + epochs)
    seconds = {}

    # Phase 1: the head alone, base frozen.
    if done < freeze_epochs:
        t0 = time.time()
        checkpoint.segment = "phase1"
        freeze(model)
        if use_cache:
            extractor = feature_extractor(model)
            train_data = compute_features(extractor, train, batch_size)
            val_data = compute_features(extractor, val, batch_size) if val is not None else None
            with strategy_scope(strategy):  # its layers' state lives under the strategy
                trainer = head_model(model)
        else:
            trainer, train_data, val_data = model, train, val
        steps = num_batches(train_data, batch_size) * freeze_epochs
        if verbose:
            print(f"phase 1: the new head on the frozen base{' (cached features)' if use_cache else ''}, "
                  f"{_count(freeze_epochs)}", flush=True)
        fit(trainer, train_data, val_data, epochs=freeze_epochs, batch_size=batch_size, shuffle=True,
            learning_rate=OneCycle(base_lr, steps, pct_start=HEAD_PCT_START), tags={"phase": 1}, **common)
        done = checkpoint.epochs_done
        seconds["phase1"] = round(time.time() - t0, 3)

    # Phase 2: everything, earlier layers slower.
    if done < total:
        t0 = time.time()
        checkpoint.segment = "phase2"
        unfreeze(model, train_bn=train_bn)
        steps = num_batches(train, batch_size) * epochs
        if verbose:
            print(f"phase 2: all layers, earlier ones at lower rates, {_count(epochs)}", flush=True)
        with strategy_scope(strategy):  # an optimizer's variables are made when it is
            optimizer = DiscriminativeAdam(learning_rate=OneCycle(base_lr / 2, steps),
                                           lr_multipliers=layerwise_multipliers(model, lr_mult))
        fit(model, train, val, epochs=total, batch_size=batch_size, optimizer=optimizer, tags={"phase": 2},
            **common)
        seconds["phase2"] = round(time.time() - t0, 3)

    restored = False
    if best and checkpoint.best_epoch is not None and checkpoint.best_epoch != checkpoint.epochs_done:
        checkpoint.restore_best(model)
        restored = True
    state = checkpoint.state or {}
    return {"history": history, "cached_features": use_cache, "seconds": seconds,
            "best_epoch": state.get("best_epoch"), "best_value": state.get("best_value"), "monitor": monitor,
            "restored_best": restored, "last_epoch": checkpoint.epochs_done, "checkpoint": checkpoint}


def _count(epochs):
    return f"{epochs} epoch{'s' if epochs != 1 else ''}"


def fit_one_cycle(model, train, val=None, epochs=1, lr=1e-3, batch_size=32, verbose=1, callbacks=()):
    """Train all trainable layers with a one-cycle schedule (used for from-scratch baselines)."""
    steps = num_batches(train, batch_size) * epochs
    return fit(model, train, val, epochs=epochs, batch_size=batch_size, defaults=Defaults.classifier(lr),
               learning_rate=OneCycle(lr, steps), checkpoint=None, best=False, callbacks=callbacks,
               verbose=verbose)


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


__all__ = ["fine_tune", "fit_one_cycle", "layer_change", "snapshot", "is_arrays"]
