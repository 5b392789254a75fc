"""Convolutional autoencoders: plain, denoising (Vincent et al. 2008,
https://dl.acm.org/doi/10.1145/1390156.1390294) and variational (Kingma & Welling 2013,
https://arxiv.org/abs/1312.6114).

- Encoder: uint8 image → [0, 1] → Conv 3×3 stride 2 (×2, ReLU) → Flatten → Dense
  `latent_dim` (for the VAE two: the posterior's mean and log-variance).
- Decoder: `latent_dim` → Dense → Conv2DTranspose stride 2 (×2, ReLU) → Conv 3×3,
  sigmoid: pixels in [0, 1].
- The model `autoencoder()` returns is the one a run saves and serves: uint8 image in,
  reconstruction out, through the nested models `encoder` and `decoder` (so each can be
  taken out and used alone: the encoder as a feature extractor, the VAE's decoder as a
  generator). A VAE reconstructs from the posterior mean.

Training is `trainer(model, ...)`: a `keras.Model` whose `compute_loss` adds what the
algorithm needs — Gaussian noise on the input while the target stays clean (denoising),
the reparameterised sample and the KL term (VAE) — and trains through `zoo.training.fit`
like every other model. The spec of each model is in `zoo.architectures`; the
`AutoencoderTrainer` class is registered with Keras as `zoo>AutoencoderTrainer`.
"""

import keras
from keras import layers, ops

ENCODER, DECODER = "encoder", "decoder"


def autoencoder(image_shape=(28, 28, 1), latent_dim=32, filters=(32, 64), variational=False, name="autoencoder"):
    """Build an autoencoder (see the module docstring).

    Args:
        image_shape: `(height, width, channels)`; height and width divisible by
            2 ** len(filters). Defaults to `(28, 28, 1)`.
        latent_dim: int. Size of the code. Defaults to `32`.
        filters: tuple of int. Channels of the stride-2 convolutions. Defaults to `(32, 64)`.
        variational: bool. A VAE: the encoder gives a mean and a log-variance.

    Returns:
        `keras.Model`: uint8 `(None, H, W, C)` → float32 `(None, H, W, C)` in [0, 1].
    """
    height, width, channels = (int(d) for d in image_shape)
    scale = 2 ** len(filters)
    if height % scale or width % scale:
        raise ValueError(f"`image_shape` must have a height and width divisible by {scale}. "
                         f"Received: image_shape={tuple(image_shape)}")

    image = keras.Input((height, width, channels), dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255.0, name="to_unit")(image)
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"enc_conv{i + 1}")(x)
    x = layers.Flatten(name="enc_flatten")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    codes = [z_mean, layers.Dense(latent_dim, name="z_log_var")(x)] if variational else z_mean
    encoder = keras.Model(image, codes, name=ENCODER)

    latent = keras.Input((latent_dim,), name="latent")
    small = (height // scale, width // scale, filters[-1])
    y = layers.Dense(small[0] * small[1] * small[2], activation="relu", name="dec_dense")(latent)
    y = layers.Reshape(small, name="dec_reshape")(y)
    for i, f in enumerate(reversed(filters)):
        y = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", name=f"dec_deconv{i + 1}")(y)
    pixels = layers.Conv2D(channels, 3, padding="same", activation="sigmoid", dtype="float32", name="pixels")(y)
    decoder = keras.Model(latent, pixels, name=DECODER)

    inputs = keras.Input((height, width, channels), dtype="uint8", name="image")
    code = encoder(inputs)
    outputs = decoder(code[0] if variational else code)
    return keras.Model(inputs, outputs, name=name)


def variational_autoencoder(**options):
    """`autoencoder(variational=True)`: the VAE of the registry."""
    return autoencoder(**{"variational": True, "name": "vae", **options})


def is_variational(model):
    return len(model.get_layer(ENCODER).outputs) == 2


def encoder_features(model):
    """The encoder as a feature extractor: uint8 image → code (a VAE's posterior mean).

    It ends in an Identity layer named `features`, so `zoo.transfer.replace_head` puts
    a head on the code itself rather than cutting before the encoder's last Dense.
    """
    encoder = model.get_layer(ENCODER)
    code = encoder.outputs[0]
    return keras.Model(encoder.inputs[0], keras.layers.Identity(name="features")(code), name=f"{model.name}_encoder")


def trainer(model, noise=0.0, seed=0):
    """The training wrapper of an `autoencoder()` model (its layers, shared).

    Its loss, per image: binary cross-entropy between the clean input and the
    reconstruction, summed over pixels (the Bernoulli likelihood keras-io's VAE uses,
    in nats); a VAE adds the KL divergence of the posterior from N(0, I), so the loss is
    the negative ELBO. `noise` > 0 adds Gaussian noise of that standard deviation (in
    [0, 1] pixel units, clipped) to the input while training and validating, the target
    staying clean: a denoising autoencoder. Noise and the VAE's samples are drawn from a
    `SeedGenerator` the wrapper holds, so a checkpoint keeps their state.
    """
    return AutoencoderTrainer(model.get_layer(ENCODER), model.get_layer(DECODER), noise=noise, seed=seed,
                              variational=is_variational(model), name=f"{model.name}_trainer")


@keras.saving.register_keras_serializable(package="zoo")
class AutoencoderTrainer(keras.Model):
    """An autoencoder's encoder and decoder (shared, not copied) with the training loss
    (see `trainer`): called on uint8 images, it returns the clean images in [0, 1], the
    reconstruction and the KL term per image.

    Args:
        encoder: keras.Model. uint8 image → code (a VAE's: mean and log-variance).
        decoder: keras.Model. code → pixels in [0, 1].
        noise: float. Std of the Gaussian noise on the input. Defaults to `0.0`.
        seed: int or None. Seed of the noise and the VAE's samples.
        variational: bool. The encoder gives a mean and a log-variance.
    """

    def __init__(self, encoder, decoder, noise=0.0, seed=0, variational=False, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.noise = encoder, decoder, float(noise)
        self.variational = bool(variational)
        self.draws = keras.random.SeedGenerator(seed)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, images, training=False):
        clean = ops.cast(images, "float32") / 255.0
        seen = clean
        if self.noise:
            seen = ops.clip(clean + self.noise * keras.random.normal(ops.shape(clean), seed=self.draws), 0.0, 1.0)
        # The encoder takes uint8 images, as served: round the noisy pixels as a file would hold them.
        codes = self.encoder(ops.cast(ops.round(seen * 255.0), "uint8"), training=training)
        if self.variational:
            z_mean, z_log_var = codes
            epsilon = keras.random.normal(ops.shape(z_mean), seed=self.draws)
            z = z_mean + ops.exp(0.5 * z_log_var) * epsilon
            kl = -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)
        else:
            z, kl = codes, ops.zeros(ops.shape(codes)[:1])
        return {"clean": clean, "reconstruction": self.decoder(z, training=training), "kl": kl}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction = ops.sum(
            keras.losses.binary_crossentropy(y_pred["clean"][..., None], y_pred["reconstruction"][..., None]),
            axis=(1, 2, 3))
        per_image = reconstruction + y_pred["kl"]
        # Per image, so the epoch's figure is the mean over images (a smaller last batch
        # weighs what it holds): the held-out loss is exactly the held-out negative ELBO.
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(y_pred["kl"])
        self.loss_tracker.update_state(per_image)
        return ops.mean(per_image)

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker] + ([self.kl_tracker] if self.variational else [])
