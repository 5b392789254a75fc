"""Two-phase fine-tuning (fastai's `fine_tune`): the transfer policy over `zoo.training.fit`.

Phase 1 trains the new head with the base frozen (BatchNorm in inference mode). When the
training data is not augmented, the frozen base gives the same features every epoch, so
they are computed once and the head trains on them: the same model, far less compute.
Phase 2 unfreezes the base (BatchNorm stays in inference mode unless `train_bn=True`)
and trains everything with discriminative learning rates — earlier layers lower —
under a one-cycle schedule. BatchNorm layers that train get their statistics
recomputed from the training data after every epoch (`zoo.training.batch_norm`),
so that a run of few steps (a small folder, from scratch) does not end with moving
averages still where they started.

Both phases are `zoo.training.fit` calls sharing one `Checkpoint`: the run is
checkpointed every epoch (only what changes: the frozen base once), resumes from its
last finished epoch, and ends holding its best epoch by validation accuracy.
"""

from __future__ import annotations

import time

import numpy as np

from zoo.training import Defaults, DiscriminativeAdam, OneCycle, Settings, Tracking, fit
from zoo.training.batch_norm import FEW_STEPS, RecalibrateBatchNorm, recalibrate_batch_norm, trained_batch_norm_layers
from zoo.training.ema import WeightAverage
from zoo.training.data import augmented, compute_features, is_arrays, num_batches
from zoo.transfer.features import feature_extractor, head_model
from zoo.transfer.freeze import base_layers, freeze, layerwise_multipliers, unfreeze

# The frozen phase trains a linear head on fixed features: warm up for a quarter of
# it and anneal (fastai's fit_one_cycle default). fastai's fine_tune warms up for 99 %
# of a one-epoch frozen phase, which at 5 epochs left the head at chance here.
HEAD_PCT_START = 0.25


def fine_tune(model, train, val=None, epochs=1, freeze_epochs=1, base_lr=1e-3, lr_mult=100.0, batch_size=32,
              cache_features="auto", train_bn=False, recalibrate_bn=True, label_smoothing=0.0, class_weight=None,
              soft_labels=False, ema=None, defaults=None, settings=None, tracking=None, callbacks=(),
              verbose="auto"):
    """Fine-tune `model` (a base with a `replace_head` head) in two phases.

    The policy only — which layers train in each phase, at which rates; each phase is
    one `zoo.training.fit` call, and both share the run's checkpoint and history.

    Args:
        model: keras.Model with `head_*` layers (see `zoo.transfer.replace_head`).
        train: a dataset of `(images, labels)` batches (tf.data or any iterable), or a
            tuple of arrays `(x, y)`. Labels are class ids.
        val: validation data, same forms, or None.
        epochs: int. Epochs with the base unfrozen (phase 2), after the frozen phase.
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
        recalibrate_bn: bool. When BatchNorm layers train, recompute their statistics
            from the training data after every epoch, before validation (precise
            BatchNorm, `zoo.training.batch_norm`). Defaults to `True`.
        label_smoothing: float in [0, 1). Train towards `(1 - ε)` on the true class
            and `ε / K` on every class (`zoo.training.losses`). Defaults to `0`.
        class_weight: dict or None. `{class id: weight}` for the loss of each example
            (`zoo.training.balanced_class_weight`). Defaults to `None`.
        soft_labels: bool. `train` carries label distributions (`zoo.data.mix_batches`);
            `val` keeps class ids. Defaults to `False`.
        ema: float or None. Keep an exponential moving average of the weights with
            this decay while the whole model trains (phase 2; `zoo.training.ema`); the
            result's `weight_average` holds it (`keep_better_average` chooses).
        defaults: `zoo.training.Defaults` or None: what the model trains for (loss,
            metrics, the best epoch's monitor); the learning rates and optimizers of
            both phases are set here. Defaults to a classifier's
            (`Defaults.classifier`); a segmenter passes `Defaults.segmenter`.
        settings: `zoo.training.Settings` or None (precision, strategy, steps per call).
        tracking: `zoo.training.Tracking` or None: the run directory, resume, best
            epoch (by validation accuracy, ties by lower validation loss), TensorBoard,
            early stopping (per phase). The run ends holding the best epoch's weights.
        callbacks: extra Keras callbacks for both phases.
        verbose: `"auto"`, 0, 1 or 2. Keras progress.

    Returns:
        `zoo.training.FitResult` of the whole run (both phases' history, tagged with
        `phase`); its `info` has `cached_features` and `phase_seconds`.
    """
    if freeze_epochs < 0 or epochs < 0:
        raise ValueError(f"Epoch counts must be >= 0. Received: epochs={epochs}, freeze_epochs={freeze_epochs}")
    if defaults is None:
        defaults = Defaults.classifier(base_lr, label_smoothing, soft_labels).replace(class_weight=class_weight)
    settings = settings or Settings()
    total = freeze_epochs + epochs
    tracking = (tracking or Tracking()).replace(saved_model=model).shared(defaults, val is not None)
    # Each phase writes into the run's shared checkpoint and history; the last one to
    # train ends the run (the best epoch of both phases back in the model), and the
    # task writes metrics.json once.
    phase = tracking.replace(write_metrics=False, restore_best=False, total_epochs=total)
    last = phase.replace(restore_best=tracking.restore_best)
    checkpoint = tracking.checkpoint
    done = checkpoint.epochs_done if checkpoint is not None else 0
    if done:
        checkpoint.restore(model)  # the frozen base as saved, before features are computed from it
    use_cache = (not augmented(train)) if cache_features == "auto" else bool(cache_features)
    seconds, results = {}, []
    average = None

    # Phase 1: the head alone, base frozen.
    if done < freeze_epochs:
        t0 = time.time()
        if checkpoint is not None:
            checkpoint.segment = "phase1"
        freeze(model)
        if use_cache:
            extractor = feature_extractor(model)
            train_data = compute_features(extractor, train, batch_size)
            val_data = compute_features(extractor, val, batch_size) if val is not None else None
            with settings.scope():  # its layers' state lives under the strategy
                trainer = head_model(model)
        else:
            trainer, train_data, val_data = model, train, val
        steps = num_batches(train_data, batch_size) * freeze_epochs
        if verbose:
            print(f"phase 1: the new head on the frozen base{' (cached features)' if use_cache else ''}, "
                  f"{_count(freeze_epochs)}", flush=True)
        results.append(fit(
            trainer, train_data, val_data, epochs=freeze_epochs, batch_size=batch_size, settings=settings,
            defaults=defaults.replace(learning_rate=OneCycle(base_lr, steps, pct_start=HEAD_PCT_START)),
            tracking=(phase if epochs else last).replace(tags={"phase": 1}), callbacks=callbacks, verbose=verbose))
        done = checkpoint.epochs_done if checkpoint is not None else freeze_epochs
        seconds["phase1"] = round(time.time() - t0, 3)

    # Phase 2: everything, earlier layers slower (and, for a run resumed after its last
    # epoch, the call that restores how it ended).
    if epochs and (done < total or not results):
        t0 = time.time()
        if checkpoint is not None:
            checkpoint.segment = "phase2"
        unfreeze(model, train_bn=train_bn)
        steps = num_batches(train, batch_size) * epochs
        if verbose:
            print(f"phase 2: all layers, earlier ones at lower rates, {_count(epochs)}", flush=True)
        with settings.scope():  # an optimizer's variables are made when it is
            optimizer = DiscriminativeAdam(learning_rate=OneCycle(base_lr / 2, steps),
                                           lr_multipliers=layerwise_multipliers(model, lr_mult))
        phase_callbacks = list(callbacks)
        if ema:
            average = WeightAverage(ema)
            phase_callbacks.append(average)
        if trained_batch_norm_layers(model):
            warn_few_batch_norm_steps(steps, recalibrate_bn)
            if recalibrate_bn:
                phase_callbacks.insert(0, RecalibrateBatchNorm(train, batch_size))
        results.append(fit(
            model, train, val, epochs=total, batch_size=batch_size, settings=settings,
            defaults=defaults.replace(optimizer=optimizer), tracking=last.replace(tags={"phase": 2}),
            callbacks=phase_callbacks, verbose=verbose))
        seconds["phase2"] = round(time.time() - t0, 3)
    if not results:  # resumed after the last epoch of a head-only run: fit restores how it ended
        results.append(fit(model, train, val, epochs=total, batch_size=batch_size, settings=settings,
                           defaults=defaults, tracking=last, verbose=0))

    result = results[-1]
    result.weight_average = average
    result.stopped_early = any(r.stopped_early for r in results)
    result.info.update(cached_features=use_cache, phase_seconds=seconds)
    return result


def keep_better_average(model, average, accuracy, train=None, batch_size=32, recalibrate_bn=True):
    """Keep whichever of `model`'s weights and their moving `average` scores the higher
    `accuracy(model)` (validation accuracy; a tie keeps the model's own). The averaged
    weights get their BatchNorm statistics recomputed first where BatchNorm trained.
    Returns `{"decay", "val_accuracy", "model_val_accuracy", "kept"}`; `model` ends
    holding the weights kept."""
    own = accuracy(model)
    before = average.swap_in(model)
    if recalibrate_bn and train is not None and trained_batch_norm_layers(model):
        recalibrate_batch_norm(model, train, batch_size)
    averaged = accuracy(model)
    kept = averaged > own
    if not kept:
        model.set_weights(before)
    return {"decay": average.decay, "val_accuracy": averaged, "model_val_accuracy": own, "kept": bool(kept)}


def warn_few_batch_norm_steps(steps, recalibrating):
    """One line on stderr when BatchNorm trains for fewer than `FEW_STEPS` steps: its
    moving averages (momentum 0.99) would barely leave where they started."""
    if steps >= FEW_STEPS:
        return
    import sys

    then = ("so zoo recomputes them from the training data after every epoch" if recalibrating else
            "and --no-bn-recalibration leaves them so: expect the kept model to answer badly at inference")
    print(f"zoo: warning: BatchNorm layers train for only {steps} steps, too few for their moving averages to "
          f"settle, {then}", file=sys.stderr, flush=True)


def _count(epochs):
    return f"{epochs} epoch{'s' if epochs != 1 else ''}"


def fit_one_cycle(model, train, val=None, epochs=1, lr=1e-3, batch_size=32, verbose=1, callbacks=()):
    """Train all trainable layers with a one-cycle schedule (used for from-scratch baselines)."""
    steps = num_batches(train, batch_size) * epochs
    return fit(model, train, val, epochs=epochs, batch_size=batch_size,
               defaults=Defaults.classifier(OneCycle(lr, steps)), tracking=Tracking.off(), callbacks=callbacks,
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
