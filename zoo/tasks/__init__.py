"""One module per task; `zoo train TASK` and `zoo.train(task, ...)` dispatch here.

A task's name is the registry's (`zoo.registry.TASKS`: what `zoo list` shows), so
`zoo list` and `zoo train` speak one word. This file is the tasks' light manifest:
each task's module, one-line description and options, as data, so that the CLI builds
`zoo train TASK --help` and checks arguments without importing the task module (which
imports Keras). A task module declares `KIND` (its name), `DESCRIPTION` and `OPTIONS`
(this manifest's), `train(data, out=..., **options)`, `signatures(...)` (below) and,
when it writes a run directory, `load_run(path) -> Run`. Adding a task is one module
and one `Task` below.

Every task owns its serving signatures; `zoo export` (`zoo.serving.export`) is the same
for all of them: source → task → `signatures` → `keras.export.ExportArchive` → an
atomically published `NAME/VERSION/`. The contract:

    endpoints, metadata = task_module.signatures(source, top_k=5, classes=None)

- `source`: the task's `Run` (`load_run` of a run directory) or a bare `keras.Model`
  (a registry model, a `.keras` file, a model passed to `zoo.export`). A task with
  nothing to add to a bare model returns `zoo.tasks.export.model_signatures(model)`:
  `serving_default`, its input (`inputs`) → `outputs`.
- `top_k`: int, labels per answer; `classes`: list of str or None, class names
  overriding the run's. Only a classifier uses them; other tasks take and ignore them.
- `endpoints`: `{signature_name: (function, description)}`. `function` is a
  `tf.function` with an `input_signature` whose tensor names are the signature's
  input names, returning a dict of named outputs. `description` is what zoo.json
  records for the signature: `inputs` and `outputs` (lists of names) and any keys of
  the task's own (`heatmap_shape`); a `method` key (`"tensorflow/serving/classify"` or
  `".../regress"`) also becomes the SignatureDef's method name, for TF Serving's
  Classify and Regress.
- `metadata`: dict for zoo.json: `classes`, `input_size` (`[height, width]`) and
  `top_k` where the task has them (None otherwise), and any keys of its own. The
  export adds `name`, `model`, `task`, `signatures`, `zoo_version`, `source_run`.

Building the functions traces nothing; a wrong source (a classifier's classes that do
not match its outputs) raises here, before any directory is made.

    run = zoo.train("image-classification", "photos/", model="resnet50", epochs=3, out="runs/birds")
    run = zoo.load_run("runs/birds")      # the right Run class for the run's task

The names `zoo train` took before (`classifier`, `char-lstm`, `dcgan`) still work, with
a one-line note; runs that recorded them load as today's.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ZooError
from zoo.registry import OLD_TASK_NAMES, TASK_ALIASES, canonical_task
from zoo.tasks.base import RUN_OPTIONS, Option


@dataclass(frozen=True)
class Task:
    """What the CLI knows of a task without importing it.

    Attributes:
        name: str. The task's name, one of `zoo.registry.TASKS`.
        module: str. The module that trains it (`zoo.tasks.char_lstm`).
        description: str. One line (the module's `DESCRIPTION`).
        options: tuple of `Option`. Its `zoo train` options (the module's `OPTIONS`).
        writes_run: bool. Whether it writes a run directory (`zoo.load_run`, `zoo
            export`); style transfer writes an image.
    """

    name: str
    module: str
    description: str
    options: tuple
    writes_run: bool = True

    @property
    def old_names(self):
        return tuple(old for old, new in OLD_TASK_NAMES.items() if new == self.name)

    @property
    def aliases(self):
        """Other names it answers to as its own (`segmenter`), listed beside its name."""
        return tuple(alias for alias, name in TASK_ALIASES.items() if name == self.name)

    @property
    def defaults(self):
        """`{option: default}`."""
        return {option.name: option.default for option in self.options}

    def load(self):
        """The task's module (imports Keras)."""
        return importlib.import_module(self.module)


def learning_rate(value):
    """`--lr`: a positive number, or `auto`."""
    if value == "auto":
        return value
    rate = float(value)
    if not rate > 0:
        raise ValueError(value)
    return rate


_DATA_OR_DIGITS = "DIR|digits"

MANIFEST = {task.name: task for task in (
    Task("image-classification", "zoo.tasks.image_classifier",
         "fine-tune a registry image model on a folder of images (one sub-folder per class)", (
             Option("data_dir", str, None, "folder with one sub-folder of images per class", positional=True,
                    metavar="DATA_DIR"),
             Option("model", str, None, "a registry image model (zoo list)", required=True),
             Option("weights", str, None, "imagenet | none | FILE (default: the model's default)"),
             Option("epochs", int, None, "epochs fine-tuning the whole model, after the --freeze-epochs "
                    "(the run trains their sum: --epochs 3 is 4 epochs with the default 1 frozen)", required=True),
             Option("freeze_epochs", int, None,
                    "epochs training the new head on the frozen base (default: 1; 0 from scratch)"),
             Option("image_size", int, None, "input size in pixels (default: the model's)"),
             Option("batch_size", int, None, "default: 32"),
             Option("lr", learning_rate, None,
                    "head learning rate, or auto: run lr-find on the new head first and use its suggestion "
                    "(default: 0.001)"),
             Option("lr_mult", float, None,
                    "head-to-first-layer learning-rate ratio when unfrozen (default: 100; 1 from scratch)"),
             Option("head_dropout", float, None, "dropout before the new head's classifier (default: 0.2)"),
             Option("augment", None, None,
                    "flip/rotate/zoom/contrast training images (the frozen phase then cannot use cached features)"),
             Option("val_split", float, None, "fraction of each class held out for validation (default: 0.2; "
                    "0: none)"),
             Option("val_dir", str, None, "a separate validation folder, its classes named as DATA_DIR's "
                    "(instead of --val-split)", metavar="DIR"),
             Option("label_smoothing", float, None, "train towards 1 - E on the true class and E / K on every "
                    "class (default: 0)", metavar="E"),
             Option("class_weight", str, None, "balanced: weight each class's images by n / (K * n_c), so that "
                    "a rare class counts as much as a common one (default: none)", metavar="balanced"),
             Option("mixup", float, None, "MixUp: blend each training batch with a shuffled copy of itself, "
                    "images and labels, by a weight drawn from Beta(A, A) (default: 0, off; 0.2 is usual)",
                    metavar="A"),
             Option("cutmix", float, None, "CutMix: paste a box of a shuffled copy over each training batch, the "
                    "labels weighted by its area, drawn from Beta(A, A) (default: 0, off; 1.0 is usual)",
                    metavar="A"),
             Option("ema", float, None, "keep an exponential moving average of the weights with this decay "
                    "(e.g. 0.999) while the whole model trains, and keep it as the model when it scores better on "
                    "validation (default: off)", metavar="DECAY"),
             Option("no_bn_recalibration", None, None,
                    "keep BatchNorm's moving averages as training left them (by default, layers that train get "
                    "their statistics recomputed from the training data after every epoch)"),
             *RUN_OPTIONS,
         )),
    Task("image-segmentation", "zoo.tasks.segmenter",
         "label every pixel: a U-Net decoder on a registry image model, on a folder of images/ and masks/", (
             Option("data", str, None, "folder holding images/ and masks/ (one mask per image, the same name; "
                    "palette or 8-bit index PNGs) and optionally codes.txt (the class names, one per line)",
                    required=True, metavar="DIR"),
             Option("model", str, None, "the encoder: a registry image model (zoo list)", required=True),
             Option("weights", str, None, "imagenet | none | FILE (default: the model's default)"),
             Option("epochs", int, None, "epochs fine-tuning the whole model, after the --freeze-epochs",
                    required=True),
             Option("freeze_epochs", int, None,
                    "epochs training the decoder on the frozen encoder (default: 1; 0 from scratch)"),
             Option("image_size", int, None, "input size in pixels (default: the model's)"),
             Option("batch_size", int, None, "default: 16"),
             Option("lr", float, None, "decoder learning rate (default: 0.001)"),
             Option("lr_mult", float, None,
                    "decoder-to-first-layer learning-rate ratio when unfrozen (default: 100; 1 from scratch)"),
             Option("augment", None, None, "flip and crop each image together with its mask, and jitter its "
                    "brightness and contrast"),
             Option("val_split", float, None, "fraction of the images held out for validation (default: 0.2)"),
             Option("ignore_index", int, None, "the mask value that counts for nothing, as the borders of "
                    "Pascal VOC's and Oxford pets' objects (default: 255)"),
             Option("no_bn_recalibration", None, None,
                    "keep BatchNorm's moving averages as training left them (by default, layers that train get "
                    "their statistics recomputed from the training data after every epoch)"),
             *RUN_OPTIONS,
         )),
    Task("text-generation", "zoo.tasks.char_lstm",
         "a character-level LSTM that learns to write like a text file, scored in bits per character", (
             Option("text", str, None, "the UTF-8 text file to learn (the last 10 %% is held out)", required=True,
                    metavar="FILE"),
             Option("epochs", int, None, "passes over the training text (default: 20, or as many as --minutes "
                    "allows)"),
             Option("minutes", float, None, "stop after the last epoch that fits in this much training time, the "
                    "learning rate falling linearly to zero by then (default: off)"),
             Option("seq_len", int, None, "characters per training window (default: 100)"),
             Option("batch_size", int, None, "windows per batch (default: 32)"),
             Option("units", int, None, "LSTM width (default: 384)"),
             Option("layers", int, None, "stacked LSTMs (default: 1)"),
             Option("embedding_dim", int, None, "character embedding width (default: 64)"),
             Option("dropout", float, None, "dropout after each LSTM (default: 0.2)"),
             Option("lr", float, None, "Adam learning rate (default: 0.005)"),
             *RUN_OPTIONS,
         )),
    Task("autoencoder", "zoo.tasks.autoencoder",
         "a convolutional autoencoder (denoising with --noise, a VAE with --variational) on images", (
             Option("data", str, None, "digits (scikit-learn's handwritten digits) or a folder of images",
                    required=True, metavar=_DATA_OR_DIGITS),
             Option("epochs", int, None, "default: 10"),
             Option("noise", float, None, "std of the Gaussian noise added to the input (pixels in [0, 1]): a "
                    "denoising autoencoder (default: 0)"),
             Option("variational", None, None, "a variational autoencoder (VAE): samples and interpolations too"),
             Option("latent_dim", int, None, "size of the code (default: 32)"),
             Option("image_size", int, None, "side of the square images (default: 28 for digits, 64 for a folder)"),
             Option("channels", int, None, "1 (grayscale) or 3 (RGB) (default: 1 for digits, 3 for a folder)"),
             Option("batch_size", int, None, "default: 32"),
             Option("lr", float, None, "Adam learning rate (default: 0.002)"),
             *RUN_OPTIONS,
         )),
    Task("style-transfer", "zoo.tasks.style_transfer",
         "paint a photo in the style of a painting (Gatys et al., VGG19); the same as `zoo style`", (
             Option("content", str, None, "the photo to repaint (any image Pillow opens)", positional=True,
                    metavar="CONTENT"),
             Option("style", str, None, "the picture whose style to take", positional=True, metavar="STYLE"),
             Option("out", str, None, "where the painted image goes (PNG or JPEG)", required=True, metavar="OUT.png"),
             Option("weights", str, "default", "VGG19 weights: a file, a variant name, or none for random "
                    "(default: the store's imagenet)", metavar="FILE"),
             # The TensorFlow tutorial's recipe (see zoo.tasks.style_transfer).
             Option("steps", int, 1000, "optimisation steps (default: 1000)", metavar="N"),
             Option("size", int, 512, "longer side painted at, in pixels; the output keeps the photo's size "
                    "(default: 512)", metavar="S"),
             Option("style_weight", float, 1e-2, "weight of the style loss (default: 0.01)", metavar="W"),
             Option("content_weight", float, 1e4, "weight of the content loss (default: 10000)", metavar="W"),
             Option("tv_weight", float, 30.0, "weight of the total-variation loss (default: 30)", metavar="W"),
             Option("save_every", int, None, "also write the image every N steps as OUT-step0100.png "
                    "(default: only the end)", metavar="N"),
             Option("overwrite", None, False, "replace OUT and its step images if they exist "
                    "(an input is never written over)"),
         ), writes_run=False),
    Task("gan", "zoo.tasks.dcgan",
         "a DCGAN that learns to draw images like a folder of them (or real handwritten digits)", (
             Option("data", str, None, "digits (scikit-learn's real handwritten digits) or a folder of images, "
                    "searched recursively", required=True, metavar=_DATA_OR_DIGITS),
             Option("epochs", int, None, "passes over the training images (default: 50)"),
             Option("batch_size", int, None, "real images per batch (default: 64)"),
             Option("latent_dim", int, None, "length of the generator's latent vector (default: 100)"),
             Option("image_size", int, None, "side of the square images, 7 or 4 times a power of two "
                    "(default: 28 for digits, 64 for a folder)"),
             Option("channels", int, None, "1 (grayscale) or 3 (RGB) (default: 1 for digits, 3 for a folder)"),
             Option("width", int, None, "filters of the generator's last hidden layer and the discriminator's "
                    "first (default: 64)"),
             Option("lr", float, None, "Adam learning rate of both networks, beta_1 0.5 (default: 0.0002)"),
             *RUN_OPTIONS,
         )),
)}
KINDS = {name: task.module for name, task in MANIFEST.items()}  # name -> module, as earlier callers read it
DEFAULT_KIND = "image-classification"  # runs written before run.json recorded a kind


def _default_out(module):
    """Where the task module's `train` writes its run when given no `out`; None when it
    takes no `out` (style transfer writes an image, not a run)."""
    import inspect

    parameter = inspect.signature(module.train).parameters.get("out")
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def canonical(name):
    """The task `name` stands for: itself, or today's name for an old one (`"classifier"`).

    Raises:
        ZooError: not a task, with close matches.
    """
    name = canonical_task(name)
    if name not in MANIFEST:
        close = difflib.get_close_matches(str(name), [*MANIFEST, *OLD_TASK_NAMES, *TASK_ALIASES], n=2)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ZooError(f"`task` must be one of {', '.join(MANIFEST)}.{hint} Received: task={name!r}")
    return name


def renamed_note(name):
    """The one line that says an old task name was used, or None for today's names."""
    if name in OLD_TASK_NAMES:
        return f'zoo: the task "{name}" is now called "{OLD_TASK_NAMES[name]}"; the old name still works'
    return None


def entry(name):
    """The manifest's `Task` for `name` (an old name too), without importing its module."""
    return MANIFEST[canonical(name)]


def get(kind):
    """The task module of `kind` (a task name; old names are taken silently)."""
    return entry(kind).load()


def kinds():
    """`{task: one-line description}`."""
    return {name: task.description for name, task in MANIFEST.items()}


def train(kind, data=None, **options):
    """Train a model for the task `kind` on `data`; returns the finished run (`zoo.runs.Run`).

    Args:
        kind: str. A task name, one of `zoo.registry.TASKS` (`"image-classification"`,
            `"text-generation"`, `"autoencoder"`, `"gan"`, `"style-transfer"`). The old
            names `"classifier"`, `"char-lstm"` and `"dcgan"` still work and print a note.
        data: what the task trains on (a folder of images for a classifier).
        **options: the task's options (see `zoo train TASK --help`), and `out`,
            `resume`, `overwrite`, `seed`, `precision`, `early_stopping`.

    Returns:
        The run (`zoo.runs.Run`); for style transfer, the `StyleResult` (`zoo.style`'s).
    """
    from zoo.training.distribute import strategy, worker_losses, worker_run_dir

    note = renamed_note(kind)
    module = get(kind)
    if note:
        print(note, file=sys.stderr)
    distribute = options.get("distribute") or "none"
    if distribute == "multiworker":
        # Every worker runs the same command; only the chief writes the run it names.
        out = options.get("out") or _default_out(module)
        options["out"] = worker_run_dir(out, distribute)
        strategy(distribute)  # before anything starts TensorFlow's runtime, which fixes its collectives
    out = options.get("out") or _default_out(module)
    new_run = isinstance(out, (str, os.PathLike)) and not options.get("resume") and MANIFEST[canonical(kind)].writes_run
    existed = new_run and Path(out).exists()
    try:
        with worker_losses(distribute):
            # The data may also come by its own name (`text=`, `data_dir=`), as the CLI passes it.
            return module.train(**options) if data is None else module.train(data, **options)
    except BaseException as error:
        # A run refused before its first epoch leaves nothing behind (a folder it did
        # not make keeps the user's own files). A refusal of the directory itself
        # (finished, unfinished, a file) is about what is there: it is left alone.
        from zoo import runs

        if new_run and not isinstance(error, runs.RunError):
            runs.abandon(out, existed)
        raise


def load_run(run_dir):
    """Load a run directory written by `zoo train` / `zoo finetune` as its task's `Run`."""
    from zoo import runs

    run_dir = Path(run_dir)
    if not (run_dir / runs.MODEL_FILE).is_file():
        raise runs.RunError(f"{run_dir} is not a finished zoo run directory: {run_dir / runs.MODEL_FILE} is missing.")
    kind = runs.read_config(run_dir).get("kind", DEFAULT_KIND)
    if not isinstance(kind, str) or canonical_task(kind) not in MANIFEST:
        raise runs.RunError(f"{run_dir}/run.json names no task zoo knows (kind={kind!r}): it is damaged.")
    task = entry(kind)
    if not task.writes_run:
        raise runs.RunError(f"{run_dir} says it is a {kind} run, and that task writes no run directory.")
    return task.load().load_run(run_dir)
