"""Autoencoders: images in, a model that reconstructs, cleans and (as a VAE) invents them.

    zoo train autoencoder --data digits --out runs/ae
    zoo train autoencoder --data digits --noise 0.3 --out runs/denoise       # denoising
    zoo train autoencoder --data faces/ --variational --out runs/vae          # VAE
    run = zoo.train("autoencoder", "digits", noise=0.3, out="runs/denoise")
    run.reconstruct(noisy_images)                     # uint8 in, uint8 out
    features = zoo.transfer.replace_head(run.encoder, 10)   # the encoder as a feature extractor

The path: `zoo.data.image_arrays` (`digits`, or a folder searched recursively; a share
held out) → `zoo.create("conv_autoencoder" | "conv_vae", image_shape=...)` → the
architecture's `trainer` (noise, KL) → `zoo.training.fit` (Adam, the best epoch by
held-out loss) → the run directory: `model.keras` (uint8 image → reconstruction in
[0, 1]), `metrics.json` (held-out PSNR; a VAE's held-out ELBO per epoch),
`reconstructions.png`, `denoising.png` (with `--noise`), `samples.png` and
`interpolation.png` (VAE), `curves.png`, TensorBoard logs with a reconstruction grid per
epoch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo import io, runs, tasks
from zoo.errors import OptionError, ZooError
from zoo.tasks.base import RUN_DEFAULTS, finish_run, start_run

KIND = "autoencoder"
MODEL_TASK = "autoencoder"
MODEL_RANKS = (4, 4)  # images in, images out
_TASK = tasks.MANIFEST[KIND]
DESCRIPTION = _TASK.description
SHOWN = 10  # held-out images in the PNG grids
PSNR_NOISE_SEED = 1234  # the same noisy held-out images for every run

OPTIONS = _TASK.options  # zoo.tasks.MANIFEST: the CLI reads them without importing this module
DEFAULTS = {"epochs": 10, "noise": 0.0, "variational": False, "latent_dim": 32, "image_size": None, "channels": None,
            "batch_size": 32, "lr": 2e-3, **RUN_DEFAULTS}
RUN_SETTINGS = ("data", *DEFAULTS)


def to_uint8(pixels):
    """[0, 1] floats → uint8 pixels (rounded)."""
    return np.clip(np.round(np.asarray(pixels, dtype="float32") * 255.0), 0, 255).astype("uint8")


def apply(model, inputs, batch_size=256):
    """`model` on `inputs` in eager chunks: `predict` traces a new function for every
    new batch shape, and Keras warns about it each time."""
    inputs = np.asarray(inputs)
    chunks = [np.asarray(model(inputs[i:i + batch_size], training=False)) for i in range(0, len(inputs), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, *model.outputs[0].shape[1:]), "float32")


def psnr(clean, other):
    """Mean per-image peak signal-to-noise ratio in dB of uint8 images (peak 255)."""
    clean, other = np.asarray(clean, dtype="float64"), np.asarray(other, dtype="float64")
    mse = np.mean((clean - other) ** 2, axis=tuple(range(1, clean.ndim)))
    return float(np.mean(10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))))


def add_noise(images, noise, seed=PSNR_NOISE_SEED):
    """uint8 images with Gaussian noise of std `noise` (pixels in [0, 1]), clipped and rounded."""
    rng = np.random.default_rng(seed)
    return to_uint8(np.asarray(images, dtype="float32") / 255.0 + rng.normal(0.0, noise, np.shape(images)))


@dataclass
class AutoencoderRun(runs.Run):
    """An autoencoder's run: its model (uint8 image → reconstruction), settings, metrics."""

    @property
    def variational(self):
        from zoo.architectures.autoencoder import is_variational

        return is_variational(self.model)

    @property
    def encoder(self):
        """uint8 image → code (a VAE's posterior mean): a feature extractor for
        `zoo.transfer.replace_head`."""
        from zoo.architectures.autoencoder import encoder_features

        return encoder_features(self.model)

    @property
    def decoder(self):
        """code → image in [0, 1]."""
        from zoo.architectures.autoencoder import DECODER

        return self.model.get_layer(DECODER)

    def reconstruct(self, images, batch_size=256):
        """uint8 images `(N, H, W, C)` → their uint8 reconstructions (denoised, for a
        denoising autoencoder)."""
        return to_uint8(apply(self.model, np.asarray(images, dtype="uint8"), batch_size))

    def decode(self, codes):
        """Codes `(N, latent_dim)` → uint8 images."""
        return to_uint8(apply(self.decoder, np.asarray(codes, dtype="float32")))

    def sample(self, n=64, seed=0):
        """`n` new uint8 images from a VAE: codes drawn from its prior N(0, I)."""
        if not self.variational:
            raise ZooError("Only a variational autoencoder (--variational) samples new images: a plain "
                           "autoencoder's codes have no distribution to draw from.")
        latent_dim = self.decoder.inputs[0].shape[-1]
        return self.decode(np.random.default_rng(seed).standard_normal((n, latent_dim)).astype("float32"))


def load_run(run_dir):
    run_dir = Path(run_dir)
    model, config, metrics = runs.open_run(run_dir, KIND, MODEL_RANKS)
    return AutoencoderRun(path=run_dir, model=model, config=config, metrics=metrics)


def train(data=None, out="runs/autoencoder", resume=False, overwrite=False, verbose="auto", no_tensorboard=False,
          distribute="none", callbacks=(), **options):
    """Train an autoencoder on `data` (`"digits"` or a folder of images); write the run `out`.

    Args:
        data: `"digits"` or the path of a folder of images (searched recursively).
        out: path. The run directory (never overwritten unasked; see `zoo.train`).
        resume: bool. Continue the interrupted run in `out` from its last finished epoch.
        overwrite: bool. Replace the run in `out`.
        no_tensorboard: bool. Write no TensorBoard logs.
        callbacks: more Keras callbacks (Python API only).
        verbose: `"auto"`, 0, 1 or 2.
        **options: `epochs` (10), `noise` (0: the std of Gaussian input noise, a
            denoising autoencoder), `variational` (False), `latent_dim` (32),
            `image_size`, `channels`, `batch_size` (32), `lr` (2e-3), `seed` (0),
            `precision`, `early_stopping`.

    Returns:
        `AutoencoderRun` of the finished run.
    """
    from zoo import models
    from zoo.architectures.autoencoder import trainer
    from zoo.data.arrays import image_arrays
    from zoo.training import Defaults, fit

    out = Path(out)
    given = {"data": None if data is None else str(data), **options}
    started = start_run(KIND, out, given, defaults=DEFAULTS, keys=RUN_SETTINGS, required=("data",), resume=resume,
                    overwrite=overwrite, distribute=distribute, tensorboard=not no_tensorboard)
    config, resuming = started.config, started.resuming
    if not 0 <= float(config["noise"]) < 1:
        raise OptionError(f"`noise` must be from 0 to 1 (pixels are in [0, 1]). Received: noise={config['noise']!r}")
    if int(config["latent_dim"]) < 1:
        raise OptionError(f"`latent_dim` must be a positive integer. Received: latent_dim={config['latent_dim']!r}")
    arrays = image_arrays(config["data"], image_size=config["image_size"], channels=config["channels"],
                          seed=config["seed"], verbose=bool(verbose))
    if not resuming:
        started.write_config(KIND, image_shape=list(arrays.image_shape), num_train=len(arrays.train),
                         num_val=len(arrays.val))
    if arrays.skipped:
        io.write_text(out / "skipped.txt", "".join(f"{path}: {reason}\n" for path, reason in arrays.skipped))

    name = "conv_vae" if config["variational"] else "conv_autoencoder"
    with started.settings.building():
        model = models.create(name, image_shape=arrays.image_shape, latent_dim=int(config["latent_dim"]))
        wrapper = trainer(model, noise=float(config["noise"]), seed=int(config["seed"]))
    shown = arrays.val[:8]

    def reconstruction_grid(epoch):
        from zoo.plots import tile

        return {"reconstructions": tile(np.concatenate([shown, to_uint8(apply(model, shown))]),
                                        columns=len(shown))}

    result = fit(
        wrapper, arrays.train, arrays.val, epochs=int(config["epochs"]), batch_size=int(config["batch_size"]),
        defaults=Defaults.own_loss(monitor="val_loss", train_monitor="loss", learning_rate=float(config["lr"])),
        settings=started.settings, tracking=started.tracking(tensorboard_images=reconstruction_grid),
        callbacks=callbacks, verbose=verbose,
    )
    # fit leaves the best epoch's weights in the model: the pictures and scores are of it.
    scores = write_pictures(out, model, arrays.val, float(config["noise"]), seed=int(config["seed"]))
    if config["variational"]:
        scores["val_elbo"] = [-h["val_loss"] for h in result.history]
        scores["best_val_elbo"] = -result.best_value if result.best_value is not None else None
    finish_run(out, wrapper, result, saved_model=model, extra=scores, verbose=verbose,
               plot_metrics=("loss", "reconstruction", "kl") if config["variational"] else ("loss",))
    if verbose:
        said = (f"held-out PSNR: noisy {scores['psnr_noisy']:.2f} dB → denoised {scores['psnr_denoised']:.2f} dB "
                f"(+{scores['psnr_gain_db']:.2f} dB)" if "psnr_noisy" in scores
                else f"held-out reconstruction PSNR {scores['psnr_reconstruction']:.2f} dB")
        if config["variational"]:
            said += f"; held-out ELBO {scores['best_val_elbo']:.2f} nats/image"
        print(said, file=sys.stderr)
    return load_run(out)


def write_pictures(out, model, val, noise, seed=0):
    """The run's PNGs and held-out scores: reconstructions, denoising (with noise),
    samples and an interpolation (VAE)."""
    from zoo.architectures.autoencoder import DECODER, ENCODER, is_variational
    from zoo.plots import plot_image_rows, save_image, tile

    out = Path(out)
    reconstructed = to_uint8(apply(model, val))
    scores = {"psnr_reconstruction": psnr(val, reconstructed)}
    plot_image_rows({"held-out": val[:SHOWN], "reconstructed": reconstructed[:SHOWN]}, out / "reconstructions.png",
                    title=f"held-out reconstructions, PSNR {scores['psnr_reconstruction']:.1f} dB")
    if noise:
        noisy = add_noise(val, noise)
        denoised = to_uint8(apply(model, noisy))
        scores.update(psnr_noisy=psnr(val, noisy), psnr_denoised=psnr(val, denoised), noise=noise)
        scores["psnr_gain_db"] = scores["psnr_denoised"] - scores["psnr_noisy"]
        plot_image_rows({f"noisy σ={noise:g}": noisy[:SHOWN], "denoised": denoised[:SHOWN], "clean": val[:SHOWN]},
                        out / "denoising.png", title=f"held-out images: noisy {scores['psnr_noisy']:.1f} dB → "
                        f"denoised {scores['psnr_denoised']:.1f} dB")
    if is_variational(model):
        decoder, encoder = model.get_layer(DECODER), model.get_layer(ENCODER)
        latent_dim = decoder.inputs[0].shape[-1]
        codes = np.random.default_rng(seed).standard_normal((64, latent_dim)).astype("float32")
        save_image(tile(to_uint8(apply(decoder, codes)), columns=8), out / "samples.png", scale=2)
        means = np.asarray(encoder(val[:8], training=False)[0])
        steps = np.linspace(0.0, 1.0, SHOWN)[:, None]
        rows = {}
        for a, b in ((0, 1), (2, 3), (4, 5), (6, 7)):
            path = (1 - steps) * means[a] + steps * means[b]
            rows[f"{a}→{b}"] = to_uint8(apply(decoder, path.astype("float32")))
        plot_image_rows(rows, out / "interpolation.png", title="decoded along straight lines between held-out codes")
    return scores


def signatures(source, top_k=5, classes=None):
    """The export's signatures (`zoo.tasks`' contract): `serving_default` (images, 0–255
    as float32 like a classifier's → uint8 `reconstructions`), `encode` (images →
    `codes`) and, for a VAE, `decode` (`codes` float32 → uint8 `images`). A bare model
    (no run) exports `serving_default` on its own input and output. `top_k` and
    `classes` (a classifier's) play no part."""
    import tensorflow as tf

    from zoo.tasks.export import model_signatures

    if not isinstance(source, AutoencoderRun):
        return model_signatures(source)
    run = source
    model, encoder, decoder = run.model, run.encoder, run.decoder
    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    image_spec = tf.TensorSpec([None, height, width, channels], tf.float32, name="images")

    def pixels(images):
        return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)

    def as_uint8(unit):
        return tf.cast(tf.clip_by_value(tf.round(tf.cast(unit, tf.float32) * 255.0), 0.0, 255.0), tf.uint8)

    @tf.function(input_signature=[image_spec])
    def reconstruct(images):
        return {"reconstructions": as_uint8(model(pixels(images), training=False))}

    @tf.function(input_signature=[image_spec])
    def encode(images):
        return {"codes": tf.cast(encoder(pixels(images), training=False), tf.float32)}

    found = {"serving_default": (reconstruct, {"inputs": ["images"], "outputs": ["reconstructions"]}),
             "encode": (encode, {"inputs": ["images"], "outputs": ["codes"]})}
    if run.variational:
        latent_dim = int(decoder.inputs[0].shape[-1])

        @tf.function(input_signature=[tf.TensorSpec([None, latent_dim], tf.float32, name="codes")])
        def decode(codes):
            return {"images": as_uint8(decoder(codes, training=False))}

        found["decode"] = (decode, {"inputs": ["codes"], "outputs": ["images"]})
    return found, {}


def portable(source, classes=None):
    """The one-file export (`zoo.tasks`' contract): `images` uint8 `[N, H, W, C]` →
    `reconstructions` uint8, as `reconstruct` and the SavedModel give them (a bare
    model of no autoencoder's shape: its own forward pass). `classes` plays no part."""
    import tensorflow as tf

    from zoo.tasks.export import Portable, model_of, model_portable

    model = model_of(source)
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape or tuple(model.outputs[0].shape[1:]) != shape:
        return model_portable(model)

    @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.uint8, name="images")])
    def reconstruct(images):
        unit = tf.cast(model(tf.cast(images, model.inputs[0].dtype), training=False), tf.float32)
        return {"reconstructions": tf.cast(tf.clip_by_value(tf.round(unit * 255.0), 0.0, 255.0), tf.uint8)}

    return Portable(function=reconstruct, model=model,
                    metadata={"input": "images: uint8 (batch, height, width, channels)"})
