"""The image classifier task: a folder of images in, a fine-tuned run directory out.

    zoo train image-classification photos/ --model resnet50 --epochs 3 --out runs/birds
    zoo finetune photos/ --model resnet50 --epochs 3 --out runs/birds     # the same
    run = zoo.train("image-classification", "photos/", model="resnet50", epochs=3, out="runs/birds")
    run.predict(["new.jpg"])

The path: `zoo.data.image_folder` (files checked, split, tf.data) → `zoo.create` (base
with pretrained weights, no top) → `zoo.transfer.replace_head` → `zoo.transfer.fine_tune`
(frozen head phase on cached features, then everything, through `zoo.training.fit`) →
the run directory (`zoo.runs`) with metrics, plots and TensorBoard logs.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo import io, runs
from zoo.errors import OptionError, ZooError
from zoo import tasks

KIND = "image-classification"
_TASK = tasks.MANIFEST[KIND]
DESCRIPTION = _TASK.description
OPTIONS = _TASK.options  # zoo.tasks.MANIFEST: the CLI reads them without importing this module
MODEL_TASK = "image-classification"
MODEL_RANKS = (4, 2)  # images in, class probabilities out
DEFAULT_LR = 1e-3

# What a run starts with when an option is not given (and a resumed run takes from run.json).
DEFAULTS = {"weights": "default", "freeze_epochs": 1, "image_size": None, "batch_size": 32, "lr": DEFAULT_LR,
            "lr_mult": 100.0, "head_dropout": 0.2, "augment": False, "seed": 0, "precision": "auto",
            "early_stopping": None, "no_bn_recalibration": False, "val_split": 0.2, "val_dir": None,
            "label_smoothing": 0.0, "class_weight": None, "mixup": 0.0, "cutmix": 0.0, "ema": None}
# A model trained from scratch (--weights none, or a model with no published weights).
SCRATCH_DEFAULTS = {"freeze_epochs": 0, "lr_mult": 1.0}
# Settings that make a run what it is: a resumed run must be given the same ones.
RUN_SETTINGS = ("data_dir", "model", "weights", "epochs", "freeze_epochs", "image_size", "batch_size", "lr",
                "lr_mult", "head_dropout", "augment", "seed", "precision", "early_stopping", "no_bn_recalibration",
                "val_split", "val_dir", "label_smoothing", "class_weight", "mixup", "cutmix",
                "ema")


@dataclass
class ClassifierRun(runs.Run):
    """A classifier's run: its model, class names, settings and metrics."""

    classes: list = field(default_factory=list)

    @property
    def image_size(self):
        return tuple(self.model.inputs[0].shape[1:3])

    def predict(self, images, top=1, tta=False):
        """Label and probability for each image (paths or arrays), like fastai's
        `learn.predict`; `tta=True` averages the flip and crops of each
        (`zoo.tasks.classify.TTA_VIEWS`), like fastai's `learn.tta`."""
        from zoo.tasks.classify import classify

        return classify(images, model=self.model, labels=self.classes, top=top, tta=tta)


def load_run(run_dir):
    run_dir = Path(run_dir)
    model, config, metrics = runs.open_run(run_dir, KIND, MODEL_RANKS)
    return ClassifierRun(path=run_dir, model=model, config=config, metrics=metrics,
                         classes=io.read_json(run_dir / runs.CLASSES_FILE, [], expect=list))


def from_scratch(model, weights):
    """Whether `model` with `weights` starts from random weights."""
    from zoo import models

    chosen = _weights(weights)
    return chosen is None or (chosen == "default" and models.get_spec(model).default_weights is None)


def _image_size(spec, image_size):
    if image_size is None:
        return tuple(spec.input_size)
    if isinstance(image_size, int):
        return (image_size, image_size)
    return tuple(image_size)


def _weights(value):
    from zoo import models

    return models.weights_choice(value)


def prepare(data_dir, model, weights, image_size, batch_size, seed, augment, verbose, settings=None,
            head_dropout=0.2, val_split=0.2, val_dir=None):
    """The data and the model with its new head: `(spec, size, data, net)`; the model is
    built under `settings` (a `zoo.training.Settings`: precision and strategy)."""
    import zoo.data
    from zoo import models
    from zoo.training import Settings
    from zoo.transfer import replace_head

    spec = models.get_spec(model)
    if spec.task != MODEL_TASK:
        raise ZooError(f"`model` must be an image classifier to fine-tune on images. "
                       f"Received: model={model!r} ({spec.task})")
    size = _image_size(spec, image_size)
    data = zoo.data.image_folder(data_dir, image_size=size, batch_size=batch_size, seed=seed,
                                 augment=augment, verbose=bool(verbose), validation_split=0 if val_dir else val_split,
                                 val_dir=val_dir)
    # image_folder has printed what it found and skipped (once); skipped.txt keeps it.
    with (settings or Settings(precision="float32")).building():
        base = models.create(spec.name, weights=_weights(weights), include_top=False, input_shape=(*size, 3))
        net = replace_head(base, len(data.classes), dropout=head_dropout)
    return spec, size, data, net


def run_defaults(given):
    """A new run's defaults for what was `given`: from scratch (`--weights none`, or a
    model with no published weights) a frozen phase would fit a head to random
    features, and lower rates for earlier layers would keep them near random — so it
    all trains alike, unless asked otherwise."""
    if given.get("model") is not None and from_scratch(given["model"], given.get("weights") or "default"):
        return {**DEFAULTS, **SCRATCH_DEFAULTS}
    return DEFAULTS


def train(data_dir=None, out="runs/classifier", resume=False, overwrite=False, verbose="auto", no_tensorboard=False,
          distribute="none", callbacks=(), **options):
    """Fine-tune registry model `model` on the image folder `data_dir`; write the run `out`.

    Args:
        data_dir: path. One sub-folder per class.
        out: path. The run directory. A finished run there is never overwritten unless
            `overwrite=True`; an unfinished one needs `resume=True` or `overwrite=True`.
        resume: bool. Continue the interrupted run in `out` from its last finished
            epoch. Settings left out are the run's; a setting given must equal the run's.
        overwrite: bool. Replace the run in `out`.
        no_tensorboard: bool. Write no TensorBoard logs.
        distribute: `"none"`, `"mirrored"` or `"multiworker"` (`zoo.training.distribute`): train
            on this machine's devices or TF_CONFIG's workers; `batch_size` is global.
        callbacks: more Keras callbacks for both phases (Python API only).
        verbose: `"auto"` (a progress bar on a terminal, one plain line per epoch when
            the output is piped or logged), 0, 1 or 2.
        **options: `model` (a registry image model), `weights` (`"default"`,
            `"imagenet"`, `"none"` or a file), `epochs` (after the frozen phase),
            `freeze_epochs` (1), `image_size` (the model's), `batch_size` (32), `lr`
            (1e-3, the head's peak rate), `lr_mult` (100), `head_dropout` (0.2), `augment` (False: the frozen
            phase trains on cached features), `seed` (0), `precision` (`"auto"`),
            `early_stopping` (None), `no_bn_recalibration` (False: BatchNorm layers that
            train get their statistics recomputed after every epoch), `val_split` (0.2
            of each class held out; 0: no validation), `val_dir` (a separate validation
            folder instead), `label_smoothing` (0), `class_weight` (None, or
            `"balanced"`: each class's examples weighted n / (K n_c), recorded in
            metrics.json), `mixup` and `cutmix` (0: off; the alpha of MixUp's and
            CutMix's Beta distribution, `zoo.data.mix_batches`), `ema` (None, or a decay
            such as 0.999: a moving average of the weights while the whole model
            trains, kept as the model when it scores better on validation).

    Returns:
        `ClassifierRun` of the finished run.
    """
    from zoo.tasks.base import finish_run, start_run
    from zoo.transfer import fine_tune

    given = {"data_dir": None if data_dir is None else str(data_dir), **options}
    if given.get("val_dir") is not None:
        if given.get("val_split") not in (None, 0):
            raise OptionError(f"--val-dir is the validation data and --val-split takes it from the training folder: "
                              f"give one. Received: val_split={given['val_split']!r}, val_dir={given['val_dir']!r}")
        given["val_dir"] = str(given["val_dir"])
    if given.get("val_split") is not None and not (isinstance(given["val_split"], (int, float))
                                                   and 0 <= given["val_split"] < 1):
        raise OptionError(f"--val-split is a fraction in [0, 1). Received: val_split={given['val_split']!r}")
    for key in ("mixup", "cutmix"):
        if given.get(key) is not None and not (isinstance(given[key], (int, float)) and 0 <= given[key] <= 10):
            raise OptionError(f"--{key} is the alpha of its Beta distribution, in [0, 10] (0.2 and 1.0 are usual). "
                              f"Received: {key}={given[key]!r}")
    if given.get("ema") is not None and not (isinstance(given["ema"], (int, float)) and 0 < given["ema"] < 1):
        raise OptionError(f"--ema is a decay in (0, 1), e.g. 0.999. Received: ema={given['ema']!r}")
    if given.get("class_weight") not in (None, "balanced"):
        raise OptionError(f"--class-weight takes 'balanced'. Received: class_weight={given['class_weight']!r}")
    if given.get("label_smoothing") is not None and not (isinstance(given["label_smoothing"], (int, float))
                                                         and 0 <= given["label_smoothing"] < 1):
        raise OptionError(f"--label-smoothing is a fraction in [0, 1). "
                          f"Received: label_smoothing={given['label_smoothing']!r}")
    if given.get("weights") is not None and not isinstance(given["weights"], str):
        given["weights"] = str(given["weights"])
    if isinstance(given.get("image_size"), int):
        given["image_size"] = [given["image_size"]] * 2  # as run.json records it
    started = start_run(KIND, out, given, defaults=run_defaults, keys=RUN_SETTINGS,
                        required=("data_dir", "model", "epochs"), resume=resume, overwrite=overwrite,
                        distribute=distribute, tensorboard=not no_tensorboard)
    config, resuming, out = started.config, started.resuming, started.out
    spec, size, data, net = prepare(config["data_dir"], config["model"], None if resuming else config["weights"],
                                    config["image_size"], config["batch_size"], config["seed"], config["augment"],
                                    verbose, settings=started.settings,
                                    head_dropout=config.get("head_dropout", DEFAULTS["head_dropout"]),
                                    val_split=config.get("val_split", DEFAULTS["val_split"]), val_dir=config.get("val_dir"))
    if config["lr"] == "auto":
        config.update(lr=sweep_head(net, data, config["batch_size"], plot=out / "lr_find.png").suggestion,
                      lr_auto=True)
        if verbose:
            print(f"lr auto: {config['lr']:.2e} (lr-find's valley; plot: {out / 'lr_find.png'})", flush=True)
    elif not isinstance(config["lr"], (int, float)) or config["lr"] <= 0:
        raise OptionError(f"`lr` must be a positive number or 'auto'. Received: lr={config['lr']!r}")
    started.write_config(KIND, model=spec.name, image_size=list(size), num_train=data.report.num_train,
                         num_val=data.report.num_val)
    if not resuming:
        io.write_json(out / runs.CLASSES_FILE, list(data.classes))
    if data.report.skipped:
        io.write_text(out / "skipped.txt", str(data.report) + "\n")

    class_weights = None
    if config.get("class_weight") == "balanced":
        from zoo.training import balanced_class_weight

        class_weights = balanced_class_weight(data.report.train_labels, len(data.classes))
    if verbose:
        frozen, tuned = config["freeze_epochs"], config["epochs"]
        print(f"{frozen + tuned} epochs: {frozen} training the new head on the frozen base (--freeze-epochs), "
              f"then {tuned} fine-tuning the whole model (--epochs)" if frozen else
              f"{tuned} epochs, the whole model (--epochs; no frozen phase)", flush=True)
    mixing = bool(config.get("mixup") or config.get("cutmix"))
    train_data = data.train
    if mixing:
        from zoo.data import mix_batches

        train_data = mix_batches(data.train, len(data.classes), mixup=config.get("mixup") or 0.0,
                                 cutmix=config.get("cutmix") or 0.0, seed=config["seed"])
    result = fine_tune(
        net, train_data, data.val, epochs=config["epochs"], freeze_epochs=config["freeze_epochs"],
        base_lr=config["lr"], lr_mult=config["lr_mult"], batch_size=config["batch_size"],
        cache_features=not (config["augment"] or mixing), soft_labels=mixing, ema=config.get("ema"),
        # From scratch, BatchNorm has no statistics worth keeping: it trains with the rest.
        train_bn=from_scratch(config["model"], config["weights"]),
        recalibrate_bn=not config.get("no_bn_recalibration", False),
        label_smoothing=config.get("label_smoothing", 0.0),
        class_weight=class_weights,
        settings=started.settings, tracking=started.tracking(), callbacks=callbacks, verbose=verbose,
    )

    def scores(model):
        averaged = {}
        if getattr(result, "weight_average", None) is not None and data.val is not None:
            averaged = {"ema": _keep_better_average(model, result.weight_average, data, train_data, out, config)}
        return {**averaged,
                **({"class_weight": {data.classes[c]: w for c, w in class_weights.items()}} if class_weights else {}),
                **(evaluation(model, data, out, tensorboard=not no_tensorboard, epoch=result.last_epoch)
                   if data.val is not None else {}),
                "skipped": [{"path": str(s.path), "reason": s.reason} for s in data.report.skipped]}

    metrics = finish_run(out, net, result, evaluate=scores, verbose=verbose)
    if verbose and metrics.get("per_class"):
        import sys

        print(f"validation images, per class:\n{format_report(metrics['per_class'])}", file=sys.stderr, flush=True)
    return load_run(out)


def _keep_better_average(model, average, data, train_data, out, config):
    """`--ema`: the moving average of the weights against the kept epoch's, on the
    validation images; `model` ends holding the better (what model.keras gets), and the
    averaged weights are written beside it (`ema.weights.h5`)."""
    from zoo.transfer.fine_tune import keep_better_average

    def accuracy(candidate):
        return evaluate(candidate, data.val, data.classes)["val_accuracy"]

    chosen = keep_better_average(model, average, accuracy, train=train_data, batch_size=config["batch_size"],
                                 recalibrate_bn=not config.get("no_bn_recalibration", False))
    kept = model.get_weights()
    average.swap_in(model)
    runs.save_weights(model, Path(out) / runs.EMA_WEIGHTS_FILE)
    model.set_weights(kept)
    return {**chosen, "weights": runs.EMA_WEIGHTS_FILE}


def show(data_dir, out="batch.png", n=16, image_size=224, augment=False, mixup=0.0, cutmix=0.0, seed=0):
    """`zoo show DATA`: `n` training images as a run with these options would see them
    (the same folder scan, split, resizing, augmentation and mixing), in a grid titled
    with their labels (fastai's `show_batch`); returns the PNG's path. `image_size`:
    int or `(height, width)`, the model's input size."""
    import zoo.data
    from zoo.plots import plot_batch

    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256:
        raise OptionError(f"`n` must be 1 to 256 images. Received: n={n!r}")
    data = zoo.data.image_folder(data_dir, image_size=image_size, batch_size=n, seed=seed, augment=augment,
                                 verbose=False)
    train = data.train
    if mixup or cutmix:
        train = zoo.data.mix_batches(train, len(data.classes), mixup=mixup, cutmix=cutmix, seed=seed)
    images, labels = next(iter(train))
    what = ", ".join(part for part, on in (("augmented", augment), (f"MixUp {mixup}", mixup),
                                           (f"CutMix {cutmix}", cutmix)) if on) or "as loaded"
    return plot_batch(np.asarray(images), np.asarray(labels), data.classes, out,
                      title=f"{data_dir}: {len(images)} training images ({what})")


def sweep_head(net, data, batch_size, plot=None, num_steps=100):
    """The learning-rate sweep for a new head (`zoo.training.lr_find`, base frozen,
    on cached features): `zoo lr-find` and `--lr auto`."""
    from zoo.training import lr_find as sweep
    from zoo.transfer import cached_features, freeze

    freeze(net)
    return sweep(net, data.train, batch_size=batch_size, num_steps=num_steps, features=cached_features(net),
                 plot=plot)


def evaluation(model, data, out, tensorboard=True, epoch=0):
    """The run's final scores on its validation images (`evaluate`), and the confusion
    matrix as a TensorBoard image beside the epoch curves."""
    result = evaluate(model, data.val, data.classes, out, files=data.report.val_files)
    if tensorboard and (Path(out) / "confusion_matrix.png").is_file():
        from zoo.plots import image_array
        from zoo.training import TensorBoardLogger

        TensorBoardLogger(Path(out) / runs.LOGS).write_images(
            epoch, {"confusion_matrix": image_array(Path(out) / "confusion_matrix.png")})
    return result


def evaluate(model, val, classes, out=None, top_losses=9, files=None):
    """Validation accuracy and loss, a confusion matrix and a top-losses grid (PNGs in
    `out`): each of the worst images with its file name (`files`: the validation files
    in `val`'s order) and Grad-CAM of the class the model predicted, as fastai's
    `plot_top_losses(heatmap=True)`."""
    from zoo.plots import confusion_matrix, plot_confusion_matrix, plot_top_losses

    from zoo.tasks.classify import forward_function

    # One compiled forward pass (not predict_on_batch, which a distribution strategy
    # would split over its replicas and hand back per replica).
    forward = forward_function(model)
    labels, predictions, losses, worst = [], [], [], []
    offset = 0
    for images, batch_labels in val:
        images, batch_labels = np.asarray(images), np.asarray(batch_labels).astype("int64")
        probabilities = forward(images)
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
    per_class = per_class_scores(matrix, classes)
    result = {
        "val_accuracy": float(np.mean(labels == predictions)),
        "val_loss": float(np.mean(losses)),
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class,
        "macro_f1": float(np.mean([scores["f1"] for scores in per_class.values()])),
    }
    if out is not None:
        plot_confusion_matrix(matrix, classes, Path(out) / "confusion_matrix.png")
        worst = sorted(worst, reverse=True)
        images = np.stack([w[2] for w in worst])
        probabilities = np.stack([w[4] for w in worst])
        names = [files[w[1]] if files is not None and w[1] < len(files) else f"#{w[1]}" for w in worst]
        heatmaps = _where_it_looked(model, images, probabilities.argmax(-1))
        plot_top_losses(images, [w[3] for w in worst], probabilities, classes, Path(out) / "top_losses.png",
                        k=len(worst), heatmaps=heatmaps, names=names)
        result["top_losses"] = []
        for i, (loss, _, _, actual, scores) in enumerate(worst):
            item = {"image": str(names[i]), "actual": classes[actual], "predicted": classes[int(np.argmax(scores))],
                    "loss": loss}
            if heatmaps is not None:
                y, x = np.unravel_index(int(np.argmax(heatmaps[i])), heatmaps[i].shape)
                item["peak"] = {"x": int(x), "y": int(y)}  # in the model's input pixels
            result["top_losses"].append(item)
    return result


def per_class_scores(matrix, classes):
    """Precision, recall, F1 and support of each class from a confusion matrix (rows:
    the true class, columns: the predicted one), as scikit-learn's
    `classification_report` gives them (0 where a ratio has nothing to divide by)."""
    matrix = np.asarray(matrix, dtype="float64")
    hits, predicted, actual = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(actual[i])} for i, name in enumerate(classes)}


def format_report(per_class):
    """The per-class scores as the table a run prints at its end."""
    width = max(12, *(len(name) for name in per_class))
    lines = [f"{'class':<{width}}  precision  recall     f1  images"]
    for name, scores in per_class.items():
        lines.append(f"{name:<{width}}  {scores['precision']:9.3f}  {scores['recall']:6.3f}  {scores['f1']:5.3f}  "
                     f"{scores['support']:6d}")
    macro = {key: np.mean([scores[key] for scores in per_class.values()]) for key in ("precision", "recall", "f1")}
    lines.append(f"{'(macro mean)':<{width}}  {macro['precision']:9.3f}  {macro['recall']:6.3f}  {macro['f1']:5.3f}  "
                 f"{sum(scores['support'] for scores in per_class.values()):6d}")
    return "\n".join(lines)


def _where_it_looked(model, images, class_ids):
    """Grad-CAM maps at the images' size, or None for a model with no convolutional block."""
    from zoo.errors import OptionError
    from zoo.interpret.attribution import attribute, normalise, resize_maps

    try:
        maps = attribute(model, np.asarray(images, "float32"), class_ids, method="gradcam")
    except OptionError:
        return None
    return normalise(resize_maps(maps, np.asarray(images).shape[1:3]))


def lr_find(data_dir, model, weights="default", image_size=None, batch_size=32, plot="lr_find.png",
            seed=0, num_steps=100, verbose=1):
    """`zoo lr-find`: the learning-rate sweep for a new head on `data_dir` (base frozen)."""
    import keras

    keras.utils.set_random_seed(seed)
    _, _, data, net = prepare(data_dir, model, weights, image_size, batch_size, seed, False, verbose)
    return sweep_head(net, data, batch_size, plot=plot, num_steps=num_steps)


def finetune(data_dir, model, out="runs/finetune", **options):
    """`zoo finetune`: the classifier task under its short name (same options, same run)."""
    from zoo.tasks import train as train_kind

    return train_kind(KIND, data_dir, model=model, out=out, **options)


def signatures(source, top_k=5, classes=None):
    """The export's signatures (`zoo.tasks`' contract): `serving_default` (float
    pixels), `serving_uint8`, `serving_bytes`, `top_k`, `classify` and `explain`, made
    in `zoo.tasks.image_classifier_export`, where they are described."""
    from zoo.tasks import image_classifier_export

    return image_classifier_export.signatures(source, top_k=top_k, classes=classes)


def portable(source, classes=None):
    """The one-file export (`zoo.tasks`' contract): uint8 images → probabilities, in
    `zoo.tasks.image_classifier_export.portable`."""
    from zoo.tasks import image_classifier_export

    return image_classifier_export.portable(source, classes=classes)
