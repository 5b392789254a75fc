"""DCGAN (Radford et al., 2015), https://arxiv.org/abs/1511.06434: a generator of
transposed convolutions and a convolutional discriminator, trained against each other.

- Generator: latent vector → Dense → reshape to a `base`×`base` map (7 for 28/56-pixel
  images, 4 for 16/32/64) → transposed convolutions (4×4, stride 2) halving the filters
  and doubling the size, each followed by BatchNorm and ReLU → a last transposed
  convolution to `channels` with tanh: images in [-1, 1].
- Discriminator: strided 4×4 convolutions (no BatchNorm: it would see real and generated
  batches apart), LeakyReLU 0.2, dropout → one logit ("real").
- `DCGAN`: both networks in one Keras model with two optimizers (`d_optimizer`,
  `g_optimizer`, compiled in as one `GANOptimizer`), trained by `fit` like any model
  (the run's checkpoint then keeps both optimizers and the latent `SeedGenerator`). Real
  images arrive as uint8 and are scaled to [-1, 1] inside the model.
- `DCGAN.sampler()`: the generator as a model that takes latent vectors and returns
  uint8 images — what a run saves as `model.keras` and what an export serves.

The training step is backend-agnostic: no `GradientTape`. The model overrides only
`compute_loss`, and Keras' own train step (TensorFlow, JAX or PyTorch) takes the
gradient of one sum whose parts reach only their own network — the discriminator's loss
sees the generated images through `stop_gradient`, and the generator's loss goes
through a copy of the discriminator whose weights are stopped (`stateless_call`) — so
each network gets exactly the gradient of its own loss. `GANOptimizer` (an optimizer
around the two, like Keras' `LossScaleOptimizer` around one) hands each gradient to its
network's optimizer. Both networks step at once on the same latents (simultaneous
updates, as the TensorFlow tutorial's two tapes do), one generator pass per batch.

The classes are registered with Keras (`zoo>DCGAN`, `zoo>Pixels`, `zoo>GANOptimizer`,
`zoo>LeakyReLU`)
when this module is imported; its spec is in `zoo.architectures`.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

LATENT_DIM = 100
IMAGE_SIZE = 28
CHANNELS = 1
WIDTH = 64
LABEL_SMOOTHING = 0.1  # one-sided: real images are labelled 0.9 (Salimans et al., 2016)
DROPOUT = 0.3


def layout(image_size):
    """`(base, upsamplings)`: the generator's first map side and its stride-2 steps
    (28 → (7, 2), 32 → (4, 3), 64 → (4, 4))."""
    size = int(image_size)
    for base in (7, 4):
        steps = math.log2(size / base) if size >= base else -1
        if size % base == 0 and steps >= 1 and steps == int(steps):
            return base, int(steps)
    raise ValueError("`image_size` must be 7 or 4 times a power of two, at least 14 (e.g. 28, 32, 56, 64). "
                     f"Received: image_size={image_size!r}")


def _check(latent_dim, channels, width):
    if int(latent_dim) < 1:
        raise ValueError(f"`latent_dim` must be a positive integer. Received: latent_dim={latent_dim!r}")
    if int(channels) not in (1, 3):
        raise ValueError(f"`channels` must be 1 (grayscale) or 3 (RGB). Received: channels={channels!r}")
    if int(width) < 1:
        raise ValueError(f"`width` must be a positive integer. Received: width={width!r}")


def generator(latent_dim=LATENT_DIM, image_size=IMAGE_SIZE, channels=CHANNELS, width=WIDTH, name="generator"):
    """Build the generator: latent vectors → float images in [-1, 1].

    Args:
        latent_dim: int. Length of the latent vector. Defaults to `100`.
        image_size: int. Side of the square images: 7 or 4 times a power of two.
            Defaults to `28`.
        channels: int. 1 (grayscale) or 3 (RGB). Defaults to `1`.
        width: int. Filters of the last hidden layer; each earlier one has twice as
            many. Defaults to `64`.

    Returns:
        A `keras.Model`: float32 `(None, latent_dim)` → float32 `(None, S, S, channels)`.
    """
    _check(latent_dim, channels, width)
    base, steps = layout(image_size)
    filters = int(width) * 2 ** (steps - 1)
    latents = keras.Input((int(latent_dim),), name="latents")
    # No biases before BatchNorm: its shift does their work.
    x = layers.Dense(base * base * filters, use_bias=False, name="project")(latents)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.ReLU(name="project_relu")(x)
    x = layers.Reshape((base, base, filters), name="reshape")(x)
    for i in range(1, steps):
        filters //= 2
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"up{i}")(x)
        x = layers.BatchNormalization(name=f"up{i}_bn")(x)
        x = layers.ReLU(name=f"up{i}_relu")(x)
    # float32 even under mixed precision: the pixels are rounded from this.
    images = layers.Conv2DTranspose(int(channels), 4, strides=2, padding="same", activation="tanh",
                                    dtype="float32", name=f"up{steps}")(x)
    return keras.Model(latents, images, name=name)


def discriminator(image_size=IMAGE_SIZE, channels=CHANNELS, width=WIDTH, dropout=DROPOUT, name="discriminator"):
    """Build the discriminator: float images in [-1, 1] → one logit each ("real").

    Args:
        image_size: int. Side of the square images. Defaults to `28`.
        channels: int. 1 or 3. Defaults to `1`.
        width: int. Filters of the first convolution, doubled at each of the others.
            Defaults to `64`.
        dropout: float. Dropout after each convolution. Defaults to `0.3`.

    Returns:
        A `keras.Model`: float32 `(None, S, S, channels)` → float32 logits `(None, 1)`.
    """
    _check(1, channels, width)
    _, steps = layout(image_size)
    images = keras.Input((int(image_size), int(image_size), int(channels)), name="images")
    x = images
    for i in range(steps):
        x = layers.Conv2D(int(width) * 2 ** i, 4, strides=2, padding="same", name=f"down{i + 1}")(x)
        x = LeakyReLU(0.2, name=f"down{i + 1}_lrelu")(x)
        if dropout:
            x = layers.Dropout(float(dropout), name=f"down{i + 1}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    logits = layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(images, logits, name=name)


def dcgan(latent_dim=LATENT_DIM, image_size=IMAGE_SIZE, channels=CHANNELS, width=WIDTH, dropout=DROPOUT,
          label_smoothing=LABEL_SMOOTHING, seed=None):
    """Build a DCGAN: generator and discriminator in one trainable Keras model.

    Args:
        latent_dim: int. Length of the latent vector. Defaults to `100`.
        image_size: int. Side of the square images (28, 32, 56, 64, ...). Defaults to `28`.
        channels: int. 1 or 3. Defaults to `1`.
        width: int. Network width (see `generator`, `discriminator`). Defaults to `64`.
        dropout: float. The discriminator's dropout. Defaults to `0.3`.
        label_smoothing: float. Real images are labelled `1 - label_smoothing` for the
            discriminator (one-sided smoothing). Defaults to `0.1`.
        seed: int or None. Seed of the model's latent `SeedGenerator`.

    Returns:
        A `DCGAN`. Train it with `zoo.training.fit(gan, images, compile_args=
        {"optimizer": gan.optimizers(d_optimizer, g_optimizer)}, defaults=Defaults(loss=None, ...))`.

    Example:
    ```python
    gan = zoo.create("dcgan", latent_dim=64, width=32)
    images = gan.sample(16)      # uint8 (16, 28, 28, 1)
    ```
    """
    return DCGAN(
        generator(latent_dim, image_size, channels, width),
        discriminator(image_size, channels, width, dropout),
        label_smoothing=label_smoothing, seed=seed,
    )


# ------------------------------------------------------------------------- the classes
@keras.saving.register_keras_serializable(package="zoo")
class LeakyReLU(layers.LeakyReLU):
    """Keras' `LeakyReLU`, computed as `where(x > 0, x, negative_slope * x)`: the same
    values and gradients, without TensorFlow's `LeakyRelu` op.

    Why: on TensorFlow's CPU builds (oneDNN), grappler's remapper fuses Conv2D + BiasAdd
    + LeakyRelu into one op even where the backward pass still reads the BiasAdd
    (`LeakyReluGrad` takes the activation's input) — here, where the generator's loss
    takes its gradient through the discriminator to the images. The rewrite then fails
    and TensorFlow prints, once per run, `E0000 ... meta_optimizer.cc] remapper failed:
    INVALID_ARGUMENT: Mutation::Apply error: fanout '.../LeakyReluGrad' exist for
    missing node '.../BiasAdd'` (and drops the remapper's other rewrites of that train
    step). A select is no pattern the remapper fuses.
    """

    def call(self, inputs):
        return ops.where(inputs > 0, inputs, inputs * self.negative_slope)


@keras.saving.register_keras_serializable(package="zoo")
class Pixels(keras.layers.Layer):
    """Images in [-1, 1] → uint8 pixels 0–255 (rounded, clipped)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, images):
        pixels = ops.round((ops.cast(images, "float32") + 1.0) * 127.5)
        return ops.cast(ops.clip(pixels, 0.0, 255.0), "uint8")

    def compute_output_spec(self, images):
        return keras.KerasTensor(images.shape, dtype="uint8")

@keras.saving.register_keras_serializable(package="zoo")
class GANOptimizer(keras.optimizers.Optimizer):
    """Two optimizers as the one Keras' train step applies: each gradient goes to
    the optimizer of the network its variable belongs to — `d_optimizer` for the
    discriminator's, `g_optimizer` for the generator's. Built like Keras' own
    `LossScaleOptimizer` (an optimizer around optimizers), so it works in every
    backend's train step, and its `variables` hold both optimizers' state, which a
    checkpoint saves and restores.

    Args:
        d_optimizer: keras Optimizer. Steps the discriminator.
        g_optimizer: keras Optimizer. Steps the generator.
        discriminator_variables: the discriminator's trainable variables (the rest
            of the model's are the generator's).
    """

    def __init__(self, d_optimizer, g_optimizer, discriminator_variables, name="gan_optimizer"):
        super().__init__(learning_rate=0.0, name=name)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        # Identities only: a list of variables here would be tracked as this optimizer's.
        self.discriminator_ids = frozenset(id(v) for v in discriminator_variables)

    def _split(self, variables):
        """Positions of the discriminator's and of the generator's variables."""
        d_index = [i for i, v in enumerate(variables) if id(v) in self.discriminator_ids]
        g_index = [i for i, v in enumerate(variables) if id(v) not in self.discriminator_ids]
        return d_index, g_index

    def build(self, var_list):
        super().build(var_list)
        d_index, g_index = self._split(var_list)
        for optimizer, index in ((self.d_optimizer, d_index), (self.g_optimizer, g_index)):
            if not optimizer.built:
                optimizer.build([var_list[i] for i in index])

    @property
    def variables(self):
        return self._variables + self.d_optimizer.variables + self.g_optimizer.variables

    def apply(self, grads, trainable_variables=None):
        trainable_variables = list(trainable_variables if trainable_variables is not None
                                   else self._trainable_variables)
        if not self.built:
            self.build(trainable_variables)
        grads = list(grads)
        for optimizer, index in zip((self.d_optimizer, self.g_optimizer), self._split(trainable_variables)):
            optimizer.apply([grads[i] for i in index], [trainable_variables[i] for i in index])

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        # JAX: values instead of variables, in the order the optimizer was built with.
        own, d_count = len(self._variables), len(self.d_optimizer.variables)
        states = (optimizer_variables[own:own + d_count], optimizer_variables[own + d_count:])
        new_values, new_state = list(trainable_variables), list(optimizer_variables[:own])
        for optimizer, state, index in zip((self.d_optimizer, self.g_optimizer), states,
                                           self._split(self._trainable_variables)):
            values, state = optimizer.stateless_apply(
                state, [grads[i] for i in index], [trainable_variables[i] for i in index])
            for i, value in zip(index, values):
                new_values[i] = value
            new_state += list(state)
        return new_values, new_state

    @property
    def learning_rate(self):
        return self.g_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.g_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.g_optimizer.iterations

    def finalize_variable_values(self, var_list):
        var_list = list(var_list)
        for optimizer, index in zip((self.d_optimizer, self.g_optimizer), self._split(var_list)):
            optimizer.finalize_variable_values([var_list[i] for i in index])

@keras.saving.register_keras_serializable(package="zoo")
class DCGAN(keras.Model):
    """A generator and a discriminator trained against each other (DCGAN).

    Called on latent vectors it returns the generator's images in [-1, 1]; called on
    uint8 images (while training, Keras' train step calls it on the real batch) it
    returns the discriminator's logits. `sample(n)` and `sampler()` give uint8 images.

    Args:
        generator: keras.Model. Latent vectors → images in [-1, 1].
        discriminator: keras.Model. Images in [-1, 1] → logits `(N, 1)`.
        label_smoothing: float. Real images are labelled `1 - label_smoothing`.
            Defaults to `0.1`.
        seed: int or None. Seed of the latent `SeedGenerator`.
    """

    def __init__(self, generator, discriminator, label_smoothing=LABEL_SMOOTHING, seed=None, **kwargs):
        kwargs.setdefault("name", "dcgan")
        super().__init__(**kwargs)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing!r}")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(generator.inputs[0].shape[-1])
        self.label_smoothing = float(label_smoothing)
        self.seed = seed
        # The latents come from a generator the model holds: a checkpoint keeps its
        # state, so a resumed run draws the latents the uninterrupted one would have.
        self.latents = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
        self.built = True  # both networks are built functional models

    @property
    def image_shape(self):
        return tuple(int(d) for d in self.generator.outputs[0].shape[1:])

    def call(self, inputs, training=None):
        if len(inputs.shape) == 2:
            return self.generator(inputs, training=training)
        return self.discriminator(self.scale(inputs), training=training)

    @staticmethod
    def scale(images):
        """uint8 pixels → floats in [-1, 1], as the generator draws them."""
        return ops.cast(images, "float32") / 127.5 - 1.0

    def optimizers(self, d_optimizer=None, g_optimizer=None):
        """The optimizer to compile the model with: `d_optimizer` for the
        discriminator and `g_optimizer` for the generator (each Adam 2e-4, beta_1 0.5,
        the paper's, when left out), as one `GANOptimizer`.

            fit(gan, images, defaults=Defaults.own_loss(compile_args={"optimizer": gan.optimizers()}))
        """
        return GANOptimizer(d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5),
                            g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5),
                            self.discriminator.trainable_variables)

    @property
    def d_optimizer(self):
        return getattr(self.optimizer, "d_optimizer", None)

    @property
    def g_optimizer(self):
        return getattr(self.optimizer, "g_optimizer", None)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker, self.d_fake_tracker]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The sum of the discriminator's and the generator's losses, arranged so
        that each network's gradient is that of its own loss only.

        `y_pred` is the discriminator's logits on the real batch `x`.
        """
        batch = ops.shape(x)[0]
        latents = keras.random.normal((batch, self.latent_dim), seed=self.latents)
        fake = self.generator(latents, training=training)
        real_logits = y_pred
        # The discriminator judges the generated images as constants ...
        fake_logits = self.discriminator(ops.stop_gradient(fake), training=training)
        # ... and the generator is judged by the discriminator with stopped weights:
        # its loss moves the generator only.
        frozen = [ops.stop_gradient(v.value) for v in self.discriminator.trainable_variables]
        state = [v.value for v in self.discriminator.non_trainable_variables]
        judged, _ = self.discriminator.stateless_call(frozen, state, fake, training=training)

        bce = keras.losses.binary_crossentropy
        real_labels = ops.full_like(real_logits, 1.0 - self.label_smoothing)
        d_loss = (ops.mean(bce(real_labels, real_logits, from_logits=True))
                  + ops.mean(bce(ops.zeros_like(fake_logits), fake_logits, from_logits=True)))
        # The non-saturating generator loss: -log D(G(z)).
        g_loss = ops.mean(bce(ops.ones_like(judged), judged, from_logits=True))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_real_tracker.update_state(ops.mean(ops.sigmoid(real_logits)))
        self.d_fake_tracker.update_state(ops.mean(ops.sigmoid(fake_logits)))
        return d_loss + g_loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return {m.name: m.result() for m in self.metrics}

    def sampler(self, name="dcgan_generator"):
        """The generator as a model of its own: float32 latents `(None, latent_dim)` →
        uint8 images `(None, S, S, C)`. It shares the generator's layers."""
        latents = keras.Input((self.latent_dim,), name="latents")
        images = Pixels(name="pixels")(self.generator(latents, training=False))
        return keras.Model(latents, images, name=name)

    def sample(self, n=16, seed=0):
        """`n` uint8 images from latents drawn with `seed` (see `latents_for`)."""
        return sample_images(self.sampler(), n, seed)

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "label_smoothing": self.label_smoothing,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)


def latents_for(n, latent_dim, seed=0):
    """`n` standard-normal latent vectors (float32 numpy) from `seed`: the same seed
    gives the same vectors on every backend and machine."""
    import numpy as np

    return np.random.default_rng(int(seed)).standard_normal((int(n), int(latent_dim))).astype("float32")


def sample_images(sampler, n=16, seed=0):
    """uint8 images from a sampler model (latents → uint8), latents from `seed`."""
    import numpy as np

    latents = latents_for(n, sampler.inputs[0].shape[-1], seed)
    return np.asarray(sampler.predict(latents, verbose=0, batch_size=256)) if n else np.zeros(
        (0, *sampler.outputs[0].shape[1:]), "uint8")
