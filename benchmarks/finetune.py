"""Frozen-phase fine-tuning: `zoo finetune` (cached features) vs the keras-io recipe,
at 1, 3, 5 and 20 epochs.

The keras-io "Transfer learning & fine-tuning" guide trains a new head on a frozen base
by calling the base on every batch of every epoch (20 epochs, Adam at a constant 1e-3).
zoo's frozen phase runs the base once, caches the features and trains the same head on
them (zero-initialised, one-cycle schedule over the phase).

Both sides: 2 classes x 200 photo-sized JPEGs (crops of real photos, benchmarks/data.py),
ResNet50 at 224 px with the *same* base weights (random, fixed seed: ImageNet weights
cannot be downloaded here), GlobalAveragePooling + Dropout(0.2) + Dense head, Adam,
each side's own 80/20 split of those 400 images. Every trained head is scored on the
same separate test set (2 x 100 more crops, another seed). The keras-io side runs
without its augmentation layers: with augmentation no method can reuse features.

The sides are interleaved under the same load: for each epoch count N in turn, zoo runs
a whole N-epoch frozen phase, then the recipe's one fit continues to epoch N (its
schedule is constant, so its first N epochs are an N-epoch run) and is scored there.
With `--repeats R` the whole sequence runs R times (the recipe from scratch each time)
and medians are reported. The load average is recorded around every segment.

Run:  PYTHONPATH=. python benchmarks/finetune.py [--epochs 1,3,5,20] [--repeats 1] [--json FILE]
Results go in benchmarks/README.md, section "Fine-tune".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def load():
    return round(os.getloadavg()[0], 2)


class KerasIoRecipe:
    """The guide's frozen-base recipe, as written there (Functional model, base called
    with training=False, Adam, binary head), with ResNet50 in place of Xception; one fit
    continued epoch range by epoch range."""

    def __init__(self, folder, weights_file, test_folder, image_size=224, batch_size=32, seed=0):
        import keras

        keras.utils.set_random_seed(seed)
        self.train_ds, self.val_ds = keras.utils.image_dataset_from_directory(
            folder, validation_split=0.2, subset="both", seed=seed, image_size=(image_size, image_size),
            batch_size=batch_size, label_mode="binary",
        )
        self.test_ds = keras.utils.image_dataset_from_directory(
            test_folder, image_size=(image_size, image_size), batch_size=batch_size, label_mode="binary",
            shuffle=False)
        base_model = keras.applications.ResNet50(weights=None, input_shape=(image_size, image_size, 3),
                                                 include_top=False)
        base_model.load_weights(weights_file)
        base_model.trainable = False
        inputs = keras.Input(shape=(image_size, image_size, 3))
        x = keras.applications.resnet50.preprocess_input(inputs)
        x = base_model(x, training=False)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dropout(0.2)(x)
        outputs = keras.layers.Dense(1)(x)
        self.model = keras.Model(inputs, outputs)
        # The recipe's own compile and fit: this is the peer, not zoo's code.
        self.model.compile(optimizer=keras.optimizers.Adam(),
                           loss=keras.losses.BinaryCrossentropy(from_logits=True),
                           metrics=[keras.metrics.BinaryAccuracy()])
        self.epochs_done = 0
        self.epoch_seconds = []

    def train_to(self, epochs):
        import keras

        times = self.epoch_seconds

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.t0)

        self.model.fit(self.train_ds, epochs=epochs, initial_epoch=self.epochs_done, validation_data=self.val_ds,
                       verbose=2, callbacks=[Timer()])
        self.epochs_done = epochs
        return {"seconds": sum(times[:epochs]), "epoch_seconds_median": statistics.median(times),
                "test_accuracy": float(self.model.evaluate(self.test_ds, verbose=0)[1])}


def zoo_frozen_phase(folder, weights_file, epochs, out, test_folder, image_size=224, batch_size=32, seed=0):
    import numpy as np

    import zoo
    import zoo.data

    start = time.perf_counter()
    run = zoo.finetune(folder, model="resnet50", weights=weights_file, epochs=0, freeze_epochs=epochs,
                       image_size=image_size, batch_size=batch_size, lr=1e-3, out=out, seed=seed, verbose=2,
                       overwrite=Path(out).exists())
    seconds = time.perf_counter() - start
    test = zoo.data.image_folder(test_folder, image_size=image_size, batch_size=batch_size, validation_split=0,
                                 shuffle=False, verbose=False)
    right = total = 0
    for images, labels in test.train:
        predicted = np.argmax(np.asarray(run.model.predict_on_batch(np.asarray(images))), axis=-1)
        right += int(np.sum(predicted == np.asarray(labels)))
        total += len(predicted)
    history = run.metrics["history"]
    return {"seconds": seconds, "phase1_seconds": run.metrics["phase_seconds"]["phase1"],
            "head_epoch_seconds_median": statistics.median(h["seconds"] for h in history),
            "best_epoch": run.metrics["best_epoch"], "val_accuracy": run.metrics["val_accuracy"],
            "test_accuracy": right / total}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", default="1,3,5,20", help="epoch counts, comma-separated, increasing")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", help="an existing 2-class image folder (default: make one)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    counts = sorted(int(n) for n in args.epochs.split(","))

    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

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

    rows = {n: {"zoo": [], "keras_io": [], "load": []} for n in counts}
    for repeat in range(args.repeats):
        recipe = KerasIoRecipe(folder, str(weights_file), test_folder)
        for n in counts:
            before = load()
            z = zoo_frozen_phase(folder, str(weights_file), n, work / f"run{n}", test_folder)
            print(f"zoo {n} epochs:", z, flush=True)
            k = recipe.train_to(n)
            print(f"keras-io {n} epochs:", k, flush=True)
            rows[n]["zoo"].append(z)
            rows[n]["keras_io"].append(k)
            rows[n]["load"].append([before, load()])

    def median(results, key):
        return statistics.median(r[key] for r in results)

    table = []
    for n in counts:
        z, k = rows[n]["zoo"], rows[n]["keras_io"]
        table.append({
            "epochs": n,
            "zoo_test_accuracy": median(z, "test_accuracy"),
            "keras_io_test_accuracy": median(k, "test_accuracy"),
            "zoo_frozen_phase_seconds": median(z, "phase1_seconds"),
            "zoo_command_seconds": median(z, "seconds"),
            "keras_io_seconds": median(k, "seconds"),
            "speedup_frozen_phase": median(k, "seconds") / median(z, "phase1_seconds"),
            "speedup_whole_command": median(k, "seconds") / median(z, "seconds"),
            "zoo_best_epoch": [r["best_epoch"] for r in z],
            "load_average": rows[n]["load"],
        })
    figures = {
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "images": 2 * args.per_class,
        "repeats": args.repeats,
        "keras_io_epoch_seconds_median": statistics.median(
            r["epoch_seconds_median"] for n in counts for r in rows[n]["keras_io"]),
        "zoo_head_epoch_seconds_median": statistics.median(
            r["head_epoch_seconds_median"] for n in counts for r in rows[n]["zoo"]),
        "table": table,
    }
    print(json.dumps(figures, indent=2))
    print("\n| epochs | zoo test acc | keras-io test acc | zoo frozen phase | keras-io fit | speed-up (phase / command) |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['epochs']} | {100 * row['zoo_test_accuracy']:.1f} % | {100 * row['keras_io_test_accuracy']:.1f} % "
              f"| {row['zoo_frozen_phase_seconds']:.1f} s | {row['keras_io_seconds']:.1f} s "
              f"| {row['speedup_frozen_phase']:.1f}× / {row['speedup_whole_command']:.1f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
