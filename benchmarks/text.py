"""Character-level text generation on Tiny Shakespeare: held-out loss (nats/char)
against training time, zoo's `char-lstm` beside keras-io's character-LSTM recipe, with
the same time budget in the same script.

zoo: `zoo.train("text-generation", TEXT, minutes=M)` as a user runs it (embedding 64, LSTM
384, dropout 0.2, next-character loss at every position of 100-character windows, batches of 32, Adam 5e-3
annealed linearly to zero by the budget, gradient clipping), scored on the held-out
10 % after every epoch.

The peer, keras-io's "Character-level text generation with LSTM": one-hot windows of
40 characters taken every 3, the 41st character as the only target, LSTM 128, softmax,
RMSprop 0.01, batch 128. It trains on windows from the same first 90 % and is scored
on the same held-out 10 % (every held-out position with its 40 preceding characters)
every `--eval-seconds` of training; evaluation time is not counted as training time.

Both sides' clocks count training only. The machine is shared, so the highest 1-minute
load average while each side trained is printed beside its row (benchmarks/load.py),
and the comparison is at equal training time in the same run.

Run:  PYTHONPATH=. python benchmarks/text.py [--text ../shared/data/tinyshakespeare.txt]
          [--minutes 15] [--plot benchmarks/text_curve.png] [--json FILE]
      PYTHONPATH=. python benchmarks/text.py --smoke   # tiny: checks the script end to end (no plot)
Results go in benchmarks/README.md, section "Text generation".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load import Load, text as load_text  # noqa: E402

HELD_OUT = 0.1
PEER_WINDOW, PEER_STEP, PEER_UNITS, PEER_BATCH, PEER_LR = 40, 3, 128, 128, 0.01


def run_zoo(text, minutes, units, workdir):
    import zoo

    started = time.time()
    run = zoo.train("text-generation", text, out=Path(workdir) / "zoo", minutes=minutes, units=units, verbose=2,
                    no_tensorboard=True)
    points, clock = [], 0.0
    for record in run.metrics["history"]:
        clock += record["seconds"]
        points.append((clock, record["val_loss"]))
    return {"points": points, "wall": time.time() - started, "best": run.metrics["val_nats_per_char"],
            "params": run.model.count_params(), "epochs": len(points),
            "sample": run.generate("ROMEO:", temperature=0.8, length=300, seed=1)}


def run_peer(text_path, minutes, eval_seconds):
    import keras

    text = Path(text_path).read_text(encoding="utf-8")
    vocabulary = sorted(set(text))
    index = {c: i for i, c in enumerate(vocabulary)}
    ids = np.array([index[c] for c in text], dtype="int32")
    split = int(len(ids) * (1 - HELD_OUT))
    train_ids, val_ids = ids[:split], ids[split - PEER_WINDOW:]  # held-out targets keep their 40 characters before
    starts = np.arange(0, len(train_ids) - PEER_WINDOW, PEER_STEP)
    vocab = len(vocabulary)
    # keras-io materialises the one-hot windows as bool arrays.
    x = np.zeros((len(starts), PEER_WINDOW, vocab), dtype="bool")
    y = np.zeros((len(starts), vocab), dtype="bool")
    for n, s in enumerate(starts):
        x[n, np.arange(PEER_WINDOW), train_ids[s:s + PEER_WINDOW]] = True
        y[n, train_ids[s + PEER_WINDOW]] = True
    val_starts = np.arange(0, len(val_ids) - PEER_WINDOW)
    val_x = np.zeros((len(val_starts), PEER_WINDOW, vocab), dtype="bool")
    for n, s in enumerate(val_starts):
        val_x[n, np.arange(PEER_WINDOW), val_ids[s:s + PEER_WINDOW]] = True
    val_y = val_ids[PEER_WINDOW:PEER_WINDOW + len(val_starts)]

    model = keras.Sequential([keras.Input((PEER_WINDOW, vocab)), keras.layers.LSTM(PEER_UNITS),
                              keras.layers.Dense(vocab, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=PEER_LR))

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.trained, self.points, self.next_eval = 0.0, [], eval_seconds

        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.trained += time.perf_counter() - self.t0
            if self.trained >= self.next_eval or self.trained >= minutes * 60:
                probabilities = self.model.predict(val_x, batch_size=1024, verbose=0)
                nats = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(val_y)), val_y], 1e-12, 1))))
                self.points.append((self.trained, nats))
                print(f"peer {self.trained:7.1f} s  held-out {nats:.4f} nats/char", flush=True)
                self.next_eval += eval_seconds
            if self.trained >= minutes * 60:
                self.model.stop_training = True

    clock = Clock()
    started = time.time()
    model.fit(x, y, batch_size=PEER_BATCH, epochs=1000, callbacks=[clock], verbose=0)
    return {"points": clock.points, "wall": time.time() - started, "best": min(p[1] for p in clock.points),
            "params": model.count_params(), "windows": len(starts)}


def value_at(points, t):
    """The last score recorded at or before training time `t` (None before the first)."""
    earlier = [v for s, v in points if s <= t + 1.0]  # a score taken within a second of the mark counts
    return earlier[-1] if earlier else None


def plot(zoo_side, peer, minutes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for side, label, style in ((zoo_side, "zoo char-lstm (LSTM 384, dropout 0.2, Adam, time-annealed)", "-o"),
                               (peer, "keras-io recipe (one-hot 40, LSTM 128, RMSprop 0.01)", "--s")):
        ax.plot([p[0] / 60 for p in side["points"]], [p[1] for p in side["points"]], style, ms=3, label=label)
    ax.axhline(1.50, color="gray", lw=1, ls=":", label="goal 1.50 nats/char")
    ax.set_xlabel("training time (minutes, 2 CPU cores)")
    ax.set_ylabel("held-out loss (nats/char)")
    ax.set_title("Tiny Shakespeare, last 10 % held out")
    ax.set_xlim(0, minutes * 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default="../shared/data/tinyshakespeare.txt")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--units", type=int, default=384)
    parser.add_argument("--eval-seconds", type=float, default=60.0)
    parser.add_argument("--plot", default="benchmarks/text_curve.png")
    parser.add_argument("--json")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: the first 40,000 characters, 0.25 minutes a side, LSTM 64, no plot "
                             "(checks the script, figures mean nothing)")
    args = parser.parse_args(argv)

    load = Load()
    with tempfile.TemporaryDirectory() as workdir:
        if args.smoke:
            small = Path(workdir) / "small.txt"
            small.write_text(Path(args.text).read_text(encoding="utf-8")[:40_000], encoding="utf-8")
            args.text, args.minutes, args.units, args.eval_seconds, args.plot = str(small), 0.25, 64, 5.0, None
        with load.timed("zoo text-generation") as zoo_part:
            zoo_side = run_zoo(args.text, args.minutes, args.units, workdir)
        with load.timed("keras-io character LSTM") as peer_part:
            peer = run_peer(args.text, args.minutes, args.eval_seconds)
    loads = {"zoo": zoo_part.max, "peer": peer_part.max}

    marks = [m for m in range(1, int(args.minutes) + 1)] or [args.minutes]
    print(f"\n{'minute':>6} {'zoo':>8} {'peer':>8}")
    rows = []
    for m in marks:
        z, p = value_at(zoo_side["points"], m * 60), value_at(peer["points"], m * 60)
        rows.append({"minute": m, "zoo": z, "peer": p})
        print(f"{m:>6} {z if z is None else round(z, 4)!s:>8} {p if p is None else round(p, 4)!s:>8}")
    both = [r for r in rows if r["zoo"] is not None and r["peer"] is not None]
    lower_everywhere = all(r["zoo"] < r["peer"] for r in both)
    print(f"zoo best {zoo_side['best']:.4f} nats/char ({zoo_side['best'] / math.log(2):.3f} bits) in "
          f"{zoo_side['points'][-1][0] / 60:.1f} min, {zoo_side['epochs']} epochs, {zoo_side['params']:,} params")
    print(f"peer best {peer['best']:.4f} nats/char in {peer['points'][-1][0] / 60:.1f} min, {peer['params']:,} params")
    print(f"zoo lower at every minute both have a score: {lower_everywhere}")
    print(f"load (the highest 1-minute load average while the side trained): zoo {zoo_part.describe()}, "
          f"keras-io recipe {peer_part.describe()}")
    print("\n| minute | " + " | ".join(str(m) for m in marks) + " | load |")
    print("|---" * (len(marks) + 2) + "|")
    for side, label in (("zoo", "zoo"), ("peer", "keras-io recipe")):
        cells = " | ".join("—" if r[side] is None else f"{r[side]:.3f}" for r in rows)
        print(f"| {label} | {cells} | {load_text(loads[side])} |")
    print("\nzoo sample (ROMEO:, T=0.8):\n" + zoo_side["sample"])
    if args.plot:
        plot(zoo_side, peer, args.minutes, args.plot)
    load.verdict()
    if args.json:
        Path(args.json).write_text(json.dumps({"zoo": zoo_side, "peer": peer, "rows": rows, "loads": loads,
                                               "load": load.as_dict(), "lower_everywhere": lower_everywhere},
                                              indent=2))


if __name__ == "__main__":
    main()
