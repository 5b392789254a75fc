"""The DCGAN task: a folder of images (or scikit-learn's real digits) in, a generator out.

    zoo train gan --data digits --epochs 50 --out runs/digits-gan
    zoo sample runs/digits-gan --n 64 --out grid.png
    run = zoo.train("gan", "digits", epochs=50, out="runs/digits-gan")
    images = run.sample(16)              # uint8 (16, 28, 28, 1)

The path: `zoo.data.image_arrays` (uint8 arrays; digits are 28×28 grayscale, a folder
64×64 RGB unless told) → `zoo.create("dcgan", ...)` → `zoo.training.fit` (the GAN's
two optimizers, Adam 2e-4 with beta_1 0.5 as in the paper, checkpointed and resumed
with the latent seed state) → the run directory: `model.keras` (the generator alone:
latent vectors in, uint8 images out), `samples/epoch-NNN.png` (the same 64 latent
vectors drawn after every epoch, also in TensorBoard), `samples.png`, `metrics.json`
(losses per epoch; for digits, how LeNet-5 reads 1,000 samples), `curves.png`.

A GAN's losses do not say which epoch is best, so the model is the last epoch's. The
export's `serving_default` takes `latents` float32 `[N, latent_dim]` and returns
`images` uint8 `[N, H, W, C]`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from zoo import io, runs, tasks
from zoo.errors import OptionError, ZooError
from zoo.tasks.base import RUN_DEFAULTS, finish_run, start_run

KIND = "gan"
MODEL = "dcgan"
MODEL_TASK = "gan"
MODEL_RANKS = (2, 4)  # latent vectors in, images out (the generator is what a run keeps)
_TASK = tasks.MANIFEST[KIND]
DESCRIPTION = _TASK.description
SAMPLES_DIR = "samples"
SAMPLES_FILE = "samples.png"
GRID = 64  # latent vectors in the per-epoch sample grid
MAX_SAMPLES = 10_000  # images one `zoo sample` may ask for
CONFIDENT = 0.9  # LeNet-5 probability that counts a generated digit as readable

OPTIONS = _TASK.options  # zoo.tasks.MANIFEST: the CLI reads them without importing this module
DEFAULTS = {"epochs": 50, "batch_size": 64, "latent_dim": 100, "image_size": None, "channels": None, "width": 64,
            "lr": 2e-4, **RUN_DEFAULTS}
RUN_SETTINGS = ("data", *DEFAULTS)


@dataclass
class DCGANRun(runs.Run):
    """A DCGAN's run: its generator (latents → uint8 images), settings and metrics."""

    @property
    def latent_dim(self):
        return int(self.model.inputs[0].shape[-1])

    @property
    def image_shape(self):
        return tuple(int(d) for d in self.model.outputs[0].shape[1:])

    def sample(self, n=64, seed=0):
        """`n` generated images, uint8 `(n, H, W, C)`; the same seed gives the same images
        (here and from the export, given `latents(n, seed)`)."""
        from zoo.architectures.dcgan import sample_images

        return sample_images(self.model, _count(n), seed)

    def latents(self, n=64, seed=0):
        """The latent vectors `sample(n, seed)` draws, float32 `(n, latent_dim)`: what an
        exported model takes."""
        from zoo.architectures.dcgan import latents_for

        return latents_for(_count(n), self.latent_dim, seed)


def _count(n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SAMPLES:
        raise OptionError(f"`n` must be an integer from 1 to {MAX_SAMPLES:,}. Received: n={n!r}")
    return int(n)


def load_run(run_dir):
    run_dir = Path(run_dir)
    model, config, metrics = runs.open_run(run_dir, KIND, MODEL_RANKS)
    return DCGANRun(path=run_dir, model=model, config=config, metrics=metrics)


def _check_config(config):
    for key in ("epochs", "batch_size", "latent_dim", "width"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "epochs" else 1):
            raise OptionError(f"`{key}` must be a positive integer. Received: {key}={value!r}")
    if config["channels"] not in (None, 1, 3):
        raise OptionError(f"`channels` must be 1 or 3. Received: channels={config['channels']!r}")
    if config["image_size"] is not None:
        from zoo.architectures.dcgan import layout

        try:
            layout(config["image_size"])
        except ValueError as error:
            raise OptionError(str(error)) from None
    if not (isinstance(config["lr"], (int, float)) and config["lr"] > 0):
        raise OptionError(f"`lr` must be a positive number. Received: lr={config['lr']!r}")
    if config["early_stopping"]:
        raise OptionError("A GAN's losses do not tell when it has learned enough, so the gan task has no early "
                          f"stopping. Received: early_stopping={config['early_stopping']!r}")
    if config["precision"] == "mixed_float16":
        raise OptionError("The gan task trains in float32 or mixed_bfloat16 (float16 would need loss scaling "
                          "for two optimizers). Received: precision='mixed_float16'")


def train(data=None, out="runs/dcgan", resume=False, overwrite=False, verbose="auto", no_tensorboard=False,
          distribute="none", callbacks=(), **options):
    """Train a DCGAN on `data`; write the run `out`.

    Args:
        data: `"digits"` (scikit-learn's 1,797 real handwritten digits, the 80 % training
            split, 28×28 grayscale) or the path of a folder of images.
        out: path. The run directory (never overwritten unasked; see `zoo.train`).
        resume: bool. Continue the interrupted run in `out` from its last finished epoch,
            both optimizers and the latent seed state included.
        overwrite: bool. Replace the run in `out`.
        no_tensorboard: bool. Write no TensorBoard logs.
        callbacks: more Keras callbacks (Python API only).
        verbose: `"auto"`, 0, 1 or 2.
        **options: `epochs` (50), `batch_size` (64), `latent_dim` (100), `image_size`
            (28 for digits, 64 for a folder), `channels` (1 for digits, 3 for a folder),
            `width` (64), `lr` (2e-4, both networks' Adam, beta_1 0.5), `seed` (0),
            `precision` (`"auto"`, `"float32"` or `"mixed_bfloat16"`).

    Returns:
        `DCGANRun` of the finished run.
    """
    import keras

    import zoo.data
    from zoo import models
    from zoo.architectures.dcgan import latents_for
    from zoo.training import Defaults, fit

    out = Path(out)
    given = {"data": None if data is None else str(data), **options}
    started = start_run(KIND, out, given, defaults=DEFAULTS, keys=RUN_SETTINGS, required=("data",), resume=resume,
                    overwrite=overwrite, float16=False, distribute=distribute, tensorboard=not no_tensorboard)
    config, resuming = started.config, started.resuming
    _check_config(config)
    images = zoo.data.image_arrays(config["data"], image_size=config["image_size"], channels=config["channels"],
                                   seed=config["seed"], verbose=bool(verbose))
    if len(images.train) < config["batch_size"]:
        raise OptionError(f"`batch_size` must be at most the {len(images.train)} training images of "
                          f"{config['data']}. Received: batch_size={config['batch_size']}")
    if not resuming:
        height, _, channels = images.image_shape
        started.write_config(KIND, image_size=int(height), channels=int(channels), num_train=len(images.train),
                         num_val=len(images.val))
        if images.skipped:
            io.write_text(out / "skipped.txt", "".join(f"{path}: {reason}\n" for path, reason in images.skipped))

    with started.settings.building():
        gan = models.create(MODEL, latent_dim=config["latent_dim"], image_size=config["image_size"],
                            channels=config["channels"], width=config["width"], seed=config["seed"])
    sampler = gan.sampler()
    grid = SampleGrid(sampler, latents_for(GRID, config["latent_dim"], config["seed"]), out / SAMPLES_DIR)
    if verbose:
        print(f"{len(images.train):,} training images {images.image_shape} from {config['data']}; "
              f"{-(-len(images.train) // config['batch_size'])} batches per epoch", file=sys.stderr)
    result = fit(
        gan, images.train, epochs=config["epochs"], batch_size=config["batch_size"],
        # The DCGAN paper's Adam (section 4): 2e-4, beta_1 0.5; one for each network.
        defaults=Defaults.own_loss(compile_args={"optimizer": gan.optimizers(
            keras.optimizers.Adam(config["lr"], beta_1=0.5), keras.optimizers.Adam(config["lr"], beta_1=0.5))}),
        settings=started.settings, tracking=started.tracking(best=False, restore_best=False,
                                                     tensorboard_images=grid.tensorboard),
        callbacks=[grid.callback(), *callbacks], verbose=verbose,
    )
    extra = {
        "optimizer_steps": {"d_optimizer": int(np.asarray(gan.d_optimizer.iterations)),
                            "g_optimizer": int(np.asarray(gan.g_optimizer.iterations))},
        "image_shape": list(images.image_shape),
        "samples": f"{SAMPLES_DIR}/epoch-NNN.png",
    }
    if config["data"] == "digits" and tuple(images.image_shape) == (28, 28, 1):
        extra["digits"] = digit_scores(sample_n(sampler, 1000, seed=config["seed"] + 1), real=images.val)
    finish_run(out, gan, result, extra=extra, verbose=verbose, saved_model=sampler, plot_metrics=("d_loss", "g_loss"))
    from zoo.plots import save_image, tile

    save_image(tile(grid.images()), out / SAMPLES_FILE, scale=2)
    if verbose and "digits" in extra:
        scores = extra["digits"]
        print(f"LeNet-5 reads {scores['confident']:.1%} of 1,000 samples with confidence >= {CONFIDENT}; "
              f"smallest class share {min(scores['class_shares']):.1%}; Frechet distance "
              f"{scores.get('frechet_distance', float('nan')):.2f}", file=sys.stderr)
    return load_run(out)


def sample_n(sampler, n, seed=0):
    from zoo.architectures.dcgan import sample_images

    return sample_images(sampler, n, seed)


class SampleGrid:
    """The per-epoch sample grid: the same latent vectors drawn after every epoch, into
    `samples/epoch-NNN.png` and TensorBoard (one drawing serves both)."""

    def __init__(self, sampler, latents, directory):
        self.sampler = sampler
        self.latents = latents
        self.directory = Path(directory)
        self._drawn = (None, None)

    def images(self):
        return np.asarray(self.sampler(self.latents, training=False))

    def grid(self, epoch):
        from zoo.plots import tile

        if self._drawn[0] != epoch:
            self._drawn = (epoch, tile(self.images()))
        return self._drawn[1]

    def tensorboard(self, epoch):
        return {"samples": self.grid(epoch)}

    def callback(self):
        return WriteSamples(self)


class WriteSamples(keras.callbacks.Callback):
    """After every epoch, the `SampleGrid`'s picture into `samples/epoch-NNN.png`."""

    def __init__(self, grid):
        super().__init__()
        self.grid = grid

    def on_epoch_end(self, epoch, logs=None):
        from zoo.plots import save_image

        save_image(self.grid.grid(epoch + 1), self.grid.directory / f"epoch-{epoch + 1:03d}.png", scale=2)


def digit_scores(images, real=None, classifier=None):
    """How LeNet-5 (the shipped digits weights) reads generated digits.

    Args:
        images: uint8 `(N, 28, 28, 1)` (or 3-channel) generated digits.
        real: uint8 real digits or None. With them, also the Fréchet distance between
            the two sets on LeNet-5's penultimate features (`f6`, 84 values; FID's
            formula on a digit classifier's features).
        classifier: a LeNet-5 model or None (`zoo.create("lenet5")`).

    Returns:
        dict: `confident` (share of images whose top class has probability >= 0.9),
        `class_shares` (share of all images confidently read as each digit 0-9),
        `classes_at_3_percent`, `frechet_distance` (with `real`).
    """
    import keras

    import zoo

    model = classifier if classifier is not None else zoo.create("lenet5")
    rgb = lambda x: np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x  # noqa: E731
    features = keras.Model(model.inputs, [model.get_layer("f6").output, model.outputs[0]])
    fake_features, probabilities = (np.asarray(a) for a in features.predict(rgb(images), verbose=0, batch_size=500))
    confident = probabilities.max(axis=1) >= CONFIDENT
    shares = np.bincount(probabilities.argmax(axis=1)[confident], minlength=10) / len(images)
    scores = {"n": int(len(images)), "confident": float(confident.mean()),
              "class_shares": [round(float(s), 4) for s in shares],
              "classes_at_3_percent": int((shares >= 0.03).sum())}
    try:
        import scipy  # noqa: F401  (the Frechet distance's matrix square root)
    except ImportError:
        real = None
    if real is not None:
        real_features = np.asarray(features.predict(rgb(real), verbose=0, batch_size=500)[0])
        scores["frechet_distance"] = frechet_distance(real_features, fake_features)
    return scores


def frechet_distance(a, b):
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrt(S_a S_b)) between two feature sets (FID's formula)."""
    import warnings

    from scipy import linalg

    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a nearly singular product is handled below
        root = linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(root).all():  # nudge the diagonals, as pytorch-fid does
            offset = np.eye(len(s_a)) * 1e-6
            root = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    root = root.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(root))


def sample(run, n=64, out="grid.png", seed=0, scale=2):
    """Draw `n` images with a trained DCGAN and write them as one grid PNG.

    Args:
        run: a run directory written by `zoo train gan`, or its `DCGANRun`.
        n: int. Images to draw, 1 to 10,000. Defaults to `64`.
        out: path. Where the grid goes (PNG). Defaults to `"grid.png"`.
        seed: int. The same seed draws the same images. Defaults to `0`.
        scale: int. Each pixel drawn as scale×scale pixels. Defaults to `2`.

    Returns:
        `pathlib.Path` of the grid.
    """
    from zoo.plots import save_image, tile

    if not isinstance(run, DCGANRun):
        from zoo.tasks import load_run as load_any

        run = load_any(run)
        if not isinstance(run, DCGANRun):
            raise ZooError(f"{run.path} is a {run.kind} run, not a gan run: it cannot draw samples.")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 16:
        raise OptionError(f"`scale` must be an integer from 1 to 16. Received: scale={scale!r}")
    return save_image(tile(run.sample(n, seed=seed)), out, scale=scale)


def signatures(source, top_k=5, classes=None):
    """The export's signature (`zoo.tasks`' contract): `serving_default`, `latents`
    float32 `[N, latent_dim]` → `images` uint8 `[N, H, W, C]`. A bare model (no run)
    exports `serving_default` on its own input and output. `top_k` and `classes` (a
    classifier's) play no part."""
    import tensorflow as tf

    from zoo.tasks.export import model_signatures

    if not isinstance(source, DCGANRun):
        return model_signatures(source)
    run = source
    sampler = run.model

    @tf.function(input_signature=[tf.TensorSpec([None, run.latent_dim], tf.float32, name="latents")])
    def serve(latents):
        return {"images": sampler(latents, training=False)}

    return {"serving_default": (serve, {"inputs": ["latents"], "outputs": ["images"]})}, {}


def portable(source, classes=None):
    """The one-file export (`zoo.tasks`' contract): the generator, `latents` float32
    `[N, latent_dim]` → `images` uint8 `[N, H, W, C]` (`DCGANRun.latents(n, seed)` gives
    the latents `sample(n, seed)` draws). A bare model: its own forward pass."""
    import tensorflow as tf

    from zoo.tasks.export import Portable, model_portable

    if not isinstance(source, DCGANRun):
        return model_portable(source)
    sampler = source.model

    @tf.function(input_signature=[tf.TensorSpec([None, source.latent_dim], tf.float32, name="latents")])
    def generate(latents):
        return {"images": sampler(latents, training=False)}

    return Portable(function=generate, model=sampler,
                    metadata={"input": f"latents: float32 (batch, {source.latent_dim}), standard normal"})
