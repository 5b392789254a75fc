"""The segmenter task: a folder of images and masks in, a U-Net on a registry encoder out.

    zoo train segmenter --data scenes/ --model resnet50 --epochs 5 --out runs/scenes
    run = zoo.train("image-segmentation", "scenes/", model="resnet50", epochs=5, out="runs/scenes")
    run.predict(["street.jpg"], out="masks/")

The path is the classifier's, with a decoder for a head: `zoo.data.segmentation_folder`
(pairs checked, split, streamed, augmented with their masks) → `zoo.create` (the
encoder, no top) → `zoo.transfer.replace_head(..., task="segmentation")` (a U-Net
decoder on its stages) → `zoo.transfer.fine_tune` (the decoder on the frozen encoder,
then everything with discriminative rates, through `zoo.training.fit`, the best epoch
by validation mean IoU) → the run directory: `metrics.json` with pixel accuracy, IoU
and Dice per class, mean IoU and mean Dice; `curves.png`; `predictions.png` (image,
truth and prediction of the worst and best validation images); TensorBoard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo import io, runs, tasks
from zoo.errors import OptionError, ZooError

KIND = "image-segmentation"
_TASK = tasks.MANIFEST[KIND]
DESCRIPTION = _TASK.description
OPTIONS = _TASK.options
MODEL_RANKS = (4, 4)  # images in, a class distribution per pixel out
PREDICTIONS_SHOWN = 3  # worst and best validation images in predictions.png, each

DEFAULTS = {"weights": "default", "freeze_epochs": 1, "image_size": None, "batch_size": 16, "lr": 1e-3,
            "lr_mult": 100.0, "augment": False, "seed": 0, "precision": "auto", "early_stopping": None,
            "no_bn_recalibration": False, "val_split": 0.2, "ignore_index": 255}
SCRATCH_DEFAULTS = {"freeze_epochs": 0, "lr_mult": 1.0}
RUN_SETTINGS = ("data", "model", "weights", "epochs", "freeze_epochs", "image_size", "batch_size", "lr", "lr_mult",
                "augment", "seed", "precision", "early_stopping", "no_bn_recalibration", "val_split", "ignore_index")


@dataclass
class SegmenterRun(runs.Run):
    """A segmenter's run: its model (uint8 images → a softmax per pixel) and classes."""

    classes: list = field(default_factory=list)

    @property
    def image_size(self):
        return tuple(self.model.inputs[0].shape[1:3])

    def masks(self, images, batch_size=8):
        """Class index per pixel of each image (paths or uint8 arrays), at the image's
        own size: uint8 `(H, W)` arrays (the model's probabilities resized bilinearly
        to the image before the argmax)."""
        return [item["mask"] for item in self.predict(images, batch_size=batch_size)]

    def predict(self, images, out=None, batch_size=8):
        """Each image's mask, and with `out` (a folder) its mask as a palette PNG
        (`STEM.mask.png`, the class indices as pixels) and an overlay (`STEM.overlay.png`,
        the classes coloured over the photo). Returns one dict per image: `image`,
        `mask` (uint8 at the image's size), `classes` (`{name: share of pixels}`), and
        `mask_file` and `overlay_file` with `out`, or `error`."""
        from zoo.data.pillow import load_many, results_in_order

        images = list(images)
        originals, errors = {}, {}
        for index, array, error in load_many(images, None):
            if error is None:
                originals[index] = array
            else:
                errors[index] = error
        size = self.image_size
        loaded = sorted(originals)
        shapes = {i: originals[i].shape[:2] for i in loaded}
        masks = {}
        for start in range(0, len(loaded), batch_size):
            chosen = loaded[start:start + batch_size]
            batch = np.stack([_resize(originals[i], size) for i in chosen])
            probabilities = np.asarray(self.model.predict_on_batch(batch), dtype="float32")
            for index, p in zip(chosen, probabilities):
                masks[index] = mask_at(p, shapes[index])
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)

        def described(row, index, item):
            mask = masks[index]
            counts = np.bincount(mask.ravel(), minlength=len(self.classes))
            result = {"image": str(item) if not isinstance(item, np.ndarray) else f"#{index}", "mask": mask,
                      "classes": {self.classes[c]: float(counts[c] / mask.size) for c in np.flatnonzero(counts)}}
            if out is not None:
                stem = Path(str(item)).stem if not isinstance(item, np.ndarray) else f"image{index}"
                result["mask_file"] = str(write_mask(Path(out) / f"{stem}.mask.png", mask))
                overlay = mask_overlay(originals[index], mask)
                result["overlay_file"] = str(write_png(Path(out) / f"{stem}.overlay.png", overlay))
            return result

        return results_in_order(images, errors, described)


def _resize(image, size):
    from PIL import Image

    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def mask_at(probabilities, shape):
    """The argmax of per-pixel probabilities `(h, w, K)` at `shape` `(H, W)`: each
    class's probability map resized bilinearly first, so edges fall between pixels of
    the model's grid instead of in its blocks."""
    from PIL import Image

    if probabilities.shape[:2] == tuple(shape):
        return np.argmax(probabilities, axis=-1).astype("uint8")
    height, width = shape
    planes = [np.asarray(Image.fromarray(probabilities[..., c], mode="F").resize((width, height), Image.BILINEAR))
              for c in range(probabilities.shape[-1])]
    return np.argmax(np.stack(planes, axis=-1), axis=-1).astype("uint8")


def palette(count):
    """`count` distinguishable RGB colours (uint8 `(count, 3)`), Pascal VOC's scheme:
    class 0 black, then the bits of each index spread over the channels."""
    colours = np.zeros((max(count, 1), 3), dtype="uint8")
    for index in range(count):
        value, shift = index, 7
        while value:
            for channel in range(3):
                colours[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return colours


def write_png(path, image):
    """A PIL image or uint8 array as a PNG at `path`, written atomically."""
    import io as bytes_io

    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype="uint8"))
    buffer = bytes_io.BytesIO()
    image.save(buffer, "PNG")
    io.write_bytes(path, buffer.getvalue())
    return Path(path)


def write_mask(path, mask):
    """A mask as a palette PNG: its pixels are the class indices (what `masks/` takes),
    its palette colours them for people."""
    from PIL import Image

    image = Image.fromarray(np.asarray(mask, dtype="uint8"), mode="P")
    colours = palette(256)
    colours[255] = 255  # the ignore index, white as in Pascal VOC
    image.putpalette(colours.ravel().tolist())
    return write_png(path, image)


def mask_overlay(image, mask, alpha=0.5):
    """The classes coloured over the photo (the background, class 0, left as it is)."""
    colours = palette(int(mask.max()) + 1 if mask.size else 1).astype("float32")
    image = np.asarray(image, dtype="float32")
    blend = np.where((mask > 0)[..., None], (1 - alpha) * image + alpha * colours[mask], image)
    return np.clip(blend, 0, 255).astype("uint8")


def load_run(run_dir):
    run_dir = Path(run_dir)
    model, config, metrics = runs.open_run(run_dir, KIND, MODEL_RANKS)
    return SegmenterRun(path=run_dir, model=model, config=config, metrics=metrics,
                        classes=io.read_json(run_dir / runs.CLASSES_FILE, [], expect=list))


def run_defaults(given):
    """From scratch (`--weights none`, or an encoder with no published weights) the
    encoder trains from the first epoch at the decoder's rate, as the classifier's does."""
    from zoo.tasks.image_classifier import from_scratch

    if given.get("model") is not None and from_scratch(given["model"], given.get("weights") or "default"):
        return {**DEFAULTS, **SCRATCH_DEFAULTS}
    return DEFAULTS


def build(model, num_classes, weights, image_size, settings=None):
    """The registry image model `model` (no top, `weights`) under a U-Net decoder for
    `num_classes`, at `image_size` `(H, W)`, built under `settings`."""
    from zoo import models
    from zoo.training import Settings

    spec = models.get_spec(model)
    if spec.task != "image-classification":
        raise ZooError(f"`model` must be a registry image model, whose stages the decoder is fed by. "
                       f"Received: model={model!r} ({spec.task})")
    with (settings or Settings(precision="float32")).building():
        return models.create(spec.name, weights=models.weights_choice(weights), task="segmentation",
                             num_classes=num_classes, input_shape=(*image_size, 3))


def train(data=None, out="runs/segmenter", resume=False, overwrite=False, verbose="auto", no_tensorboard=False,
          distribute="none", callbacks=(), **options):
    """Train a U-Net on the registry encoder `model` over the segmentation folder `data`.

    Args:
        data: path. A folder holding `images/` and `masks/` (the same stems; palette or
            8-bit index PNG masks) and optionally `codes.txt` (`zoo.data.masks`).
        out: path. The run directory (never overwritten unless `overwrite=True`).
        resume: bool. Continue the interrupted run in `out`.
        **options: `model` (a registry image model), `weights`, `epochs` (after the
            frozen phase), `freeze_epochs` (1; 0 from scratch), `image_size` (the
            model's), `batch_size` (16), `lr` (1e-3), `lr_mult` (100; 1 from scratch),
            `augment` (False: flips and crops applied to image and mask together),
            `val_split` (0.2), `ignore_index` (255), `seed`, `precision`,
            `early_stopping`, `no_bn_recalibration`.

    Returns:
        `SegmenterRun` of the finished run.
    """
    from zoo.data.masks import segmentation_folder
    from zoo.tasks.base import finish_run, start_run
    from zoo.tasks.image_classifier import from_scratch
    from zoo.training import Defaults
    from zoo.transfer import fine_tune

    given = {"data": None if data is None else str(data), **options}
    if given.get("val_split") is not None and not (isinstance(given["val_split"], (int, float))
                                                   and 0 <= given["val_split"] < 1):
        raise OptionError(f"--val-split is a fraction in [0, 1). Received: val_split={given['val_split']!r}")
    if given.get("ignore_index") is not None and not (isinstance(given["ignore_index"], int)
                                                      and 0 <= given["ignore_index"] <= 255):
        raise OptionError(f"--ignore-index is a mask value 0 to 255. Received: ignore_index={given['ignore_index']!r}")
    if given.get("weights") is not None and not isinstance(given["weights"], str):
        given["weights"] = str(given["weights"])
    if isinstance(given.get("image_size"), int):
        given["image_size"] = [given["image_size"]] * 2
    started = start_run(KIND, out, given, defaults=run_defaults, keys=RUN_SETTINGS,
                        required=("data", "model", "epochs"), resume=resume, overwrite=overwrite,
                        distribute=distribute, tensorboard=not no_tensorboard)
    config, resuming, out = started.config, started.resuming, started.out
    from zoo import models

    spec = models.get_spec(config["model"])
    size = tuple(config["image_size"] or spec.input_size)
    folder = segmentation_folder(config["data"], image_size=size, batch_size=config["batch_size"], seed=config["seed"],
                                 augment=config["augment"], validation_split=config["val_split"],
                                 ignore_index=config["ignore_index"], verbose=bool(verbose))
    net = build(spec.name, len(folder.classes), None if resuming else config["weights"], size, started.settings)
    started.write_config(KIND, model=spec.name, image_size=list(size), num_train=folder.report.num_train,
                         num_val=folder.report.num_val)
    if not resuming:
        io.write_json(out / runs.CLASSES_FILE, list(folder.classes))
    if folder.report.skipped:
        io.write_text(out / "skipped.txt", str(folder.report) + "\n")
    if not isinstance(config["lr"], (int, float)) or config["lr"] <= 0:
        raise OptionError(f"`lr` must be a positive number. Received: lr={config['lr']!r}")
    if verbose:
        frozen, tuned = config["freeze_epochs"], config["epochs"]
        print(f"{frozen + tuned} epochs: {frozen} training the decoder on the frozen encoder (--freeze-epochs), "
              f"then {tuned} fine-tuning the whole model (--epochs)" if frozen else
              f"{tuned} epochs, the whole model (--epochs; no frozen phase)", flush=True)
    result = fine_tune(
        net, folder.train, folder.val, epochs=config["epochs"], freeze_epochs=config["freeze_epochs"],
        base_lr=config["lr"], lr_mult=config["lr_mult"], batch_size=config["batch_size"], cache_features=False,
        train_bn=from_scratch(config["model"], config["weights"]),
        recalibrate_bn=not config.get("no_bn_recalibration", False),
        defaults=Defaults.segmenter(len(folder.classes), config["lr"], config["ignore_index"]),
        settings=started.settings, tracking=started.tracking(), callbacks=callbacks, verbose=verbose)

    def scores(model):
        found = {"skipped": [{"path": str(s.path), "reason": s.reason} for s in folder.report.skipped]}
        if folder.val is not None:
            found.update(evaluate(model, folder.val, folder.classes, config["ignore_index"], out=out,
                                  files=folder.report.val_files, tensorboard=not no_tensorboard,
                                  epoch=result.last_epoch))
        return found

    metrics = finish_run(out, net, result, evaluate=scores, verbose=verbose, plot_metrics=("loss", "mean_iou"))
    if verbose and metrics.get("per_class"):
        import sys

        print(f"validation images, per class:\n{format_report(metrics)}", file=sys.stderr, flush=True)
    return load_run(out)


def confusion(truth, predicted, num_classes, ignore_index):
    """The confusion matrix of counted pixels (rows: the mask's class, columns: the model's)."""
    truth, predicted = np.asarray(truth).ravel(), np.asarray(predicted).ravel()
    counted = truth != ignore_index
    return np.bincount(truth[counted].astype("int64") * num_classes + predicted[counted].astype("int64"),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores_of(matrix, classes):
    """Pixel accuracy, IoU and Dice per class, their means, from a confusion matrix. A
    class absent from both the masks and the predictions has no IoU (None) and is left
    out of the means."""
    matrix = np.asarray(matrix, dtype="float64")
    hits, truth, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    union = truth + predicted - hits
    iou = np.where(union > 0, hits / np.maximum(union, 1), np.nan)
    dice = np.where(truth + predicted > 0, 2 * hits / np.maximum(truth + predicted, 1), np.nan)
    per_class = {name: {"iou": None if np.isnan(iou[i]) else float(iou[i]),
                        "dice": None if np.isnan(dice[i]) else float(dice[i]), "pixels": int(truth[i])}
                 for i, name in enumerate(classes)}
    return {"pixel_accuracy": float(hits.sum() / max(matrix.sum(), 1)),
            "mean_iou": float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else 0.0,
            "mean_dice": float(np.nanmean(dice)) if np.any(~np.isnan(dice)) else 0.0,
            "per_class": per_class}


def evaluate(model, val, classes, ignore_index=255, out=None, files=None, tensorboard=False, epoch=0):
    """The final scores on the validation batches (`scores_of` their pixels) and, with
    `out`, `predictions.png`: image, truth and prediction of the worst and best images
    by their own mean IoU."""
    from zoo.tasks.classify import forward_function

    forward = forward_function(model)
    num_classes = len(classes)
    total = np.zeros((num_classes, num_classes), dtype="int64")
    ranked = []  # (image mean IoU, index, image, truth, prediction), the worst and best kept
    offset = 0
    for images, masks in val:
        images, masks = np.asarray(images), np.asarray(masks)
        predicted = np.argmax(forward(images), axis=-1).astype("uint8")
        for i in range(len(images)):
            matrix = confusion(masks[i], predicted[i], num_classes, ignore_index)
            total += matrix
            ranked.append((scores_of(matrix, classes)["mean_iou"], offset + i, images[i], masks[i], predicted[i]))
        ranked.sort(key=lambda item: item[0])
        ranked = ranked[:PREDICTIONS_SHOWN] + ranked[-PREDICTIONS_SHOWN:] if len(ranked) > 2 * PREDICTIONS_SHOWN \
            else ranked
        offset += len(images)
    found = scores_of(total, classes)
    found["confusion_matrix"] = total.tolist()
    if out is not None and ranked:
        from zoo.plots import plot_segmentation

        shown = ranked[:PREDICTIONS_SHOWN] + [r for r in ranked[-PREDICTIONS_SHOWN:] if r not in
                                              ranked[:PREDICTIONS_SHOWN]]
        names = [Path(files[r[1]]).name if files and r[1] < len(files) else f"#{r[1]}" for r in shown]
        path = plot_segmentation([r[2] for r in shown], [r[3] for r in shown], [r[4] for r in shown],
                                 palette(max(num_classes, 256)), Path(out) / "predictions.png",
                                 titles=[f"{name}: mean IoU {r[0]:.2f}" for name, r in zip(names, shown)],
                                 ignore_index=ignore_index, classes=classes)
        found["predictions"] = [{"image": name, "mean_iou": r[0]} for name, r in zip(names, shown)]
        if tensorboard:
            from zoo.plots import image_array
            from zoo.training import TensorBoardLogger

            TensorBoardLogger(Path(out) / runs.LOGS).write_images(epoch, {"predictions": image_array(path)})
    return found


def format_report(metrics):
    """The per-class scores as the table a run prints at its end."""
    per_class = metrics["per_class"]
    width = max(12, *(len(name) for name in per_class))
    lines = [f"{'class':<{width}}    IoU   Dice    pixels"]
    for name, scores in per_class.items():
        iou = "   -  " if scores["iou"] is None else f"{scores['iou']:6.3f}"
        dice = "   -  " if scores["dice"] is None else f"{scores['dice']:6.3f}"
        lines.append(f"{name:<{width}}  {iou} {dice}  {scores['pixels']:8d}")
    lines.append(f"{'(mean)':<{width}}  {metrics['mean_iou']:6.3f} {metrics['mean_dice']:6.3f}  "
                 f"pixel accuracy {metrics['pixel_accuracy']:.3f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------ export
SIGNATURE_BYTES = "serving_bytes"


def signatures(source, top_k=5, classes=None):
    """The export's signatures (`zoo.tasks`' contract): `serving_default`, `images`
    uint8 `[N, H, W, 3]` → `masks` uint8 `[N, H, W]` (the class index of each pixel)
    and `scores` float32 `[N, H, W]` (its probability); `serving_bytes`, `image_bytes`
    string `[N]` (JPEG, PNG, ... files; REST's `{"b64": ...}`) → the same, each image
    decoded with zoo's one decode (its header's claimed size checked against
    `$ZOO_MAX_IMAGE_PIXELS` first) and resized to H x W. `top_k` plays no part;
    `classes` overrides the run's class names in zoo.json."""
    import tensorflow as tf

    from zoo.data.images import decode_resize_bytes
    from zoo.data.pillow import max_pixels as pixel_limit
    from zoo.tasks.export import call, image_input_size, model_of

    model = model_of(source)
    size = image_input_size(model)
    if size is None or len(model.outputs[0].shape) != 4:
        raise ZooError(f"A segmenter takes (N, H, W, 3) images of a fixed size and gives (N, H, W, classes). "
                       f"Received: {tuple(model.inputs[0].shape)} -> {tuple(model.outputs[0].shape)}")
    height, width = size
    limit = pixel_limit()
    names = list(classes or getattr(source, "classes", None) or
                 [str(i) for i in range(int(model.outputs[0].shape[-1]))])

    def segment(images):
        probabilities = tf.cast(call(model, tf.cast(images, model.inputs[0].dtype)), tf.float32)
        return {"masks": tf.cast(tf.argmax(probabilities, axis=-1), tf.uint8),
                "scores": tf.reduce_max(probabilities, axis=-1)}

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")])
    def serve(images):
        return segment(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        decoded = tf.map_fn(lambda encoded: decode_resize_bytes(encoded, (height, width), max_pixels=limit),
                            image_bytes, fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8))
        return segment(decoded)

    outputs = ["masks", "scores"]
    endpoints = {"serving_default": (serve, {"inputs": ["images"], "outputs": outputs}),
                 SIGNATURE_BYTES: (serve_bytes, {"inputs": ["image_bytes"], "outputs": outputs})}
    return endpoints, {"classes": names, "input_size": [height, width], "top_k": None}


def portable(source, classes=None):
    """The one-file export (`zoo.tasks`' contract): `images` uint8 `[N, H, W, 3]` →
    `masks` uint8 `[N, H, W]`, with `labels.txt` (the class names) beside it."""
    import tensorflow as tf

    from zoo.tasks.export import Portable, model_of

    model = model_of(source)
    shape = tuple(model.inputs[0].shape[1:])
    names = list(classes or getattr(source, "classes", None) or [])

    @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.uint8, name="images")])
    def segment(images):
        probabilities = tf.cast(model(tf.cast(images, model.inputs[0].dtype), training=False), tf.float32)
        return {"masks": tf.cast(tf.argmax(probabilities, axis=-1), tf.uint8)}

    files = {"labels.txt": "".join(f"{name}\n" for name in names)} if names else {}
    return Portable(function=segment, model=model, files=files,
                    metadata={"input": "images: uint8 (batch, height, width, 3)",
                              "output": "masks: uint8 (batch, height, width), the class index of each pixel",
                              **({"labels": "\n".join(names)} if names else {})})
