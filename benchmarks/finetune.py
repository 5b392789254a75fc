"""Frozen-phase fine-tuning: `zoo finetune` (cached features) vs the keras-io recipe.

The keras-io "Transfer learning & fine-tuning" guide trains a new head on a frozen base
by calling the base on every batch of every epoch (20 epochs). zoo's frozen phase runs
the base once, caches the features and trains the same head on them.

Both sides: 2 classes x 200 photo-sized JPEGs (crops of real photos, benchmarks/data.py),
ResNet50 at 224 px with the *same* base weights (random, fixed seed: ImageNet weights
cannot be downloaded here), GlobalAveragePooling + Dropout(0.2) + Dense head, Adam,
20 frozen epochs, each side's own 80/20 split of those 400 images. Both trained heads
are then scored on the same separate test set (2 x 100 more crops, another seed), so
the accuracies compare like for like. The keras-io side runs without its augmentation layers:
with augmentation no method can reuse features, and the comparison is about what
caching buys for the same model.

Run:  PYTHONPATH=. python benchmarks/finetune.py [--per-class 200] [--epochs 20]
Results go in benchmarks/README.md, section "Fine-tune".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras_io_recipe(folder, weights_file, epochs, test_folder, image_size=224, batch_size=32, seed=0):
    """The guide's frozen-base recipe, as written there (Functional model, base called
    with training=False, Adam, 20 epochs), with ResNet50 in place of Xception."""
    import keras

    keras.utils.set_random_seed(seed)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="both", seed=seed, image_size=(image_size, image_size),
        batch_size=batch_size, label_mode="binary",
    )
    base_model = keras.applications.ResNet50(weights=None, input_shape=(image_size, image_size, 3), include_top=False)
    base_model.load_weights(weights_file)
    base_model.trainable = False
    inputs = keras.Input(shape=(image_size, image_size, 3))
    x = keras.applications.resnet50.preprocess_input(inputs)
    x = base_model(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy()])
    start = time.perf_counter()
    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, verbose=2)
    seconds = time.perf_counter() - start
    test_ds = keras.utils.image_dataset_from_directory(
        test_folder, image_size=(image_size, image_size), batch_size=batch_size, label_mode="binary", shuffle=False)
    test_accuracy = float(model.evaluate(test_ds, verbose=0)[1])
    return {"seconds": seconds, "val_accuracy": float(history.history["val_binary_accuracy"][-1]),
            "test_accuracy": test_accuracy}


def zoo_frozen_phase(folder, weights_file, epochs, out, test_folder, image_size=224, batch_size=32, seed=0):
    from zoo.tasks.image_classifier import finetune

    start = time.perf_counter()
    run = finetune(folder, model="resnet50", weights=weights_file, epochs=0, freeze_epochs=epochs,
                   image_size=image_size, batch_size=batch_size, lr=1e-3, out=out, seed=seed, verbose=2)
    seconds = time.perf_counter() - start
    import numpy as np

    import zoo.data

    test = zoo.data.image_folder(test_folder, image_size=image_size, batch_size=batch_size, validation_split=0,
                                 shuffle=False, verbose=False)
    right = total = 0
    for images, labels in test.train:
        predicted = np.argmax(np.asarray(run.model.predict_on_batch(np.asarray(images))), axis=-1)
        right += int(np.sum(predicted == np.asarray(labels)))
        total += len(predicted)
    return {"seconds": seconds, "phase1_seconds": run.metrics["seconds"]["phase1"],
            "val_accuracy": run.metrics["val_accuracy"], "test_accuracy": right / total}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data", help="an existing 2-class image folder (default: make one)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    import keras
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    from benchmarks.data import make_photo_folder

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-finetune-"))
    folder = Path(args.data) if args.data else make_photo_folder(work / "photos", per_class=args.per_class)
    test_folder = make_photo_folder(work / "test", per_class=100, seed=1)
    # One set of base weights for both sides, in the official no-top file layout.
    keras.utils.set_random_seed(0)
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3))
    weights_file = work / "resnet50_notop.h5"
    with h5py.File(weights_file, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    del reference

    zoo_result = zoo_frozen_phase(folder, str(weights_file), args.epochs, work / "run", test_folder)
    print("zoo:", zoo_result, flush=True)
    keras_result = keras_io_recipe(folder, str(weights_file), args.epochs, test_folder)
    print("keras-io:", keras_result, flush=True)
    figures = {
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "images": 2 * args.per_class,
        "epochs": args.epochs,
        "zoo": zoo_result,
        "keras_io": keras_result,
        "speedup_whole_command": keras_result["seconds"] / zoo_result["seconds"],
        "speedup_frozen_phase": keras_result["seconds"] / zoo_result["phase1_seconds"],
        "test_accuracy_gap_points": 100 * abs(keras_result["test_accuracy"] - zoo_result["test_accuracy"]),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
