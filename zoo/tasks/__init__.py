"""One module per kind of training; `zoo train KIND` and `zoo.train(kind, ...)` dispatch here.

A task module declares `KIND`, `DESCRIPTION`, `OPTIONS` (data, so the CLI builds its
parser without importing Keras), `train(data, out=..., **options) -> Run` and
`load_run(path) -> Run`. Adding a kind is one module and one line in `KINDS`.

    run = zoo.train("classifier", "photos/", model="resnet50", epochs=3, out="runs/birds")
    run = zoo.load_run("runs/birds")      # the right Run class for the run's kind
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from zoo.errors import ZooError

KINDS = {
    "classifier": "zoo.tasks.image_classifier",
    "char-lstm": "zoo.tasks.char_lstm",
    "autoencoder": "zoo.tasks.autoencoder",
    "dcgan": "zoo.tasks.dcgan",
}
DEFAULT_KIND = "classifier"  # runs written before run.json recorded a kind


def get(kind):
    """The task module of `kind`."""
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=2)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ZooError(f"`kind` must be one of {', '.join(KINDS)}.{hint} Received: kind={kind!r}")
    return importlib.import_module(KINDS[kind])


def kinds():
    """`{kind: one-line description}`."""
    return {kind: get(kind).DESCRIPTION for kind in KINDS}


def train(kind, data=None, **options):
    """Train a model of `kind` on `data`; returns the finished run (`zoo.runs.Run`).

    Args:
        kind: str. One of `KINDS` (`"classifier"`, …).
        data: what the kind trains on (a folder of images for a classifier).
        **options: the kind's options (see `zoo train KIND --help`), and `out`,
            `resume`, `overwrite`, `seed`, `precision`, `early_stopping`.
    """
    import inspect

    from zoo.distribute import strategy, worker_losses, worker_run_dir

    module = get(kind)
    distribute = options.get("distribute") or "none"
    if distribute == "multiworker":
        # Every worker runs the same command; only the chief writes the run it names.
        out = options.get("out") or inspect.signature(module.train).parameters["out"].default
        options["out"] = worker_run_dir(out, distribute)
        strategy(distribute)  # before anything starts TensorFlow's runtime, which fixes its collectives
    with worker_losses(distribute):
        # The data may also come by its own name (`text=`, `data_dir=`), as the CLI passes it.
        return module.train(**options) if data is None else module.train(data, **options)


def load_run(run_dir):
    """Load a run directory written by `zoo train` / `zoo finetune` as its kind's `Run`."""
    from zoo import runs

    run_dir = Path(run_dir)
    if not (run_dir / runs.MODEL_FILE).is_file():
        raise runs.RunError(f"{run_dir} is not a finished zoo run directory: {run_dir / runs.MODEL_FILE} is missing.")
    kind = runs.read_config(run_dir).get("kind", DEFAULT_KIND)
    return get(kind).load_run(run_dir)
