"""Segmentation: zoo against keras.io's "Image segmentation with a U-Net-like architecture".

Both sides train from scratch on the same folder (`tests/helpers/segmentation_set.py`:
crops of real scikit-image photos with elliptical objects pasted on them, 6 classes,
64 px, written with `ignore_border=False`, so the masks are plain class indices with no
ignore band: the recipe has no ignore index), on the same training and validation
images, for the same number of epochs; each is scored on a held-out set neither saw
(`make_set(200, seed=1)`) with the reference IoU of the test helpers (pooled over all
held-out pixels, the mean over the 6 classes).

- zoo: `zoo.train("image-segmentation", FOLDER, model="tiny_encoder", weights="none",
  image_size=64, batch_size=16, lr=3e-3)`: a U-Net decoder on a 4-stage conv encoder,
  zoo's loss, optimizer and schedule, its 20 % validation split (seed 0), the best epoch
  by validation mean IoU. Options fixed before any held-out figure was seen.
- recipe: keras.io's model (the Xception-style U-Net), loss (sparse categorical
  crossentropy), optimizer (Adam, 1e-4) and batch size (32), written below as data
  (`RECIPE`) that `recipe_model` turns into a Keras model, trained with `model.fit` on
  zoo's training pairs, validated on zoo's validation pairs, keeping the epoch of the
  lowest validation loss (keras.io's `ModelCheckpoint(save_best_only=True)`). Its input
  pipeline as keras.io's: `decode_png` then `tf.image.resize` to float32, which leaves the
  pixels in 0-255 (keras.io's `convert_image_dtype(x, "float32")` on an image that is
  already float32 changes nothing), batches in one fixed order (its dataset is not
  shuffled; the paths are shuffled once with `random.Random(1337)`). One change: the
  masks are read as indices with Pillow, since `decode_png` expands a palette PNG to
  colours (keras.io's trimaps are grayscale). `--recipe-rescale` divides by 255 instead.

Sides alternate (zoo then recipe at the first epoch count, recipe then zoo at the next,
...), each after `keras.utils.set_random_seed(0)`; the load average is printed before
and beside each. Seconds per epoch are the median of a side's epochs, from epoch begin
to epoch end (training and validation, as zoo's metrics.json records them).

    PYTHONPATH=. python benchmarks/segmentation.py [--epochs 5 20] [--images 400] [--test 200]
    PYTHONPATH=. python benchmarks/segmentation.py --smoke   # tiny: checks the script end to end
Results go in benchmarks/README.md, section "Segmentation".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.load import Load, load_average, text  # noqa: E402

# keras.io, examples/vision/oxford_pets_image_segmentation.py (fchollet), as data. A block
# is a main path and a residual path from the block's input (None: no residual), added at
# the end; "F" stands for the block's filters. Every activation is a separate layer, as
# there.
RELU = ["Activation", {"activation": "relu"}]
BN = ["BatchNormalization", {}]
RECIPE = {
    "source": "keras-team/keras-io examples/vision/oxford_pets_image_segmentation.py",
    "blocks": {
        "entry": {"main": [["Conv2D", {"filters": "F", "kernel_size": 3, "strides": 2, "padding": "same"}], BN, RELU],
                  "residual": None},
        "down": {"main": [RELU, ["SeparableConv2D", {"filters": "F", "kernel_size": 3, "padding": "same"}], BN,
                          RELU, ["SeparableConv2D", {"filters": "F", "kernel_size": 3, "padding": "same"}], BN,
                          ["MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}]],
                 "residual": [["Conv2D", {"filters": "F", "kernel_size": 1, "strides": 2, "padding": "same"}]]},
        "up": {"main": [RELU, ["Conv2DTranspose", {"filters": "F", "kernel_size": 3, "padding": "same"}], BN,
                        RELU, ["Conv2DTranspose", {"filters": "F", "kernel_size": 3, "padding": "same"}], BN,
                        ["UpSampling2D", {"size": 2}]],
               "residual": [["UpSampling2D", {"size": 2}], ["Conv2D", {"filters": "F", "kernel_size": 1,
                                                                        "padding": "same"}]]},
        "head": {"main": [["Conv2D", {"filters": "F", "kernel_size": 3, "activation": "softmax", "padding": "same"}]],
                 "residual": None},
    },
    # (block, filters); the head's filters are the number of classes.
    "layout": [("entry", 32), ("down", 64), ("down", 128), ("down", 256),
               ("up", 256), ("up", 128), ("up", 64), ("up", 32), ("head", "classes")],
    "loss": "sparse_categorical_crossentropy",
    "optimizer": {"class_name": "Adam", "config": {"learning_rate": 1e-4}},
    "batch_size": 32,
    "keep": {"monitor": "val_loss", "save_best_only": True},  # ModelCheckpoint
    "split_shuffle_seed": 1337,
}
ZOO = {"model": "tiny_encoder", "weights": "none", "batch_size": 16, "lr": 3e-3}


def recipe_model(recipe, image_size, num_classes):
    """The Keras model `recipe["layout"]` describes, on `(H, W, 3)` float inputs."""
    import keras

    def make(spec, filters):
        name, kwargs = spec
        kwargs = {k: (filters if v == "F" else v) for k, v in kwargs.items()}
        return getattr(keras.layers, name)(**kwargs)

    inputs = keras.Input(shape=(*image_size, 3))
    x = inputs
    for block, filters in recipe["layout"]:
        filters = num_classes if filters == "classes" else filters
        spec = recipe["blocks"][block]
        start = x
        for layer in spec["main"]:
            x = make(layer, filters)(x)
        if spec["residual"] is not None:
            residual = start
            for layer in spec["residual"]:
                residual = make(layer, filters)(residual)
            x = keras.layers.add([x, residual])
    return keras.Model(inputs, x)


def read_index_mask(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image, dtype=np.uint8)


def read_rgb(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def recipe_dataset(pairs, image_size, batch_size, rescale):
    """keras.io's pipeline on `(image path, mask path)` pairs: PNG decode and
    `tf.image.resize` (float32, 0-255), the mask resized nearest, batched, not shuffled."""
    import tensorflow as tf

    def load(image_path, mask_path):
        image = tf.image.resize(tf.io.decode_png(tf.io.read_file(image_path), channels=3), image_size)
        image = tf.image.convert_image_dtype(image, "float32")  # as keras.io: float32 already, the identity
        if rescale:
            image = image / 255.0
        mask = tf.numpy_function(lambda p: read_index_mask(p.decode()), [mask_path], tf.uint8)
        mask = tf.image.resize(tf.reshape(mask, (*image_size, 1)), image_size, method="nearest")
        return image, tf.cast(mask, tf.uint8)

    images = [str(image) for image, _ in pairs]
    masks = [str(mask) for _, mask in pairs]
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)


class EpochTimer:
    """Seconds from each epoch's begin to its end (training and validation)."""

    def __init__(self):
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                timer.seconds.append(time.perf_counter() - timer.start)

        self.seconds = []
        self.callback = Callback()


def train_recipe(report, image_size, num_classes, epochs, work, rescale, test_images):
    """keras.io's recipe on the folder's split; returns its held-out predictions and figures."""
    import keras

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    train_pairs = list(report.train_pairs)
    random.Random(RECIPE["split_shuffle_seed"]).shuffle(train_pairs)  # keras.io shuffles its paths once
    batch = RECIPE["batch_size"]
    train = recipe_dataset(train_pairs, image_size, batch, rescale)
    val = recipe_dataset(report.val_pairs, image_size, batch, rescale)
    model = recipe_model(RECIPE, image_size, num_classes)
    model.compile(optimizer=keras.optimizers.get(RECIPE["optimizer"]), loss=RECIPE["loss"])
    checkpoint = Path(work) / f"recipe-{epochs}.keras"
    timer = EpochTimer()
    history = model.fit(train, epochs=epochs, validation_data=val, verbose=0,
                        callbacks=[timer.callback, keras.callbacks.ModelCheckpoint(str(checkpoint),
                                                                                   **RECIPE["keep"])])
    wall = time.perf_counter() - start
    scale = 255.0 if rescale else 1.0
    x_test = test_images.astype("float32") / scale

    def masks_of(net):
        return np.argmax(net.predict(x_test, batch_size=batch, verbose=0), axis=-1).astype("uint8")

    last = masks_of(model)
    best = keras.models.load_model(checkpoint)
    predicted = masks_of(best)
    # Not keras.io: the same models with their BatchNorm statistics recomputed on the
    # training images (what zoo does after each epoch), to show how much of the recipe's
    # score is its moving averages.
    x_train = np.stack([read_rgb(image) for image, _ in train_pairs]).astype("float32") / scale
    recompute_batch_norm(best, x_train)
    recompute_batch_norm(model, x_train)
    val_loss = history.history["val_loss"]
    return {"pred": predicted, "last_pred": last, "best_bn_pred": masks_of(best), "last_bn_pred": masks_of(model),
            "epoch_seconds": timer.seconds, "wall": wall, "params": model.count_params(),
            "kept_epoch": int(np.argmin(val_loss)) + 1}


def recompute_batch_norm(model, x):
    """Every BatchNormalization layer's moving mean and variance set to those of `x`
    (one forward pass in training mode with momentum 0); the weights are unchanged."""
    import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def train_zoo(folder, image_size, epochs, work, test_images):
    import keras

    import zoo

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    run = zoo.train("image-segmentation", folder, epochs=epochs, image_size=image_size[0],
                    out=Path(work) / f"zoo-{epochs}", verbose=0, no_tensorboard=True, **ZOO)
    wall = time.perf_counter() - start
    predicted = np.stack(run.masks(list(test_images)))
    history = run.metrics.get("history", [])
    return {"pred": predicted, "run": run, "epoch_seconds": [h["seconds"] for h in history], "wall": wall,
            "params": run.model.count_params(), "kept_epoch": run.metrics.get("best_epoch")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--images", type=int, default=400, help="images in the folder (20 %% go to validation)")
    parser.add_argument("--test", type=int, default=200, help="held-out images (seed 1)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--recipe-rescale", action="store_true",
                        help="feed the recipe pixels / 255 (keras.io's pipeline leaves them 0-255)")
    parser.add_argument("--smoke", action="store_true", help="24 images, 1 epoch a side: checks the script runs")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.images, args.test = [1], 24, 16

    from zoo.cli.console import start_backend

    # keras.io calls fit without `shuffle`, whose default Keras ignores for a dataset, with a warning.
    warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")

    start_backend()  # TensorFlow without its start-up chatter
    from tests.helpers import segmentation_set as ss
    from zoo.data.masks import scan_segmentation_folder

    ss.register_tiny_encoder()
    num_classes = len(ss.CLASSES)
    image_size = (args.size, args.size)
    images, masks = ss.make_set(args.images, seed=0, size=args.size, ignore_border=False)
    test_images, test_masks = ss.make_set(args.test, seed=1, size=args.size, ignore_border=False)
    print(f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"{time.strftime('%Y-%m-%d')}; load: the highest 1-minute load average while a side trained", flush=True)
    load = Load()
    results = []
    with tempfile.TemporaryDirectory() as work:
        folder = ss.write_folder(Path(work) / "folder", images, masks)
        report = scan_segmentation_folder(folder, validation_split=0.2, seed=0, verbose=False)
        print(f"folder: {args.images} images at {args.size} px ({report.num_train} training, {report.num_val} "
              f"validation: zoo's split, seed 0), {num_classes} classes, no ignore band; held-out: {args.test} "
              f"images (seed 1)", flush=True)
        for index, epochs in enumerate(args.epochs):
            sides = ["zoo", "recipe"] if index % 2 == 0 else ["recipe", "zoo"]
            for side in sides:
                print(f"{side}, {epochs} epochs: load average before {text(load_average())}", flush=True)
                with load.timed(f"{side}, {epochs} epochs") as part:
                    if side == "zoo":
                        found = train_zoo(folder, image_size, epochs, work, test_images)
                    else:
                        found = train_recipe(report, image_size, num_classes, epochs, work, args.recipe_rescale,
                                             test_images)
                per_class = ss.iou_per_class(test_masks, found["pred"], num_classes)
                row = {"side": side, "epochs": epochs, "mean_iou": float(np.nanmean(per_class)),
                       "per_class": [None if np.isnan(v) else float(v) for v in per_class],
                       "epoch_seconds": [round(s, 2) for s in found["epoch_seconds"]],
                       "median_epoch_s": statistics.median(found["epoch_seconds"]) if found["epoch_seconds"] else None,
                       "wall_s": found["wall"], "params": found["params"], "kept_epoch": found["kept_epoch"],
                       "load": part.max, "load_text": part.describe()}
                if side == "recipe":
                    for key in ("last", "best_bn", "last_bn"):
                        row[f"{key}_mean_iou"] = ss.mean_iou(test_masks, found[f"{key}_pred"], num_classes)
                else:
                    run = found["run"]
                    # zoo's own validation figure against the reference formula on the same images
                    val_images = np.stack([read_rgb(p) for p, _ in report.val_pairs])
                    val_truth = np.stack([read_index_mask(m) for _, m in report.val_pairs])
                    row["zoo_val_mean_iou"] = run.metrics.get("mean_iou")
                    row["reference_val_mean_iou"] = ss.mean_iou(val_truth, np.stack(run.masks(list(val_images))),
                                                                num_classes)
                results.append(row)
                extra = (f", last epoch {row['last_mean_iou']:.4f}; not keras.io, BatchNorm statistics recomputed on "
                         f"the training images: kept {row['best_bn_mean_iou']:.4f}, last {row['last_bn_mean_iou']:.4f}"
                         if side == "recipe" else
                         f"; validation mean IoU: zoo's metrics {row['zoo_val_mean_iou']:.4f}, reference "
                         f"{row['reference_val_mean_iou']:.4f}")
                print(f"{side}, {epochs} epochs: held-out mean IoU {row['mean_iou']:.4f} (kept epoch "
                      f"{row['kept_epoch']}{extra}), {row['median_epoch_s']:.2f} s/epoch (median; epochs "
                      f"{', '.join(f'{s:.1f}' for s in row['epoch_seconds'])}), {row['wall_s']:.1f} s in all, "
                      f"{row['params']:,} parameters (load {part.describe()})", flush=True)

    recipe_input = "pixels / 255" if args.recipe_rescale else "pixels 0-255, as keras.io's pipeline gives them"
    print(f"\nheld-out mean IoU ({args.test} images, {num_classes} classes, pooled pixels), {args.images} images "
          f"at {args.size} px; recipe: {recipe_input}:\n")
    print("| epochs | side | held-out mIoU | kept epoch | s/epoch (median) | wall s (train call) | parameters | load |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['epochs']} | {row['side']} | {row['mean_iou']:.3f} | {row['kept_epoch']} | "
              f"{row['median_epoch_s']:.2f} | {row['wall_s']:.0f} | {row['params']:,} | {row['load_text']} |")
    print("\nper-class IoU on the held-out images:\n")
    print("| epochs | side | " + " | ".join(ss.CLASSES) + " |")
    print("|---|---|" + "---|" * num_classes)
    for row in results:
        cells = " | ".join("-" if v is None else f"{v:.3f}" for v in row["per_class"])
        print(f"| {row['epochs']} | {row['side']} | {cells} |")
    print("\nthe recipe's other readings (not the comparison's figure): held-out mIoU of its last epoch, and of its "
          "kept and last epochs with BatchNorm statistics recomputed on the training images (not keras.io):\n")
    print("| epochs | kept (keras.io) | last epoch | kept, BN recomputed | last, BN recomputed |")
    print("|---|---|---|---|---|")
    for row in results:
        if row["side"] == "recipe":
            print(f"| {row['epochs']} | {row['mean_iou']:.3f} (epoch {row['kept_epoch']}) | {row['last_mean_iou']:.3f} | "
                  f"{row['best_bn_mean_iou']:.3f} | {row['last_bn_mean_iou']:.3f} |")
    print()
    for epochs in args.epochs:
        pair = {r["side"]: r["mean_iou"] for r in results if r["epochs"] == epochs}
        verdict = "met" if pair["zoo"] >= pair["recipe"] else "NOT met"
        print(f"{epochs} epochs: zoo {pair['zoo']:.3f} vs recipe {pair['recipe']:.3f} "
              f"(zoo - recipe {pair['zoo'] - pair['recipe']:+.3f}): goal zoo >= recipe {verdict}")
    load.verdict()
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results, "load": load.as_dict()},
                                              indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
