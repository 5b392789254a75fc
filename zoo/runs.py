"""The run directory: what a training writes and how it is loaded back.

    RUN_DIR/
      model.keras      the trained model (uint8 RGB in, probabilities out)
      classes.json     class names, index order
      run.json         base model name, image size, settings, zoo version
      metrics.json     per-epoch history and the final validation metrics
      *.png            curves, confusion matrix, top losses
      checkpoints/     per-epoch state for --resume

Everything is written to a temporary file first and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import ZooError

MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"


def atomic_write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def save_model_atomic(model, path):
    """Save `model` (architecture + weights, no optimizer state) to a `.keras` file atomically."""
    import keras

    # An uncompiled twin sharing the layers: inference needs no optimizer state, which
    # would double or triple the file and tie loading to training-only classes.
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    model = keras.Model(inputs, outputs, name=model.name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass
class Run:
    """A finished (or interrupted) training run, loaded from its directory."""

    path: Path
    model: object
    classes: list
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def image_size(self):
        return tuple(self.model.inputs[0].shape[1:3])

    def predict(self, images, top=1):
        """Label and probability for each image (paths or arrays), like fastai's
        `learn.predict`."""
        from zoo.inference import classify

        return classify(images, model=self.model, labels=self.classes, top=top)


def save_run(run_dir, model, classes, config=None, metrics=None):
    from zoo import __version__

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model_atomic(model, run_dir / MODEL_FILE)
    atomic_write_json(run_dir / CLASSES_FILE, list(classes))
    atomic_write_json(run_dir / RUN_FILE, {"zoo_version": __version__, **(config or {})})
    if metrics is not None:
        atomic_write_json(run_dir / METRICS_FILE, metrics)
    return run_dir


def load_run(run_dir) -> Run:
    """Load a run directory written by `zoo finetune` (or `save_run`)."""
    import keras

    import zoo.preprocessing  # noqa: F401  (registers the Preprocess layer)
    import zoo.transfer  # noqa: F401  (registers zoo's schedules and optimizers)

    run_dir = Path(run_dir)
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise ZooError(f"{run_dir} is not a zoo run directory: {model_path} is missing.")
    model = keras.saving.load_model(model_path, compile=False)
    classes = json.loads((run_dir / CLASSES_FILE).read_text())
    config = _read_json(run_dir / RUN_FILE)
    metrics = _read_json(run_dir / METRICS_FILE)
    return Run(path=run_dir, model=model, classes=classes, config=config, metrics=metrics)


def _read_json(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}
