"""DCGAN on real digits: `zoo train gan` vs the TensorFlow DCGAN tutorial's recipe, at
equal epochs, in one run.

Data: scikit-learn's 1,797 real handwritten digits (8x8 scans upsampled to 28x28,
`zoo.data.image_arrays("digits")`): the 1,437 digits of zoo's standard training split
train both sides; the 360 held-out ones (never seen by either GAN, nor by LeNet-5's
shipped weights) are the reference set.

- zoo: `zoo.train("gan", "digits", epochs=E)` — the task's defaults (width 64, batch
  64, Adam 2e-4 / beta_1 0.5 for each network, one-sided label smoothing 0.1, 4x4
  kernels, BatchNorm + ReLU in the generator, no BatchNorm in the discriminator).
- peer: the TensorFlow tutorial (tensorflow.org/tutorials/generative/dcgan) as written —
  generator Dense 7*7*256 → BN → LeakyReLU → Conv2DTranspose 128 (5x5, stride 1) / 64 /
  1 (tanh), each but the last with BN + LeakyReLU; discriminator Conv2D 64 / 128 (5x5,
  stride 2) with LeakyReLU and Dropout 0.3, Dense 1; binary cross-entropy on logits,
  Adam 1e-4 for both, batch 256, its `tf.function` train step with two tapes.

Both are scored the same way on 1,000 samples: the share LeNet-5 (zoo's shipped digits
weights) reads with confidence >= 0.9, the share of each digit among them, and the
Fréchet distance between the held-out digits and the samples on LeNet-5's penultimate
features (`f6`, 84 values): FID's formula, on a digit classifier instead of Inception.

Each side's seconds are printed with the highest 1-minute load average seen while it
trained (benchmarks/load.py).

Run:  PYTHONPATH=. python benchmarks/gan.py [--epochs 50] [--png benchmarks/gan_samples.png]
      PYTHONPATH=. python benchmarks/gan.py --smoke     # tiny: checks the script end to end (no PNG)
Results go in benchmarks/README.md, section "DCGAN".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load import Load  # noqa: E402


def tutorial_dcgan(images, epochs, seed=0, batch_size=256, latent_dim=100):
    """The TensorFlow tutorial's DCGAN trained on uint8 `images` (N, 28, 28, 1); returns
    its generator (latents → images in [-1, 1])."""
    import keras
    import numpy as np
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(seed)
    generator = keras.Sequential([
        keras.Input((latent_dim,)),
        layers.Dense(7 * 7 * 256, use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Reshape((7, 7, 256)),
        layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh"),
    ])
    discriminator = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Flatten(), layers.Dense(1),
    ])
    cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)
    generator_optimizer = keras.optimizers.Adam(1e-4)
    discriminator_optimizer = keras.optimizers.Adam(1e-4)

    @tf.function
    def train_step(batch):
        noise = tf.random.normal([tf.shape(batch)[0], latent_dim])
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated = generator(noise, training=True)
            real_output = discriminator(batch, training=True)
            fake_output = discriminator(generated, training=True)
            gen_loss = cross_entropy(tf.ones_like(fake_output), fake_output)
            disc_loss = (cross_entropy(tf.ones_like(real_output), real_output)
                         + cross_entropy(tf.zeros_like(fake_output), fake_output))
        gen_grads = gen_tape.gradient(gen_loss, generator.trainable_variables)
        disc_grads = disc_tape.gradient(disc_loss, discriminator.trainable_variables)
        generator_optimizer.apply_gradients(zip(gen_grads, generator.trainable_variables))
        discriminator_optimizer.apply_gradients(zip(disc_grads, discriminator.trainable_variables))

    scaled = (images.astype("float32") - 127.5) / 127.5  # the tutorial's [-1, 1]
    dataset = tf.data.Dataset.from_tensor_slices(scaled).shuffle(60000, seed=seed).batch(batch_size)
    for _ in range(epochs):
        for batch in dataset:
            train_step(batch)

    def sample(n, seed=1):
        latents = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype("float32")
        images = np.asarray(generator.predict(latents, verbose=0, batch_size=500))
        return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype("uint8")

    return sample


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=50, help="epochs of each side (default: 50, the tutorial's)")
    parser.add_argument("--samples", type=int, default=1000, help="generated digits scored per side (default: 1000)")
    parser.add_argument("--png", default="benchmarks/gan_samples.png", help="side-by-side sample grids")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: 1 epoch, 100 samples, no PNG (checks the script, figures mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.samples, args.png = 1, 100, None

    import keras
    import numpy as np

    import zoo
    import zoo.data
    from zoo.plots import save_image, tile
    from zoo.tasks.dcgan import digit_scores

    digits = zoo.data.image_arrays("digits")
    lenet = zoo.create("lenet5")
    report = {"epochs": args.epochs, "samples": args.samples, "train": len(digits.train), "held_out": len(digits.val),
              "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})",
              "versions": {"keras": keras.__version__}}
    report["held_out_digits"] = digit_scores(digits.val, real=digits.train, classifier=lenet)

    load = Load()
    with load.timed("zoo train gan") as zoo_part, tempfile.TemporaryDirectory() as tmp:
        run = zoo.train("gan", "digits", epochs=args.epochs, out=os.path.join(tmp, "run"), verbose=0,
                        no_tensorboard=True)
        zoo_images = run.sample(args.samples, seed=1)
        zoo_grid = run.sample(64, seed=2)
    zoo_seconds = zoo_part.seconds
    report["zoo"] = {"seconds": round(zoo_seconds, 1), "load": zoo_part.max, "config": {k: run.config[k] for k in (
        "epochs", "batch_size", "latent_dim", "width", "lr")},
        **digit_scores(zoo_images, real=digits.val, classifier=lenet)}
    print(f"zoo done in {zoo_seconds:.0f} s (load {zoo_part.describe()}): {json.dumps(report['zoo'])}", flush=True)

    with load.timed("TF tutorial DCGAN") as peer_part:
        peer = tutorial_dcgan(digits.train, args.epochs)
    peer_seconds = peer_part.seconds
    peer_images, peer_grid = peer(args.samples, seed=1), peer(64, seed=2)
    report["peer"] = {"seconds": round(peer_seconds, 1), "load": peer_part.max,
                      **digit_scores(peer_images, real=digits.val, classifier=lenet)}
    report["load"] = load.as_dict()
    print(f"peer done in {peer_seconds:.0f} s (load {peer_part.describe()}): {json.dumps(report['peer'])}",
          flush=True)

    if args.png:
        left, right = tile(zoo_grid, columns=8), tile(peer_grid, columns=8)
        gap = np.full((left.shape[0], 12, 3), 255, "uint8")
        save_image(np.concatenate([left, gap, right], axis=1), args.png, scale=2)
        print(f"samples (zoo left, tutorial right): {args.png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)

    def row(name, scores, seconds, part=None):
        shares = " / ".join(f"{100 * s:.1f}" for s in scores["class_shares"])
        return (f"| {name} | {100 * scores['confident']:.1f} % | {scores['classes_at_3_percent']}/10 | "
                f"{100 * min(scores['class_shares']):.1f} % | {scores['frechet_distance']:.1f} | {seconds} | "
                f"{'—' if part is None else part} | {shares} |")

    print(f"\n{args.epochs} epochs each; load: the highest 1-minute load average while the side trained\n")
    print("| side | LeNet-5 confident (>= 0.9) | digits >= 3 % | rarest digit | Fréchet distance | seconds | load | "
          "share of each digit 0-9 (%) |")
    print("|---|---|---|---|---|---|---|---|")
    print(row("zoo `train gan`", report["zoo"], report["zoo"]["seconds"], zoo_part))
    print(row("TF tutorial DCGAN", report["peer"], report["peer"]["seconds"], peer_part))
    print(row("held-out real digits", report["held_out_digits"], "—"))
    load.verdict()
    return report


if __name__ == "__main__":
    main()
