"""Do the recipe options help where regularisation matters? LeNet-5 from scratch on 20
real digits per class (scikit-learn's, 10 classes), held-out accuracy on the 360 digits
of the fixed test split, 5 seeds per setting.

Each setting is a `zoo.train("image-classification", ...)` run on the same folder with
the same settings except the option under test: `--weights none` (LeNet-5 from
scratch), 30 epochs, batch 16, lr 1e-2, 20 % of each class held out for validation
(the kept model is the best epoch by validation accuracy, as always). A seed decides
the split, the initialisation and the order; the settings alternate within each seed.

- baseline: no option;
- label smoothing 0.1 (`--label-smoothing 0.1`);
- MixUp, alpha 0.2 (`--mixup 0.2`);
- CutMix, alpha 1.0 (`--cutmix 1.0`);
- EMA of the weights, decay 0.99 (`--ema 0.99`; kept when it scores better on
  validation).

The figures are accuracies, not times; the load is printed for the record.

Run:  PYTHONPATH=. python benchmarks/recipes.py [--seeds 0 1 2 3 4] [--epochs 30]
      PYTHONPATH=. python benchmarks/recipes.py --smoke   # tiny: checks the script end to end
Results go in benchmarks/README.md, section "Recipes".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.load import Load  # noqa: E402

SETTINGS = {"baseline": {}, "label smoothing 0.1": {"label_smoothing": 0.1}, "mixup 0.2": {"mixup": 0.2},
            "cutmix 1.0": {"cutmix": 1.0}, "ema 0.99": {"ema": 0.99}}


def write_digits(root, images, labels, per_class):
    from PIL import Image

    for digit in range(10):
        folder = Path(root) / f"digit_{digit}"
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images[labels == digit][:per_class]):
            Image.fromarray(image).save(folder / f"{index}.png")
    return Path(root)


def held_out_accuracy(run, x_test, y_test):
    probabilities = np.asarray(run.model.predict(x_test, verbose=0))
    names = run.classes  # digit_0 ... digit_9
    predicted = np.array([int(names[i].split("_")[1]) for i in probabilities.argmax(1)])
    return float(np.mean(predicted == y_test))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="one seed, 2 epochs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs = [0], 2

    import zoo
    from zoo.data.digits import load_digits_28, train_test_split_digits

    x, y = load_digits_28()
    x_train, x_test, y_train, y_test = train_test_split_digits(x, y)
    load = Load()
    scores = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as work:
        folder = write_digits(Path(work) / "digits", x_train, y_train, args.per_class)
        for seed in args.seeds:
            names = list(SETTINGS)[seed % len(SETTINGS):] + list(SETTINGS)[:seed % len(SETTINGS)]  # order rotates
            for name in names:
                with load.timed(f"{name}, seed {seed}"):
                    run = zoo.train("image-classification", folder, model="lenet5", weights="none",
                                    epochs=args.epochs, batch_size=16, lr=1e-2, seed=seed,
                                    out=Path(work) / f"run-{seed}-{name.replace(' ', '-')}",
                                    verbose=0, no_tensorboard=True, **SETTINGS[name])
                scores[name].append(held_out_accuracy(run, x_test, y_test))
                print(f"seed {seed}, {name}: held-out accuracy {scores[name][-1]:.4f}", flush=True)

    print(f"\nLeNet-5 from scratch, {args.per_class} digits per class, {args.epochs} epochs, "
          f"{len(args.seeds)} seeds, held-out accuracy on {len(y_test)} digits:\n")
    print("| setting | mean | std | min | max | per seed |")
    print("|---|---|---|---|---|---|")
    for name, values in scores.items():
        values = np.array(values) * 100
        print(f"| {name} | {values.mean():.1f} % | {values.std():.1f} | {values.min():.1f} | {values.max():.1f} | "
              f"{', '.join(f'{v:.1f}' for v in values)} |")
    load.verdict()


if __name__ == "__main__":
    main()
