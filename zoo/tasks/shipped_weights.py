"""The recipes that train the weights zoo ships (LeNet-5 on scikit-learn's digits).

    python -m zoo.tasks.shipped_weights lenet5 --out weights/

writes `weights/lenet5_digits.weights.h5` and records its sha256 in the manifest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from zoo.data.digits import load_digits_28, shifted_copies, train_test_split_digits


def _train_on_digits(build, classes, epochs, seed, verbose):
    """Train `build()` on the training split's `classes` (with shifted copies); return
    the model and its accuracy on the held-out split's `classes`."""
    import keras

    from zoo.training import Defaults, Tracking, fit

    keras.utils.set_random_seed(seed)
    images, labels = load_digits_28()
    x_train, x_test, y_train, y_test = train_test_split_digits(images, labels)
    keep_train, keep_test = np.isin(y_train, classes), np.isin(y_test, classes)
    x_train, y_train = shifted_copies(x_train[keep_train], y_train[keep_train])
    model = build()
    # The shared training path, with the classifier's defaults; no validation data, so
    # the shipped weights are the last epoch's (nothing is chosen on the held-out split).
    fit(model, (x_train, y_train), epochs=epochs, batch_size=64, defaults=Defaults.classifier(2e-3),
        tracking=Tracking.off(), verbose=verbose)
    predicted = np.argmax(np.asarray(model.predict(x_test[keep_test], verbose=0)), axis=-1)
    accuracy = float(np.mean(predicted == y_test[keep_test]))
    return model, accuracy


def train_lenet5(epochs=12, seed=0, verbose=0):
    """Train LeNet-5 from scratch on the digits' training split (with shifted copies).

    Returns:
        `(model, held_out_accuracy)`.
    """
    import zoo

    return _train_on_digits(lambda: zoo.create("lenet5", weights=None), range(10), epochs, seed, verbose)


def train_lenet5_digits04(epochs=12, seed=0, verbose=0):
    """Pre-train LeNet-5 on digits 0-4 only (the transfer experiment's source task).

    Returns:
        `(model, held_out_accuracy_on_0_to_4)`.
    """
    import keras

    import zoo

    def build():
        base = zoo.create("lenet5", weights=None, include_top=False)
        head = keras.layers.Dense(5, activation="softmax", name="predictions")(base.outputs[0])
        return keras.Model(base.inputs[0], head, name="lenet5")

    return _train_on_digits(build, range(5), epochs, seed, verbose)


RECIPES = {
    # recipe: (trainer, file name, variant, head classes, what it was trained on)
    "lenet5": (train_lenet5, "lenet5_digits.weights.h5", "digits", 10, "digits 0-9"),
    "lenet5-digits04": (train_lenet5_digits04, "lenet5_digits04.weights.h5", "digits04", 5, "digits 0-4 only"),
}


def _record(weights_dir: Path, entry: dict):
    """Put `entry` into the manifest, replacing the one for the same model and variant."""
    manifest_path = weights_dir / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["variants"] = [
        v for v in data["variants"]
        if (v["model"], v["variant"]) != (entry["model"], entry["variant"])
    ] + [entry]
    manifest_path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv=None):
    from zoo.weights import file_hash

    parser = argparse.ArgumentParser(prog="python -m zoo.tasks.shipped_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--out", default="weights", help="the weights/ folder holding manifest.json")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    out = Path(args.out)
    trainer, filename, variant, classes, trained_on = RECIPES[args.recipe]
    model, accuracy = trainer(epochs=args.epochs, seed=args.seed, verbose=2)
    path = out / filename
    model.save_weights(path)
    entry = {
        "model": "lenet5",
        "variant": variant,
        "include_top": True,
        "num_classes": classes,
        "url": None,
        "file": path.name,
        "hash": "sha256:" + file_hash(path),
        "size": path.stat().st_size,
        "license": "Apache-2.0 (zoo); data: scikit-learn digits (UCI, CC BY 4.0)",
        "origin": f"trained by zoo on scikit-learn's digits upsampled to 28x28 ({trained_on})",
        "recipe": f"python -m zoo.tasks.shipped_weights {args.recipe} --out {args.out} --epochs {args.epochs} --seed {args.seed}",
        "held_out_accuracy": round(accuracy, 4),
    }
    _record(out, entry)
    print(f"held-out accuracy {accuracy:.4f}; wrote {path} ({entry['hash']})")


if __name__ == "__main__":
    main()
