"""The run directory: what a training writes and how it is loaded back.

    RUN_DIR/
      run.json         kind, settings, zoo version (written when the run starts)
      model.keras      the trained model (the best epoch's weights, see metrics.json)
      last.weights.h5  the last epoch's weights, when they are not the best epoch's
      metrics.json     per-epoch history, best epoch, final validation metrics
      classes.json     (classifiers) class names, index order
      *.png            curves, confusion matrix, top losses ...
      logs/            TensorBoard event files
      checkpoints/     per-epoch state for --resume, removed once the run has finished

Every file is written atomically (`zoo.io`). A finished run is never overwritten
unasked: `prepare` refuses and names the choices. Which `Run` class a directory loads
as depends on its kind: see `zoo.tasks.load_run`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from zoo import io
from zoo.errors import ZooError
from zoo.registry import canonical_task

MODEL_FILE = "model.keras"
LAST_WEIGHTS_FILE = "last.weights.h5"
EMA_WEIGHTS_FILE = "ema.weights.h5"  # --ema: the moving average of the weights
CLASSES_FILE = "classes.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
RUN_FILES = (MODEL_FILE, LAST_WEIGHTS_FILE, EMA_WEIGHTS_FILE, CLASSES_FILE, RUN_FILE, METRICS_FILE, "skipped.txt",
             "curves.png", "confusion_matrix.png", "top_losses.png", "lr_find.png", "vocabulary.json", "samples.txt",
             "samples.png", "reconstructions.png", "denoising.png", "interpolation.png")
RUN_FOLDERS = (CHECKPOINTS, LOGS, "samples")


class RunError(ZooError):
    """A run directory that cannot be used as asked (finished, a file, other settings)."""


def _uncompiled_twin(model):
    """A model sharing `model`'s layers and weights but not its optimizer: a finished run
    needs no optimizer state (Adam's two slots would triple a file: a 2-class ResNet50's
    weights file was 283 MB instead of 94), which lives only in the checkpoints."""
    import keras

    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    return keras.Model(inputs, outputs, name=model.name)


def save_model(model, path):
    """Save `model` (architecture + weights, no optimizer state) to a `.keras` file atomically."""
    with io.atomic_path(path) as tmp:
        _uncompiled_twin(model).save(tmp)
    return Path(path)


def save_weights(model, path):
    """Save `model`'s weights (no optimizer state) to a `.weights.h5` file atomically."""
    with io.atomic_path(path) as tmp:
        _uncompiled_twin(model).save_weights(tmp)
    return Path(path)


def status(run_dir):
    """`"absent"`, `"empty"` (a directory holding no run), `"unfinished"`, `"finished"`."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return "absent"
    if (run_dir / MODEL_FILE).is_file():
        return "finished"
    if (run_dir / RUN_FILE).is_file():
        return "unfinished"
    return "empty"


def prepare(run_dir, resume=False, overwrite=False):
    """Check `run_dir` before a training writes into it; returns True when resuming.

    A finished run is refused unless `overwrite`; an unfinished one unless `resume`
    (continue it) or `overwrite` (start again); `--out` naming a file is refused.

    Raises:
        RunError: one line naming the directory and the choices.
    """
    resuming = check_out(run_dir, resume=resume, overwrite=overwrite)
    if overwrite:
        clear(run_dir)
    elif resuming:
        io.remove_stale_temporaries(run_dir)  # what a kill left mid-write (a sample PNG, a checkpoint)
    return resuming


def check_out(run_dir, resume=False, overwrite=False):
    """`prepare`'s checks, changing nothing (the CLI asks before TensorFlow starts)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"`out` must be a directory; {run_dir} is a file. Give another --out.")
    state = status(run_dir)
    if overwrite:
        if resume:
            raise RunError("Pass either --resume or --overwrite, not both.")
        return False
    if state == "finished":
        raise RunError(
            f"{run_dir} already holds a finished run (model.keras): refusing to overwrite it. "
            "Pass --overwrite to replace it, or another --out."
        )
    if state == "unfinished":
        if resume and (run_dir / CHECKPOINTS).is_dir():
            return True
        if resume:
            raise RunError(f"{run_dir} holds an unfinished run with no checkpoint to resume from. "
                           "Pass --overwrite to start again, or another --out.")
        raise RunError(
            f"{run_dir} holds an unfinished run. Pass --resume to continue it, --overwrite to start "
            "again, or another --out."
        )
    if resume:
        raise RunError(f"Nothing to resume in {run_dir}: it holds no run. Leave out --resume to start one.")
    return False


def abandon(run_dir, existed):
    """Take back what a new run wrote before it could train an epoch (a refused text,
    a model that would not build, Ctrl-C in the first epoch): with no checkpoint there
    is nothing to resume, and a half run would only make the next try need
    --overwrite. A folder the run made goes; one that was there keeps what the user
    put in it. A run with a checkpoint is kept for --resume."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / CHECKPOINTS).is_dir() or (run_dir / MODEL_FILE).is_file():
        return
    clear(run_dir)
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)


def clear(run_dir):
    """Remove what a run writes (and only that) from `run_dir`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for name in RUN_FOLDERS:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    # Only names a run writes: --overwrite on a folder that also holds a user's own
    # files must not take them with it.
    for path in run_dir.iterdir():
        if path.is_file() and (path.name in RUN_FILES or path.name.startswith(".") and ".tmp" in path.name):
            path.unlink()


def check_resume(saved, given):
    """Settings for a resumed run: `saved`, with `given` (not None) required to agree.

    Raises:
        RunError: naming the first setting that differs from the run's.
    """
    for key, value in given.items():
        if value is None or key not in saved:
            continue
        if _normalise(saved[key]) != _normalise(value):
            raise RunError(
                f"--resume continues the run as it was started, but `{key}` differs: the run has "
                f"{key}={saved[key]!r}. Received: {key}={value!r}. Leave it out, or pass --overwrite "
                "to start a new run."
            )
    return {**saved, **{k: v for k, v in given.items() if v is not None and k not in saved}}


def _normalise(value):
    if isinstance(value, (tuple, list)):
        return [_normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def write_config(run_dir, kind, config):
    from zoo import __version__

    io.write_json(Path(run_dir) / RUN_FILE, {"kind": kind, "zoo_version": __version__, **config})


def read_config(run_dir):
    return io.read_json(Path(run_dir) / RUN_FILE, {}, expect=dict)


def read_metrics(run_dir):
    """A finished run's scores; a damaged metrics.json costs its scores (one line on
    stderr), not the run: the model beside it still predicts and exports."""
    try:
        return io.read_json(Path(run_dir) / METRICS_FILE, {}, expect=dict)
    except ZooError as error:
        import sys

        print(f"warning: {error} The run's scores are not shown; its model is used as it is.", file=sys.stderr)
        return {}


def open_run(run_dir, kind, ranks):
    """`(model, config, metrics)` of the finished run in `run_dir`, checked to be a
    `kind` run: its model takes inputs of rank `ranks[0]` and gives outputs of rank
    `ranks[1]` (each task's are distinct), so a run.json whose kind was edited is
    named in one line instead of failing somewhere inside the wrong task."""
    model = load_model(run_dir)
    shape_in, shape_out = model.inputs[0].shape, model.outputs[0].shape
    if (len(shape_in), len(shape_out)) != tuple(ranks):
        raise RunError(f"{run_dir} is not a {kind} run, as its run.json says: its model maps "
                       f"{tuple(shape_in)} to {tuple(shape_out)}, and a {kind} model maps rank {ranks[0]} "
                       f"to rank {ranks[1]}. Was run.json edited?")
    return model, read_config(run_dir), read_metrics(run_dir)


@dataclass
class Run:
    """A finished (or interrupted) training run, loaded from its directory."""

    path: Path
    model: object
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def kind(self):
        """The run's task (`"image-classification"`, ...); a run that recorded an old
        name (`"classifier"`) gives today's."""
        kind = self.config.get("kind")
        return canonical_task(kind) if kind is not None else None

    def load_last(self):
        """The model with the last epoch's weights (model.keras holds the best epoch's)."""
        last = Path(self.path) / LAST_WEIGHTS_FILE
        if not last.is_file():
            return self.model
        import keras

        model = keras.models.clone_model(self.model)
        model.load_weights(last)
        return model


def load_model(run_dir):
    run_dir = Path(run_dir)
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise RunError(f"{run_dir} is not a finished zoo run directory: {model_path} is missing.")
    return load_model_file(model_path)


# The modules whose Keras classes (`register_keras_serializable(package="zoo")`) a saved
# zoo model may hold: importing one registers its classes, so loading finds them.
KERAS_CLASS_MODULES = ("zoo.architectures.preprocessing", "zoo.architectures.autoencoder", "zoo.architectures.dcgan",
                       "zoo.architectures.style_transfer", "zoo.training.schedules", "zoo.training.optimizers")


def load_model_file(model_path, trust_remote_code=None):
    """A `.keras` file (zoo's layers, schedules and optimizers known), in safe mode.

    Loading never downloads: a hub layer loads the module's local directory recorded in
    the file (or tensorflow-hub's cached copy), and a URL it would have to fetch is
    refused (`zoo.transfer.hub.RemoteCodeError`, one line) unless `trust_remote_code`.

    Args:
        model_path: str or Path. The `.keras` file.
        trust_remote_code: bool or None. Let a hub layer download the module its URL
            names, and so run that module's graph: only for files you trust. Defaults to
            `None`: as the enclosing `zoo.transfer.hub.trust_remote_code()` block says
            (not trusted outside one).
    """
    import contextlib
    import importlib
    import sys

    import keras

    for module in KERAS_CLASS_MODULES:
        importlib.import_module(module)
    model_path = Path(model_path)
    if not model_path.is_file():
        raise RunError(f"No such model file: {model_path}")
    trust = contextlib.nullcontext()
    if _holds_hub_layer(model_path) or "zoo.transfer.hub" in sys.modules:
        import zoo.transfer.hub  # (registers HubLayer; a hub module needs TensorFlow)

        if trust_remote_code is not None:
            trust = zoo.transfer.hub.trust_remote_code(trust_remote_code)
    try:
        with trust:
            return keras.saving.load_model(model_path, compile=False)
    except ZooError as error:  # a hub layer's one line (a refused URL, a missing module)
        raise type(error)(f"{model_path}: {error}") from None
    except ValueError as error:
        if "safe_mode" in str(error) or "Lambda" in str(error):
            # Keras' safe mode refuses code stored in a model file (a Lambda layer's
            # bytecode): loading it would run whatever the file's author wrote.
            raise RunError(f"Refusing to load {model_path}: it holds Python code (a Lambda layer), which "
                           "could run anything. Load it yourself with keras.saving.load_model(..., "
                           "safe_mode=False) only if you trust where it came from.") from None
        raise RunError(f"{model_path} cannot be loaded: {str(error).splitlines()[0]}") from None


def _holds_hub_layer(model_path):
    import zipfile

    try:
        with zipfile.ZipFile(model_path) as archive:
            return b'"HubLayer"' in archive.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def save_run(run_dir, model, classes=None, config=None, metrics=None, kind="image-classification"):
    """Write a run directory for a model trained elsewhere (so `zoo export`,
    `zoo predict` and `zoo.load_run` take it like one `zoo train` wrote)."""
    run_dir = Path(run_dir)
    save_model(model, run_dir / MODEL_FILE)
    if classes is not None:
        io.write_json(run_dir / CLASSES_FILE, list(classes))
    write_config(run_dir, kind, config or {})
    if metrics is not None:
        io.write_json(run_dir / METRICS_FILE, metrics)
    return run_dir
