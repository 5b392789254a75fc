"""Is zoo's style-transfer step faster than keras-io's recipe, at 256 and 512 px?

Both sides paint the same content photo in the style of the same painting, on the same
VGG19 weights (random, fixed seed: a step's cost does not depend on their values; the
keras.applications model's weights are saved and zoo loads that file), at the same
image size (the longer side `--sizes`, aspect kept), with the same layers: style
`block1_conv1 … block5_conv1`, content `block5_conv2`, total variation.

The two sides optimise different losses. zoo's defaults are the TensorFlow tutorial's
recipe (style 1e-2, content 1e4, total variation 30; Gram matrices averaged over
positions, content and style as mean squared errors, total variation as the sum of
absolute differences of the 0–1 image; Adam 0.02 · 255, beta_1 0.99). keras-io's are
its own (content 2.5e-8, style 1e-6, total variation 1e-6; unnormalised Gram matrices,
their squared differences summed and divided by 4 · 3² · (H·W)², content as a sum of
squares, total variation as the sum of (dx² + dy²)^1.25; SGD at 100 with ExponentialDecay(0.96 every 100 steps)). So a third
side, "zoo, keras-io's weights", runs `zoo.style` with keras-io's three loss weights:
as much of the recipe's problem as `zoo.style` can be given. It cannot take the rest:
its loss formulas are fixed (the tutorial's) and its optimizer is Adam (only the rate
is an argument: no SGD, no decay schedule), so even this side is not exactly the
recipe's optimisation, and its images are not comparable to the recipe's. What it
shows: the cost of a step does not depend on the loss weights (nor on the optimizer:
one update of one image either way), so the speed ratio comes from how each side
computes a step — zoo the style and content targets once and only the painted image to
`block5_conv2`, keras-io a batch of three through all of VGG19 — not from the losses.

keras-io's side is its example (keras-team/keras-io, examples/generative/
neural_style_transfer.py) as written, sizes aside: a feature extractor returning every
VGG19 layer, content + style + painted image concatenated into a batch of three every
step, its losses and weights, the loss and gradient in a `@tf.function`, its SGD
schedule. One step is `compute_loss_and_grads` + `apply_gradients` + reading the loss.

zoo's side is `zoo.style(...)` itself — zoo's fit path with its compiled (XLA) step —
timed by a callback between the ends of consecutive steps (each step ends with the
losses read back, as keras-io's step does).

Each side runs `--warmup` steps that are not counted (tracing, XLA compilation), then
`--steps` timed ones; the sides alternate for `--rounds` rounds per size, and the
median over all timed steps of a side is reported, with the highest 1-minute load
average seen while that side ran (benchmarks/load.py).

    PYTHONPATH=. python benchmarks/style.py       # --sizes 256,512 --steps 4 --rounds 2
    PYTHONPATH=. python benchmarks/style.py --smoke   # tiny: checks the script end to end
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.load import Load, highest, text  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "style"
# keras-io's loss weights (examples/generative/neural_style_transfer.py).
KERAS_IO_WEIGHTS = {"style_weight": 1e-6, "content_weight": 2.5e-8, "tv_weight": 1e-6}
ZOO = "zoo"
ZOO_KERAS_IO_WEIGHTS = "zoo, keras-io's weights"
ZOO_NO_XLA = "zoo, no XLA"
KERAS_IO = "keras-io"


def load_images(content, style):
    """The two pictures as uint8 arrays; scikit-image's samples when the files are absent."""
    from zoo.data.pillow import load_rgb

    if Path(content).is_file() and Path(style).is_file():
        return load_rgb(content), load_rgb(style), f"{Path(content).name}, {Path(style).name}"
    import skimage.data

    return skimage.data.astronaut(), skimage.data.coffee(), "skimage astronaut, coffee"


def keras_io_steps(weights_file, content, style, height, width, steps):
    """keras-io's recipe at `height` x `width`: the seconds of each of `steps` steps."""
    import keras
    import tensorflow as tf
    from keras.applications import vgg19

    total_variation_weight = KERAS_IO_WEIGHTS["tv_weight"]
    style_weight, content_weight = KERAS_IO_WEIGHTS["style_weight"], KERAS_IO_WEIGHTS["content_weight"]
    img_nrows, img_ncols = height, width

    def preprocess_image(image):
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((img_ncols, img_nrows), Image.BILINEAR), "float32")
        return tf.convert_to_tensor(vgg19.preprocess_input(image[None]))

    def gram_matrix(x):
        x = tf.transpose(x, (2, 0, 1))
        features = tf.reshape(x, (tf.shape(x)[0], -1))
        return tf.matmul(features, tf.transpose(features))

    def style_loss(style, combination):
        S, C = gram_matrix(style), gram_matrix(combination)
        channels, size = 3, img_nrows * img_ncols
        return tf.reduce_sum(tf.square(S - C)) / (4.0 * (channels**2) * (size**2))

    def content_loss(base, combination):
        return tf.reduce_sum(tf.square(combination - base))

    def total_variation_loss(x):
        a = tf.square(x[:, : img_nrows - 1, : img_ncols - 1, :] - x[:, 1:, : img_ncols - 1, :])
        b = tf.square(x[:, : img_nrows - 1, : img_ncols - 1, :] - x[:, : img_nrows - 1, 1:, :])
        return tf.reduce_sum(tf.pow(a + b, 1.25))

    model = vgg19.VGG19(weights=None, include_top=False)
    model.load_weights(weights_file)
    outputs_dict = {layer.name: layer.output for layer in model.layers}
    feature_extractor = keras.Model(inputs=model.inputs, outputs=outputs_dict)
    style_layer_names = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
    content_layer_name = "block5_conv2"

    def compute_loss(combination_image, base_image, style_reference_image):
        input_tensor = tf.concat([base_image, style_reference_image, combination_image], axis=0)
        features = feature_extractor(input_tensor)
        loss = tf.zeros(shape=())
        layer_features = features[content_layer_name]
        loss = loss + content_weight * content_loss(layer_features[0], layer_features[2])
        for layer_name in style_layer_names:
            layer_features = features[layer_name]
            loss += (style_weight / len(style_layer_names)) * style_loss(layer_features[1], layer_features[2])
        loss += total_variation_weight * total_variation_loss(combination_image)
        return loss

    @tf.function
    def compute_loss_and_grads(combination_image, base_image, style_reference_image):
        with tf.GradientTape() as tape:
            loss = compute_loss(combination_image, base_image, style_reference_image)
        grads = tape.gradient(loss, combination_image)
        return loss, grads

    optimizer = keras.optimizers.SGD(
        keras.optimizers.schedules.ExponentialDecay(initial_learning_rate=100.0, decay_steps=100, decay_rate=0.96))
    base_image = preprocess_image(content)
    style_reference_image = preprocess_image(style)
    combination_image = tf.Variable(preprocess_image(content))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss, grads = compute_loss_and_grads(combination_image, base_image, style_reference_image)
        optimizer.apply_gradients([(grads, combination_image)])
        float(loss)
        times.append(time.perf_counter() - start)
    return times


def zoo_steps(weights_file, content, style, size, steps, jit_compile="auto", loss_weights=None):
    """`zoo.style` for `steps` steps at longer side `size` (its own loss weights, or
    `loss_weights`): the seconds of each step."""
    import keras

    import zoo

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times, self.last = [], None

        def on_train_batch_begin(self, batch, logs=None):
            if self.last is None:
                self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now

    timer = Timer()
    zoo.style(content, style, weights=str(weights_file), steps=steps, size=size, verbose=0,
              jit_compile=jit_compile, callbacks=[timer], **(loss_weights or {}))
    return timer.times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--content", default=str(SHARED / "tubingen.jpg"), help="content photo")
    parser.add_argument("--style", default=str(SHARED / "starry_night.jpg"), help="style painting")
    parser.add_argument("--sizes", default="256,512", help="longer sides to measure (default: 256,512)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side per round (default: 4)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the sides (default: 2)")
    parser.add_argument("--no-xla", action="store_true", help="also time zoo's step without XLA")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: 64 px, 1 warm-up + 1 timed step, 1 round (checks the script, figures mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.steps, args.warmup, args.rounds = "64", 1, 1, 1

    from zoo.cli.console import start_backend

    start_backend()
    import keras

    content, style, source = load_images(args.content, args.style)
    keras.utils.set_random_seed(0)
    reference = keras.applications.VGG19(weights=None, include_top=False)
    load = Load()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights_file = Path(tmp) / "vgg19_notop.weights.h5"
        reference.save_weights(weights_file)
        for size in (int(s) for s in args.sizes.split(",")):
            scale = size / max(content.shape[:2])
            height, width = round(content.shape[0] * scale), round(content.shape[1] * scale)
            sides = {ZOO: [], KERAS_IO: [], ZOO_KERAS_IO_WEIGHTS: []}
            if args.no_xla:
                sides[ZOO_NO_XLA] = []
            loads = {side: [] for side in sides}
            for round_ in range(args.rounds):
                for side in sides:
                    total = args.warmup + args.steps
                    with load.timed(f"{side}, {width}x{height}, round {round_ + 1}") as part:
                        if side == KERAS_IO:
                            times = keras_io_steps(weights_file, content, style, height, width, total)
                        else:
                            times = zoo_steps(weights_file, content, style, size, total,
                                              jit_compile=False if side == ZOO_NO_XLA else "auto",
                                              loss_weights=KERAS_IO_WEIGHTS if side == ZOO_KERAS_IO_WEIGHTS else None)
                    sides[side] += times[args.warmup:]
                    loads[side].append(part.max)
                    keras.backend.clear_session()
            medians = {side: statistics.median(times) for side, times in sides.items()}
            loads = {side: highest(values) for side, values in loads.items()}
            rows.append((f"{width}×{height}", medians, loads))
            print(f"{width}x{height}: " + ", ".join(f"{s} {m:.3f} s/step (load {text(loads[s])})"
                                                    for s, m in medians.items())
                  + f"; keras-io / zoo {medians[KERAS_IO] / medians[ZOO]:.2f}x, keras-io / zoo with keras-io's "
                  f"weights {medians[KERAS_IO] / medians[ZOO_KERAS_IO_WEIGHTS]:.2f}x", flush=True)

    print(f"\nMeasured {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, {platform.machine()}, "
          f"Keras {keras.__version__} ({keras.backend.backend()}), images: {source}; "
          f"{args.rounds} rounds x {args.steps} timed steps after {args.warmup} warm-up steps per side. "
          f"Losses: zoo's defaults are the TensorFlow tutorial's (style 1e-2, content 1e4, TV 30, Adam); "
          f"keras-io's are its own (content 2.5e-8, style 1e-6, TV 1e-6, SGD 100 decaying 0.96 / 100 steps); "
          f"'{ZOO_KERAS_IO_WEIGHTS}' is zoo.style given keras-io's three loss weights — its loss formulas and "
          f"Adam stay (zoo.style takes no other optimizer). Load: the highest 1-minute load average while each "
          f"side ran.\n")
    sides = list(rows[0][1])
    print("| image (W×H) | " + " | ".join(f"{s} s/step (load)" for s in sides)
          + f" | keras-io / zoo | keras-io / {ZOO_KERAS_IO_WEIGHTS} |")
    print("|---" * (len(sides) + 3) + "|")
    for label, medians, loads in rows:
        print(f"| {label} | " + " | ".join(f"{medians[s]:.3f} ({text(loads[s])})" for s in sides)
              + f" | **{medians[KERAS_IO] / medians[ZOO]:.2f}×** "
              f"| **{medians[KERAS_IO] / medians[ZOO_KERAS_IO_WEIGHTS]:.2f}×** |")
    load.verdict()


if __name__ == "__main__":
    main()
