"""Where a model looked: zoo's Grad-CAM against keras-io's recipe, and how good the maps are.

1. Speed and agreement on VGG19 at 224 px (random weights, fixed seed: the cost of a
   map does not depend on the weights' values, and both sides get the same model):
   keras-io's Grad-CAM recipe (keras-team/keras-io, examples/vision/grad_cam.py: a
   sub-model returning the last conv block and the predictions, the softmax removed by
   setting the last layer's activation to None, a GradientTape, one image per call) and
   `zoo.interpret` (the layer tapped while the model runs, batches). Both run on the
   same real photos, each way: one image per call, and in batches of `--images` (what
   `zoo explain` does; the recipe batched is the same sub-model and tape called on the
   whole batch, each image's own class channel, the pooling and the map per image).
   The sides alternate for `--rounds` rounds and the median seconds per image of each
   side is reported, with the highest 1-minute load average seen while it ran
   (benchmarks/load.py).
2. Which models each side can explain: a flat registry model, a keras-io-style
   fine-tuned model with the base nested inside it, a Sequential model loaded from a
   .keras file.
3. The pointing game and deletion for all five methods on the localisation set of
   tests/helpers/localisation.py (a scikit-image object pasted on another photo; a small
   network fine-tuned with `zoo finetune`), against the random baseline (the box's
   area) and the centre baseline (always pointing at the image's centre).

    PYTHONPATH=. python benchmarks/explain.py          # --images 8 --rounds 3
    PYTHONPATH=. python benchmarks/explain.py --smoke  # tiny: checks the script end to end
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import Load, highest, text  # noqa: E402


def photos(count, size=224):
    import skimage.data
    from PIL import Image

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
             "colorwheel"]
    images = [np.asarray(Image.fromarray(getattr(skimage.data, n)()[..., :3]).resize((size, size)))
              for n in names]
    return np.stack([images[i % len(images)] for i in range(count)])


def keras_io_gradcam(grad_model, image, class_id):
    """keras-io's recipe for one image (written from its description, the softmax
    already removed from the model)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        conv_output, predictions = grad_model(image[None])
        channel = predictions[:, class_id]
    grads = tape.gradient(channel, conv_output)
    pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = tf.squeeze(conv_output[0] @ pooled[..., None])
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


def keras_io_gradcam_batch(grad_model, images, class_ids):
    """keras-io's recipe on a whole batch, as zoo batches: the same sub-model and tape,
    each image's own class channel; pooling, map and normalisation per image (VGG19 has
    no batch statistics, so each image's gradients are its own)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        conv_output, predictions = grad_model(images)
        channel = tf.gather(predictions, tf.constant(class_ids), axis=1, batch_dims=1)
    grads = tape.gradient(channel, conv_output)
    pooled = tf.reduce_mean(grads, axis=(1, 2))
    heatmap = tf.einsum("bhwc,bc->bhw", conv_output, pooled)
    heatmap = tf.maximum(heatmap, 0) / tf.reduce_max(heatmap, axis=(1, 2), keepdims=True)
    return heatmap.numpy()


def speed(count, rounds, load):
    import keras

    import zoo
    from zoo.interpret import attribution

    keras.utils.set_random_seed(0)
    model = zoo.create("vgg19", weights=None)
    peer_model = keras.models.clone_model(model)
    peer_model.set_weights(model.get_weights())
    peer_model.layers[-1].activation = None  # what keras-io does
    grad_model = keras.Model(peer_model.inputs, [peer_model.get_layer("block5_conv4").output, peer_model.output])
    images = photos(count)
    class_ids = np.asarray(model.predict_on_batch(images)).argmax(-1)

    def run_peer():
        return np.stack([keras_io_gradcam(grad_model, image, c) for image, c in zip(images, class_ids)])

    def run_peer_batched():
        return keras_io_gradcam_batch(grad_model, images, class_ids)

    def run_zoo(batch_size):
        return attribution.normalise(attribution.attribute(model, images.astype("float32"), class_ids, "gradcam",
                                                           batch_size=batch_size))

    peer_one, peer_batch = "keras-io (one image per call)", f"keras-io, batches of {count}"
    zoo_one, zoo_batch = "zoo, one image per call", f"zoo, batches of {count}"
    sides = {peer_one: run_peer, zoo_one: lambda: run_zoo(1), peer_batch: run_peer_batched,
             zoo_batch: lambda: run_zoo(count)}
    for side in sides.values():  # warm-up: tracing
        side()
    seconds = {name: [] for name in sides}
    loads = {name: [] for name in sides}
    maps = {}
    for round_ in range(rounds):
        for name, side in sides.items():
            with load.timed(f"{name}, round {round_ + 1}") as part:
                maps[name] = side()
            seconds[name].append(part.seconds / count)
            loads[name].append(part.max)
    peer = statistics.median(seconds[peer_one])
    peer_batched = statistics.median(seconds[peer_batch])
    print(f"\nVGG19 Grad-CAM at 224 px, {count} photos, {rounds} rounds (median s/image; load: the highest "
          f"1-minute load average while the side ran):")
    print("| side | s/image | vs keras-io one per call | vs keras-io batched | load |\n|---|---|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {peer / median:.2f}x | {peer_batched / median:.2f}x "
              f"| {text(highest(loads[name]))} |")
    for a, b in ((zoo_one, peer_one), (zoo_batch, peer_batch), (peer_batch, peer_one)):
        print(f"max |{a} - {b}| over the normalised maps: {np.max(np.abs(maps[a] - maps[b])):.2e}")


def structures(work):
    import keras

    import zoo
    from zoo.interpret import attribution

    results = []
    inputs = keras.Input((64, 64, 3), dtype="uint8")
    base = zoo.create("vgg16", weights=None, include_top=False, input_shape=(64, 64, 3))
    nested = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(base(inputs))))
    sequential = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Rescaling(1 / 255.0),
                                   keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
                                   keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    sequential.save(Path(work) / "seq.keras")
    sequential = keras.saving.load_model(Path(work) / "seq.keras")
    flat = zoo.create("vgg16", weights=None, num_classes=3, input_shape=(64, 64, 3))
    images = photos(2, 64)
    cases = {"flat registry model": (flat, "block5_conv3"), "base nested in the model": (nested, "block5_conv3"),
             "Sequential loaded from .keras": (sequential, "conv")}
    for name, (model, layer) in cases.items():
        row = [name]
        try:
            peer = keras.models.clone_model(model)
            peer.set_weights(model.get_weights())
            peer.layers[-1].activation = None
            found = peer.get_layer(layer) if layer in [l.name for l in peer.layers] else None
            if found is None:
                # keras-io's get_layer sees only the outer model's layers.
                found = peer.layers[1].get_layer(layer)
            grad_model = keras.Model(peer.inputs, [found.output, peer.output])
            keras_io_gradcam(grad_model, images[0].astype(model.inputs[0].dtype), 0)
            row.append("works")
        except Exception as error:  # noqa: BLE001 - what the recipe raises is the result
            row.append(f"{type(error).__name__}: {str(error).splitlines()[0][:70]}")
        try:
            attribution.attribute(model, images.astype("float32"), [0, 1], "gradcam")
            row.append("works")
        except Exception as error:  # noqa: BLE001
            row.append(f"{type(error).__name__}: {str(error).splitlines()[0][:70]}")
        results.append(row)
    print("\n| model | keras-io recipe | zoo |\n|---|---|---|")
    for row in results:
        print("| " + " | ".join(row) + " |")


def quality(work, load, n_per_class=80, held_out_per_class=25, epochs=10):
    from tests.helpers import localisation

    import zoo
    from zoo.interpret import attribution

    localisation.register_tiny_cnn()
    images, labels, boxes = localisation.make_set(n_per_class=n_per_class, seed=0)
    data = localisation.write_folder(Path(work) / "photos", images, labels, boxes)
    with load.timed("fine-tune tiny_cnn") as part:
        run = zoo.finetune(data, model="tiny_cnn", weights="none", epochs=epochs, lr=3e-3, out=Path(work) / "run",
                           verbose=0, no_tensorboard=True)
    print(f"\nfine-tuned tiny_cnn from scratch in {part.seconds:.0f} s (load {part}), "
          f"validation accuracy {run.metrics['val_accuracy']:.3f}")
    images, labels, boxes = localisation.make_set(n_per_class=held_out_per_class, seed=1)
    classes = sorted(localisation.OBJECTS)
    truth = [classes.index(list(localisation.OBJECTS)[label]) for label in labels]
    inside = lambda x, y: (boxes[:, 0] <= x) & (x < boxes[:, 2]) & (boxes[:, 1] <= y) & (y < boxes[:, 3])  # noqa: E731
    area = float(np.mean((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))) / 64 ** 2
    print(f"held-out: {len(images)} images; random baseline {area:.1%}; "
          f"centre baseline {np.mean(inside(32, 32)):.1%}")
    print("| method | pointing game | deletion: top-10 % drop | random-10 % drop | s/image | load |\n"
          "|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    count = int(0.1 * 64 * 64)
    mean = images.reshape(len(images), -1, 3).mean(axis=1)[:, None, None, :]
    for method in attribution.METHODS:
        with load.timed(f"zoo.explain {method}") as part:
            result = zoo.explain(run, list(images), method=method, class_=truth)
        seconds = part.seconds / len(images)
        peaks = [np.unravel_index(np.argmax(m), m.shape) for m in result.maps]
        pointing = np.mean(inside(np.array([p[1] for p in peaks]), np.array([p[0] for p in peaks])))
        predicted = zoo.explain(run, list(images), method=method)
        ids = np.asarray([r["class_id"] for r in predicted.results])
        before = np.asarray([r["probability"] for r in predicted.results])
        drops = {}
        for kind in ("top", "random"):
            masks = np.zeros((len(images), 64, 64), bool)
            for i, heatmap in enumerate(predicted.maps):
                chosen = (np.lexsort((rng.random(heatmap.size), -heatmap.ravel()))[:count] if kind == "top"
                          else rng.choice(heatmap.size, count, replace=False))
                masks[i].flat[chosen] = True
            removed = np.where(masks[..., None], mean, images).round().astype("uint8")
            after = np.asarray(run.model.predict_on_batch(removed))[np.arange(len(images)), ids]
            drops[kind] = float(np.mean(before - after))
        print(f"| {method} | {pointing:.1%} | {drops['top']:.3f} | {drops['random']:.3f} | {seconds:.3f} "
              f"| {part} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: 2 photos, 1 round, a small localisation set (checks the script, figures mean nothing)")
    args = parser.parse_args(argv)
    import keras

    print(f"{platform.machine()}, {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}, "
          f"keras {keras.__version__}, backend {keras.backend.backend()}")
    load = Load()
    with tempfile.TemporaryDirectory() as work:
        if args.smoke:
            speed(2, 1, load)
            structures(work)
            quality(work, load, n_per_class=10, held_out_per_class=3, epochs=1)
        else:
            speed(args.images, args.rounds, load)
            structures(work)
            quality(work, load)
    load.verdict()


if __name__ == "__main__":
    main()
