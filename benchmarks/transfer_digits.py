"""Does transfer help? Fine-tuning a digits-0-4 base vs training from scratch, on 5-9.

Source task: LeNet-5 pre-trained on real digits 0-4 (shipped: weights/lenet5_digits04,
`python -m zoo.tasks.shipped_weights lenet5-digits04`). Target task: digits 5-9 with 5, 10 and
20 training images per class, evaluated on the held-out split's 5-9 (~180 images).

- fine-tuned: `zoo.transfer.fine_tune`, 5 frozen epochs + 25 unfrozen (base_lr 1e-2,
  lr_mult 3), batch 16.
- from scratch: the same architecture and head (`zoo.create("lenet5", weights=None,
  num_classes=5)`), the same images, the same 30 epochs with a one-cycle schedule; its
  learning rate is the best of 1e-3, 3e-3 and 1e-2 *on the test set* — a deliberately
  generous baseline.

The figures are accuracies, not times; each row still gets the highest 1-minute load
average seen while it trained (benchmarks/load.py), for the record.

Run:  PYTHONPATH=. python benchmarks/transfer_digits.py [--seeds 0 1 2]
      PYTHONPATH=. python benchmarks/transfer_digits.py --smoke   # tiny: checks the script end to end
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.load import Load, highest, text  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--epochs", type=int, default=30, help="epochs in all: 5 frozen + the rest (default: 30)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: 5 per class, seed 0, 6 epochs (checks the script, figures mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.sizes, args.epochs = [0], [5], 6
    frozen = 5

    import keras

    import zoo
    from zoo.data.digits import load_digits_28, train_test_split_digits
    from zoo.transfer import fine_tune, fit_one_cycle, replace_head

    x, y = load_digits_28()
    x_train, x_test, y_train, y_test = train_test_split_digits(x, y)
    pool, test = y_train >= 5, y_test >= 5
    x_pool, y_pool, x_test, y_test = x_train[pool], y_train[pool] - 5, x_test[test], y_test[test] - 5

    def accuracy(model):
        return float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))

    def one_seed(n, seed):
        """(fine-tuned accuracy, best from-scratch accuracy) at `n` images per class."""
        rng = np.random.default_rng(seed)
        index = np.concatenate([rng.choice(np.flatnonzero(y_pool == c), n, replace=False) for c in range(5)])
        xs, ys = x_pool[index], y_pool[index]
        keras.utils.set_random_seed(seed)
        model = replace_head(zoo.create("lenet5", weights="digits04", include_top=False), 5, dropout=0.1)
        fine_tune(model, (xs, ys), epochs=args.epochs - frozen, freeze_epochs=frozen, base_lr=1e-2, lr_mult=3,
                  batch_size=16, verbose=0)
        tuned = accuracy(model)
        best = 0.0
        for lr in (1e-3, 3e-3, 1e-2):
            keras.utils.set_random_seed(seed)
            model = zoo.create("lenet5", weights=None, num_classes=5, head_dropout=0.1)
            fit_one_cycle(model, (xs, ys), epochs=args.epochs, lr=lr, batch_size=16, verbose=0)
            best = max(best, accuracy(model))
        return tuned, best

    load = Load()
    rows = []
    for n in args.sizes:
        tuned, scratch, parts = [], [], []
        for seed in args.seeds:
            with load.timed(f"{n}/class, seed {seed}") as part:
                t, s = one_seed(n, seed)
            tuned.append(t)
            scratch.append(s)
            parts.append(part)
            print(f"{n}/class seed {seed}: fine-tuned {t:.3f}, scratch {s:.3f} ({part.seconds:.0f} s, load {part})",
                  flush=True)
        rows.append({"per_class": n, "fine_tuned": tuned, "scratch": scratch, "load": highest(parts)})

    print(f"\n{args.epochs} epochs ({frozen} frozen + {args.epochs - frozen}); load: the highest 1-minute load "
          f"average while the row trained\n")
    print("| images per class | fine-tuned (mean ± sd) | from scratch (mean ± sd) | load |")
    print("|---|---|---|---|")
    for row in rows:
        t, s = np.array(row["fine_tuned"]) * 100, np.array(row["scratch"]) * 100
        print(f"| {row['per_class']} | {t.mean():.1f} % ± {t.std():.1f} | {s.mean():.1f} % ± {s.std():.1f} "
              f"| {text(row['load'])} |")
    print(json.dumps(rows))
    load.verdict()


if __name__ == "__main__":
    main()
