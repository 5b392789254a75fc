"""Frozen-phase fine-tuning: `zoo finetune` (cached features) vs the keras-io recipe,
at 1, 3, 5 and 20 epochs, on the same split, each side scored at its last epoch and at
its best epoch by validation accuracy.

The keras-io "Transfer learning & fine-tuning" guide trains a new head on a frozen base
by calling the base on every batch of every epoch (20 epochs, Adam at a constant 1e-3).
zoo's frozen phase runs the base once, caches the features and trains the same head on
them (zero-initialised, one-cycle schedule over the phase).

Both sides: 2 classes x 200 photo-sized JPEGs (crops of real photos, benchmarks/data.py),
ResNet50 at 224 px with the *same* base weights (random, fixed seed: ImageNet weights
cannot be downloaded here), GlobalAveragePooling + Dropout(0.2) + Dense head, Adam.
The keras-io side runs without its augmentation layers: with augmentation no method
can reuse features.

One split for both sides. zoo splits a folder per class (`zoo.data.scan_folder`, 20 %
of each class held out, the permutation fixed by the seed); zoo cannot take a separate
validation folder, so zoo gets the folder and makes its own split, and the recipe gets
exactly that split: the script asks `zoo.data.scan_folder` for zoo's file lists (the
same call, seed and fraction `zoo finetune` makes) and hard-links them into
`split/train/CLASS/` and `split/val/CLASS/`, which the recipe loads with
`image_dataset_from_directory` (one call per folder, no `validation_split`). The run's
recorded training and validation counts are checked against the written folders.
Each side decodes with its own pipeline (zoo.data; Keras' `load_img` path).

Both scored both ways, on the same separate test set (2 x 100 more crops, another seed):
- last: the model after the last epoch (zoo: `run.load_last()`, the run's
  `last.weights.h5` when the best epoch was another one; the recipe: its model as fit
  leaves it, as the guide scores it);
- best: the epoch with the highest validation accuracy (zoo: the run's `model.keras`,
  ties broken by the lower validation loss; the recipe: a
  `keras.callbacks.ModelCheckpoint(save_best_only=True, monitor="val_binary_accuracy")`,
  weights only, reloaded; Keras keeps the first of tied epochs).
The recipe's checkpoint writes are timed apart and not counted in its fit seconds (the
guide as written saves nothing); zoo's phase includes its own per-epoch checkpoint.

The sides are interleaved under the same load: for each epoch count N in turn, zoo runs
a whole N-epoch frozen phase, then the recipe's one fit continues to epoch N (its
schedule is constant, so its first N epochs are an N-epoch run; its checkpoint callback
is the same object throughout, so "best" is the best of its first N epochs) and is
scored there. With `--repeats R` the whole sequence runs R times (the recipe from
scratch each time) and medians are reported. The 1-minute load average is sampled
during every timed part (benchmarks/load.py) and printed beside each figure.

Run:  PYTHONPATH=. python benchmarks/finetune.py [--epochs 1,3,5,20] [--repeats 1] [--json FILE]
      PYTHONPATH=. python benchmarks/finetune.py --smoke     # tiny: checks the script end to end
Results go in benchmarks/README.md, section "Fine-tune".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import Load, highest, text  # noqa: E402

VALIDATION_SPLIT = 0.2  # zoo finetune's (image_folder's default)


def write_split(folder, out, seed=0):
    """zoo's split of `folder` (the call `zoo finetune` makes, same seed and fraction),
    hard-linked (copied where links fail) into `out/train/CLASS/` and `out/val/CLASS/`."""
    import zoo.data

    report = zoo.data.scan_folder(folder, validation_split=VALIDATION_SPLIT, seed=seed, verbose=False)
    if report.skipped:
        raise SystemExit(f"{folder}: zoo skipped files, the sides would not see the same images: {report.skipped}")
    for subset, files, labels in (("train", report.train_files, report.train_labels),
                                  ("val", report.val_files, report.val_labels)):
        for file, label in zip(files, labels):
            target = Path(out) / subset / report.classes[int(label)] / Path(file).name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, target)
            except OSError:
                shutil.copyfile(file, target)
    return Path(out) / "train", Path(out) / "val", report


class KerasIoRecipe:
    """The guide's frozen-base recipe, as written there (Functional model, base called
    with training=False, Adam, binary head), with ResNet50 in place of Xception, on
    zoo's split; one fit continued epoch range by epoch range, with a best-epoch
    checkpoint beside it."""

    def __init__(self, train_dir, val_dir, weights_file, test_folder, work, image_size=224, batch_size=32, seed=0):
        import keras

        keras.utils.set_random_seed(seed)
        size = (image_size, image_size)
        self.train_ds = keras.utils.image_dataset_from_directory(
            train_dir, seed=seed, image_size=size, batch_size=batch_size, label_mode="binary")
        self.val_ds = keras.utils.image_dataset_from_directory(
            val_dir, image_size=size, batch_size=batch_size, label_mode="binary", shuffle=False)
        self.test_ds = keras.utils.image_dataset_from_directory(
            test_folder, image_size=size, batch_size=batch_size, label_mode="binary", shuffle=False)
        self.num_train = sum(int(y.shape[0]) for _, y in self.train_ds)
        self.num_val = sum(int(y.shape[0]) for _, y in self.val_ds)

        def build():
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
            model = keras.Model(inputs, outputs)
            # The recipe's own compile and fit: this is the peer, not zoo's code.
            model.compile(optimizer=keras.optimizers.Adam(),
                          loss=keras.losses.BinaryCrossentropy(from_logits=True),
                          metrics=[keras.metrics.BinaryAccuracy()])
            return model

        self.model = build()
        self.scorer = build()  # the best epoch's weights are loaded into this one
        self.best_file = Path(work) / f"recipe_best_{seed}.weights.h5"
        self.checkpoint = keras.callbacks.ModelCheckpoint(
            self.best_file, monitor="val_binary_accuracy", mode="max", save_best_only=True, save_weights_only=True)
        self.epochs_done = 0
        self.epoch_seconds, self.checkpoint_seconds, self.val_accuracy = [], [], []

    def train_to(self, epochs):
        import keras

        times, saves = self.epoch_seconds, self.checkpoint_seconds

        class Timer(keras.callbacks.Callback):  # before the checkpoint: its writes are not fit time
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.t1 = time.perf_counter()
                times.append(self.t1 - self.t0)

        class AfterCheckpoint(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                saves.append(time.perf_counter() - timer.t1)

        timer = Timer()
        history = self.model.fit(self.train_ds, epochs=epochs, initial_epoch=self.epochs_done,
                                 validation_data=self.val_ds, verbose=2,
                                 callbacks=[timer, self.checkpoint, AfterCheckpoint()])
        self.val_accuracy += [float(v) for v in history.history["val_binary_accuracy"]]
        self.epochs_done = epochs
        best_value = max(self.val_accuracy)
        best_epoch = self.val_accuracy.index(best_value) + 1  # Keras keeps the first of tied epochs
        self.scorer.load_weights(self.best_file)
        return {"seconds": sum(times[:epochs]), "epoch_seconds_median": statistics.median(times),
                "checkpoint_seconds": sum(saves[:epochs]),
                "test_accuracy_last": float(self.model.evaluate(self.test_ds, verbose=0)[1]),
                "test_accuracy_best": float(self.scorer.evaluate(self.test_ds, verbose=0)[1]),
                "best_epoch": best_epoch, "val_accuracy_best": best_value,
                "val_accuracy_last": self.val_accuracy[epochs - 1]}


def test_accuracy(model, test):
    import numpy as np

    right = total = 0
    for images, labels in test:
        predicted = np.argmax(np.asarray(model.predict_on_batch(np.asarray(images))), axis=-1)
        right += int(np.sum(predicted == np.asarray(labels)))
        total += len(predicted)
    return right / total


def zoo_frozen_phase(folder, weights_file, epochs, out, test_folder, split, image_size=224, batch_size=32, seed=0):
    import statistics as stats

    import zoo
    import zoo.data

    start = time.perf_counter()
    run = zoo.finetune(folder, model="resnet50", weights=weights_file, epochs=0, freeze_epochs=epochs,
                       image_size=image_size, batch_size=batch_size, lr=1e-3, out=out, seed=seed, verbose=2,
                       overwrite=Path(out).exists())
    seconds = time.perf_counter() - start
    if (run.config["num_train"], run.config["num_val"]) != (split.num_train, split.num_val):
        raise SystemExit(f"zoo's run split {run.config['num_train']}/{run.config['num_val']} is not the written "
                         f"split {split.num_train}/{split.num_val}")
    test = zoo.data.image_folder(test_folder, image_size=image_size, batch_size=batch_size, validation_split=0,
                                 shuffle=False, verbose=False)
    history = run.metrics["history"]
    last = zoo.load_run(out).load_last()
    return {"seconds": seconds, "phase1_seconds": run.metrics["phase_seconds"]["phase1"],
            "head_epoch_seconds_median": stats.median(h["seconds"] for h in history),
            "best_epoch": run.metrics["best_epoch"], "last_epoch": run.metrics["last_epoch"],
            "val_accuracy_best": run.metrics["val_accuracy"],
            "val_accuracy_last": history[-1].get("val_accuracy"),
            "test_accuracy_best": test_accuracy(run.model, test.train),
            "test_accuracy_last": test_accuracy(last, test.train)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--epochs", default="1,3,5,20", help="epoch counts, comma-separated, increasing")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--data", help="an existing 2-class image folder (default: make one)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: 12 + 6 images per class at 64 px, epochs 1,2 (checks the script, figures mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.per_class, args.test_per_class, args.epochs, args.image_size = 12, 6, "1,2", 64
    counts = sorted(int(n) for n in args.epochs.split(","))
    size = args.image_size

    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from benchmarks.data import make_photo_folder

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-finetune-"))
    folder = Path(args.data) if args.data else make_photo_folder(work / "photos", per_class=args.per_class)
    test_folder = make_photo_folder(work / "test", per_class=args.test_per_class, seed=1)
    train_dir, val_dir, split = write_split(folder, work / "split")
    print(f"one split for both sides (zoo's, seed 0): {split.num_train} training, {split.num_val} validation "
          f"images; test: {2 * args.test_per_class} images", flush=True)
    # One set of base weights for both sides, in the official no-top file layout.
    keras.utils.set_random_seed(0)
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(size, size, 3))
    weights_file = work / "resnet50_notop.h5"
    with h5py.File(weights_file, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    del reference

    load = Load()
    rows = {n: {"zoo": [], "keras_io": [], "load_zoo": [], "load_keras_io": []} for n in counts}
    for repeat in range(args.repeats):
        recipe = KerasIoRecipe(train_dir, val_dir, str(weights_file), test_folder, work, image_size=size, seed=0)
        if (recipe.num_train, recipe.num_val) != (split.num_train, split.num_val):
            raise SystemExit(f"the recipe loaded {recipe.num_train}/{recipe.num_val} images, not the split's "
                             f"{split.num_train}/{split.num_val}")
        for n in counts:
            with load.timed(f"zoo, {n} epochs, repeat {repeat + 1}") as part_zoo:
                z = zoo_frozen_phase(folder, str(weights_file), n, work / f"run{n}", test_folder, split,
                                     image_size=size)
            print(f"zoo {n} epochs (load {part_zoo.describe()}):", z, flush=True)
            with load.timed(f"keras-io to epoch {n}, repeat {repeat + 1}") as part_recipe:
                k = recipe.train_to(n)
            print(f"keras-io {n} epochs (load {part_recipe.describe()}):", k, flush=True)
            rows[n]["zoo"].append(z)
            rows[n]["keras_io"].append(k)
            rows[n]["load_zoo"].append(part_zoo.max)
            rows[n]["load_keras_io"].append(part_recipe.max)
        del recipe
        keras.backend.clear_session()

    def median(results, key):
        return statistics.median(r[key] for r in results)

    table = []
    for n in counts:
        z, k = rows[n]["zoo"], rows[n]["keras_io"]
        table.append({
            "epochs": n,
            "zoo_test_accuracy_last": median(z, "test_accuracy_last"),
            "zoo_test_accuracy_best": median(z, "test_accuracy_best"),
            "keras_io_test_accuracy_last": median(k, "test_accuracy_last"),
            "keras_io_test_accuracy_best": median(k, "test_accuracy_best"),
            "zoo_best_epoch": [r["best_epoch"] for r in z],
            "keras_io_best_epoch": [r["best_epoch"] for r in k],
            "zoo_frozen_phase_seconds": median(z, "phase1_seconds"),
            "zoo_command_seconds": median(z, "seconds"),
            "keras_io_seconds": median(k, "seconds"),
            "keras_io_checkpoint_seconds": median(k, "checkpoint_seconds"),
            "speedup_frozen_phase": median(k, "seconds") / median(z, "phase1_seconds"),
            "speedup_whole_command": median(k, "seconds") / median(z, "seconds"),
            "load_zoo": highest(rows[n]["load_zoo"]),
            "load_keras_io": highest(rows[n]["load_keras_io"]),
        })
    figures = {
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "images": 2 * args.per_class, "train": split.num_train, "val": split.num_val,
        "test": 2 * args.test_per_class, "image_size": size,
        "repeats": args.repeats,
        "keras_io_epoch_seconds_median": statistics.median(
            r["epoch_seconds_median"] for n in counts for r in rows[n]["keras_io"]),
        "zoo_head_epoch_seconds_median": statistics.median(
            r["head_epoch_seconds_median"] for n in counts for r in rows[n]["zoo"]),
        "table": table,
        "load": load.as_dict(),
    }
    print(json.dumps(figures, indent=2))

    def pct(value):
        return f"{100 * value:.1f} %"

    def epochs_list(values):
        return ", ".join(str(v) for v in values)

    print(f"\n{time.strftime('%Y-%m-%d')}, {figures['machine']}, Keras {keras.__version__}, {args.repeats} repeat(s), "
          f"{split.num_train} training / {split.num_val} validation images (one split), "
          f"{2 * args.test_per_class} test images, {size} px. Test accuracy at the last epoch / at the best epoch "
          f"by validation accuracy (which epoch in brackets); load = highest 1-minute load average during "
          f"zoo's part / the recipe's.\n")
    print("| frozen epochs | zoo: last / best (epoch) | keras-io: last / best (epoch) | zoo frozen phase "
          "| keras-io fit | speed-up: phase / whole command | load |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['epochs']} "
              f"| {pct(row['zoo_test_accuracy_last'])} / {pct(row['zoo_test_accuracy_best'])} "
              f"({epochs_list(row['zoo_best_epoch'])}) "
              f"| {pct(row['keras_io_test_accuracy_last'])} / {pct(row['keras_io_test_accuracy_best'])} "
              f"({epochs_list(row['keras_io_best_epoch'])}) "
              f"| {row['zoo_frozen_phase_seconds']:.1f} s | {row['keras_io_seconds']:.1f} s "
              f"| {row['speedup_frozen_phase']:.1f}× / {row['speedup_whole_command']:.1f}× "
              f"| {text(row['load_zoo'])} / {text(row['load_keras_io'])} |")
    print(f"\nkeras-io: {figures['keras_io_epoch_seconds_median']:.2f} s per epoch (median), its best-epoch "
          f"checkpoint writes {statistics.median(r['keras_io_checkpoint_seconds'] for r in table):.2f} s more "
          f"(median over the rows, not in its fit seconds); zoo: {figures['zoo_head_epoch_seconds_median']:.2f} s "
          f"per head epoch (median, checkpoint included)")
    load.verdict()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
