"""A miniature GAN with its own `train_step` and two optimizers (keras-io's DCGAN in
small), trained through `zoo.training.fit`. Run as a script by the resume test:

    python tests/helpers/mini_gan.py RUN_DIR [--resume] [--pause-at EPOCH]

With `--pause-at E` it prints `PAUSED` in the middle of epoch E and sleeps, so that the
test can `kill -9` it there. At the end it writes `RUN_DIR/final.npz` with every weight.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

LATENT = 4


class MiniGAN(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.generator = keras.Sequential([keras.Input((LATENT,)), layers.Dense(16, activation="relu"),
                                           layers.Dense(2)], name="generator")
        self.discriminator = keras.Sequential([keras.Input((2,)), layers.Dense(16, activation="relu"),
                                               layers.Dropout(0.1), layers.Dense(1)], name="discriminator")
        # The latents come from a generator the model holds, so a checkpoint keeps its state.
        self.latents = keras.random.SeedGenerator(1337)
        self.d_loss = keras.metrics.Mean(name="d_loss")
        self.g_loss = keras.metrics.Mean(name="g_loss")

    def call(self, z):
        return self.generator(z)

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @property
    def metrics(self):
        return [self.d_loss, self.g_loss]

    def train_step(self, real):
        import tensorflow as tf

        batch = ops.shape(real)[0]
        z = keras.random.normal((batch, LATENT), seed=self.latents)
        fake = self.generator(z)
        both = ops.concatenate([fake, real], axis=0)
        labels = ops.concatenate([ops.ones((batch, 1)), ops.zeros((batch, 1))], axis=0)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(both, training=True))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        z = keras.random.normal((batch, LATENT), seed=self.latents)
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(ops.zeros((batch, 1)), self.discriminator(self.generator(z), training=True))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss.update_state(d_loss)
        self.g_loss.update_state(g_loss)
        return {"d_loss": self.d_loss.result(), "g_loss": self.g_loss.result()}


class Pause(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch and batch == 20:
            print("PAUSED", flush=True)
            time.sleep(600)

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch + 1


def real_points(n=2048, seed=0):
    """Points on a ring: the distribution the generator learns."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype("float32") + rng.normal(0, 0.05, (n, 2)).astype("float32")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--pause-at", type=int)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)

    from zoo.training import Defaults, Tracking, fit

    keras.utils.set_random_seed(0)
    gan = MiniGAN()
    gan.build((None, LATENT))
    result = fit(
        gan, real_points(), epochs=args.epochs, batch_size=16, shuffle=False,
        defaults=Defaults.own_loss(train_monitor="g_loss", compile_args={
            "d_optimizer": keras.optimizers.Adam(1e-3), "g_optimizer": keras.optimizers.Adam(1e-3)}),
        tracking=Tracking(run_dir=args.run_dir, resume=args.resume, restore_best=False, tensorboard=False),
        callbacks=[Pause(args.pause_at)] if args.pause_at else [], verbose=2,
    )
    weights = {f"w{i}": np.asarray(v) for i, v in enumerate(gan.weights)}
    np.savez(os.path.join(args.run_dir, "final.npz"), **weights)
    print("epochs in history:", [h["epoch"] for h in result.history], flush=True)


if __name__ == "__main__":
    sys.exit(main())
