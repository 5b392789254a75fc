"""`zoo finetune` and `zoo lr-find` as functions: a folder of images in, a run directory out.

    run = zoo.finetune.finetune("photos/", model="resnet50", epochs=3, out="runs/birds")
    run.predict(["new.jpg"])

The path: `zoo.data.image_folder` (files checked, split, tf.data) → `zoo.create` (base
with pretrained weights, no top) → `zoo.transfer.replace_head` → `zoo.transfer.fine_tune`
(frozen head phase on cached features, then everything) → `zoo.runs.save_run` with
metrics and plots.
"""

from __future__ import annotations

import heapq
import json
import sys
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.runs import CLASSES_FILE, RUN_FILE, atomic_write_json, atomic_write_text, load_run, save_run

DEFAULT_LR = 1e-3
CHECKPOINTS = "checkpoints"


def _image_size(spec, image_size):
    if image_size is None:
        return tuple(spec.input_size)
    if isinstance(image_size, int):
        return (image_size, image_size)
    return tuple(image_size)


def _prepare(data_dir, model, weights, image_size, batch_size, seed, augment, verbose, head_dropout=0.2):
    import zoo.data
    from zoo.registry import create, get_spec
    from zoo.transfer import replace_head

    spec = get_spec(model)
    if spec.task != "image-classification":
        raise ZooError(f"`model` must be an image classifier to fine-tune on images. Received: model={model!r} ({spec.task})")
    size = _image_size(spec, image_size)
    data = zoo.data.image_folder(data_dir, image_size=size, batch_size=batch_size, seed=seed,
                                 augment=augment, verbose=bool(verbose))
    if data.report.skipped and verbose:
        print(f"skipped {len(data.report.skipped)} file(s):\n{data.report}", file=sys.stderr)
    base = create(spec.name, weights=weights, include_top=False, input_shape=(*size, 3))
    net = replace_head(base, len(data.classes), dropout=head_dropout)
    return spec, size, data, net


def finetune(data_dir, model, weights="default", epochs=1, freeze_epochs=1, image_size=None,
             batch_size=32, lr=None, resume=False, out="runs/finetune", augment=False, seed=0,
             lr_mult=100.0, verbose=1):
    """Fine-tune registry model `model` on the image folder `data_dir`; write `out`.

    Args:
        data_dir: path. One sub-folder per class.
        model: str. A registry image model.
        weights: the base's weights (`"default"`, `"imagenet"`, None or a file).
        epochs: int. Epochs with the base unfrozen, after `freeze_epochs` head-only epochs.
        freeze_epochs: int. Defaults to `1`.
        image_size: int, `(H, W)` or None (the model's input size).
        batch_size: int. Defaults to `32`.
        lr: float or None. Peak head learning rate. Defaults to `1e-3`.
        resume: bool. Continue an interrupted run in `out` from its last finished epoch.
        out: path. The run directory.
        augment: bool. Flip/rotate/zoom/contrast the training images. Without it the
            frozen phase trains on cached features (much faster).
        seed: int. Split and initialisation seed.
        lr_mult: float. Head-to-first-layer learning-rate ratio in phase 2.

    Returns:
        `zoo.runs.Run` of the finished run.
    """
    import keras

    from zoo.transfer import fine_tune

    out = Path(out)
    checkpoint_dir = out / CHECKPOINTS
    resuming = resume and (checkpoint_dir / "state.json").is_file()
    if resume and not resuming and verbose:
        print(f"nothing to resume in {out}: starting a new run", file=sys.stderr)
    if resuming:
        # The run's own settings win, so a resumed run is the run that was started.
        saved = json.loads((out / RUN_FILE).read_text())
        model, image_size, batch_size = saved["model"], saved["image_size"], saved["batch_size"]
        epochs, freeze_epochs, lr = saved["epochs"], saved["freeze_epochs"], saved["lr"]
        augment, seed, lr_mult = saved["augment"], saved["seed"], saved["lr_mult"]
        weights = None  # the checkpoint holds the weights
    keras.utils.set_random_seed(seed)
    spec, size, data, net = _prepare(data_dir, model, weights, image_size, batch_size, seed, augment, verbose)
    config = {
        "model": spec.name, "data_dir": str(data_dir), "image_size": list(size), "batch_size": batch_size,
        "epochs": epochs, "freeze_epochs": freeze_epochs, "lr": lr or DEFAULT_LR, "lr_mult": lr_mult,
        "augment": bool(augment), "seed": seed,
        "weights": weights if weights is None or isinstance(weights, str) else str(weights),
        "num_train": data.report.num_train, "num_val": data.report.num_val,
    }
    if resuming:
        config = {**json.loads((out / RUN_FILE).read_text()), "resumed": True}
    else:
        from zoo import __version__

        atomic_write_json(out / RUN_FILE, {"zoo_version": __version__, **config})
        atomic_write_json(out / CLASSES_FILE, list(data.classes))
    if data.report.skipped:
        atomic_write_text(out / "skipped.txt", str(data.report) + "\n")

    result = fine_tune(
        net, data.train, data.val, epochs=epochs, freeze_epochs=freeze_epochs, base_lr=lr or DEFAULT_LR,
        lr_mult=lr_mult, batch_size=batch_size, cache_features=not augment,
        checkpoint_dir=checkpoint_dir, resume=resuming, verbose=verbose,
    )
    evaluation = evaluate(net, data.val, data.classes, out) if data.val is not None else {}
    metrics = {
        "history": result["history"],
        "cached_features": result["cached_features"],
        "seconds": result["seconds"],
        **evaluation,
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in data.report.skipped],
    }
    save_run(out, net, data.classes, config=config, metrics=metrics)
    from zoo.plots import plot_history

    plot_history(result["history"], out / "curves.png")
    if verbose:
        final = evaluation.get("val_accuracy")
        shown = f"validation accuracy {final:.4f}; " if final is not None else ""
        print(f"{shown}run written to {out}", file=sys.stderr)
    return load_run(out)


def evaluate(model, val, classes, out=None, top_losses=9):
    """Validation accuracy and loss, a confusion matrix and a top-losses grid (PNGs in `out`)."""
    from zoo.plots import confusion_matrix, plot_confusion_matrix, plot_top_losses

    labels, predictions, losses, worst = [], [], [], []
    offset = 0
    for images, batch_labels in val:
        images, batch_labels = np.asarray(images), np.asarray(batch_labels).astype("int64")
        probabilities = np.asarray(model.predict_on_batch(images))
        batch_losses = -np.log(np.clip(probabilities[np.arange(len(batch_labels)), batch_labels], 1e-12, 1.0))
        for i, loss in enumerate(batch_losses):
            item = (float(loss), offset + i, images[i], int(batch_labels[i]), probabilities[i])
            # A bounded heap: the grid needs only the worst few images, not the whole set.
            if len(worst) < top_losses:
                heapq.heappush(worst, item)
            elif loss > worst[0][0]:
                heapq.heapreplace(worst, item)
        labels.append(batch_labels)
        predictions.append(np.argmax(probabilities, axis=-1))
        losses.append(batch_losses)
        offset += len(batch_labels)
    labels, predictions, losses = np.concatenate(labels), np.concatenate(predictions), np.concatenate(losses)
    matrix = confusion_matrix(labels, predictions, len(classes))
    result = {
        "val_accuracy": float(np.mean(labels == predictions)),
        "val_loss": float(np.mean(losses)),
        "confusion_matrix": matrix.tolist(),
    }
    if out is not None:
        plot_confusion_matrix(matrix, classes, Path(out) / "confusion_matrix.png")
        worst = sorted(worst, reverse=True)
        plot_top_losses(
            [w[2] for w in worst], [w[3] for w in worst], np.stack([w[4] for w in worst]), classes,
            Path(out) / "top_losses.png", k=len(worst),
        )
    return result


def lr_find_folder(data_dir, model, weights="default", image_size=None, batch_size=32, plot="lr_find.png",
                   seed=0, num_steps=100, verbose=1):
    """`zoo lr-find`: the learning-rate sweep for a new head on `data_dir` (base frozen)."""
    import keras

    from zoo.transfer import freeze, lr_find

    keras.utils.set_random_seed(seed)
    _, _, data, net = _prepare(data_dir, model, weights, image_size, batch_size, seed, False, verbose)
    freeze(net)
    return lr_find(net, data.train, batch_size=batch_size, num_steps=num_steps, cache_features=True, plot=plot)
