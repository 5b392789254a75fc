"""Batch-1 latency of one model in each form it ships in: Keras `predict` (what a
notebook runs), Keras called directly, the SavedModel zoo exports (its `serving_uint8`
signature through `tf.saved_model.load`, what a TF program loads), the LiteRT file in
float32 and int8 (the `ai-edge-litert` interpreter, XNNPACK on CPU) and the ONNX file
(onnxruntime's CPU provider).

    PYTHONPATH=. python benchmarks/export.py                      # lenet5 and resnet50
    PYTHONPATH=. python benchmarks/export.py --models lenet5 --repeats 200
    PYTHONPATH=. python benchmarks/export.py --smoke              # seconds, for CI
    PYTHONPATH=. python benchmarks/export.py --quantization       # a fine-tuned photo run, quantised

Every runtime gets the same real photo (scikit-image's cat, resized to the model's
input, uint8), all threads of the machine, and a warm-up; then the sides alternate
call by call (one call of each runtime per round, the order rotating), and each
side's median and p90 over the rounds are printed, with the load average during the
timed part. ResNet-50 uses random weights (latency does not depend on them); int8 is
calibrated on 32 random crops of scikit-image's photos.

`--quantization`: what quantising a fine-tuned run costs in accuracy, on held-out real
photos. `zoo finetune` trains a head on ResNet-50 (seeded random base weights: ImageNet's
cannot be downloaded here) over crops of the six sample photos (benchmarks/data.py,
6 classes); its LiteRT float32, float16 and int8 files (int8 calibrated on the run's own
training images, zoo's default) and its ONNX file are scored beside the Keras model on
another set of crops (another seed) that no side saw: accuracy, file size against
float32, and top-1 agreement with Keras.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.load import Load  # noqa: E402


def photo(size):
    import skimage.data
    from PIL import Image

    return np.asarray(Image.fromarray(skimage.data.chelsea()).resize(size[::-1]))[None].astype("uint8")


def calibration(size, count=32, seed=0):
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = [skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket()]
    crops = []
    for index in range(count):
        image = sources[index % len(sources)]
        h, w = image.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(image[top:top + side, left:left + side]).resize(size[::-1])
        crops.append(np.asarray(crop))
    return np.stack(crops).astype("uint8")


def runtimes(name, folder):
    """`{label: callable(batch) -> probabilities}` for model `name`, and its input size."""
    import keras
    import tensorflow as tf

    import zoo
    from zoo.serving import portable

    model = zoo.create(name) if name == "lenet5" else zoo.create(name, weights=None)
    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    version = zoo.export(model, folder, name)
    tflite, onnx_file = zoo.export(model, folder, name, format="litert,onnx")
    int8 = zoo.export(model, folder, name, format="litert", quantize="int8", representative=calibration(size))
    loaded = tf.saved_model.load(str(version))
    serving = loaded.signatures["serving_uint8"]
    key = next(iter(serving.structured_input_signature[1]))
    lite, lite8, onnx = portable.runner(tflite), portable.runner(int8), portable.runner(onnx_file)
    sides = {
        "Keras predict": lambda x: model.predict(x, verbose=0),
        "Keras call": lambda x: keras.ops.convert_to_numpy(model(x, training=False)),
        "SavedModel": lambda x: next(iter(serving(**{key: tf.constant(x)}).values())).numpy(),
        "LiteRT float32": lite.run,
        "LiteRT int8": lite8.run,
        "ONNX Runtime": onnx.run,
    }
    sizes = {"SavedModel": sum(p.stat().st_size for p in Path(version).rglob("*") if p.is_file()),
             "LiteRT float32": tflite.stat().st_size, "LiteRT int8": int8.stat().st_size,
             "ONNX Runtime": onnx_file.stat().st_size}
    return sides, size, sizes


def measure(name, repeats, warmup, load):
    with tempfile.TemporaryDirectory() as folder:
        sides, size, sizes = runtimes(name, folder)
        x = photo(size)
        reference = np.asarray(sides["Keras call"](x))
        agree = {label: float(np.abs(np.asarray(run(x)) - reference).max()) for label, run in sides.items()}
        for _ in range(warmup):
            for run in sides.values():
                run(x)
        times = {label: [] for label in sides}
        labels = list(sides)
        with load.timed(name) as part:
            for round_ in range(repeats):
                shift = round_ % len(labels)
                for label in labels[shift:] + labels[:shift]:
                    start = time.perf_counter()
                    sides[label](x)
                    times[label].append(time.perf_counter() - start)
    return times, sizes, agree, part


def quantization(per_class, test_per_class, image_size, epochs, load, seed=0):
    """The fine-tuned photo run's files scored on held-out crops; prints the table."""
    import zoo
    import zoo.data
    from benchmarks.data import PHOTOS, make_photo_folder
    from zoo.serving import portable

    with tempfile.TemporaryDirectory() as folder, load.timed("quantization") as part:
        folder = Path(folder)
        make_photo_folder(folder / "train", per_class=per_class, size=(160, 160), classes=PHOTOS, seed=seed)
        make_photo_folder(folder / "test", per_class=test_per_class, size=(160, 160), classes=PHOTOS, seed=seed + 1)
        # Base weights in the official no-top file layout (seeded random), as benchmarks/finetune.py.
        import h5py
        import keras
        from keras.src.legacy.saving import legacy_h5_format

        keras.utils.set_random_seed(seed)
        reference = keras.applications.ResNet50(weights=None, include_top=False,
                                                input_shape=(image_size, image_size, 3))
        with h5py.File(folder / "resnet50_notop.h5", "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, reference)
        run = zoo.finetune(folder / "train", model="resnet50", weights=folder / "resnet50_notop.h5", epochs=0,
                           freeze_epochs=epochs,
                           image_size=image_size, out=folder / "run", seed=seed, verbose=0, no_tensorboard=True)
        models = folder / "models"
        files = {"LiteRT float32": zoo.export(run.path, models, "photos", format="litert"),
                 "LiteRT float16": zoo.export(run.path, models, "photos", format="litert", quantize="float16"),
                 "LiteRT int8": zoo.export(run.path, models, "photos", format="litert", quantize="int8"),
                 "ONNX": zoo.export(run.path, models, "photos", format="onnx")}
        test = zoo.data.image_folder(folder / "test", image_size=image_size, batch_size=32, validation_split=0,
                                     shuffle=False, verbose=False)
        images, labels = map(np.concatenate, zip(*((np.asarray(x), np.asarray(y)) for x, y in test.train)))
        answers = {"Keras": np.asarray(run.model.predict(images, verbose=0))}
        for label, path in files.items():
            runner = portable.runner(path)
            answers[label] = np.concatenate([runner.run(images[i:i + 32]) for i in range(0, len(images), 32)])
        sizes = {label: path.stat().st_size for label, path in files.items()}
    print(f"ResNet-50 fine-tuned ({epochs} frozen epochs, {image_size} px, {len(PHOTOS)} classes, "
          f"{per_class} crops each; validation accuracy {run.metrics['val_accuracy']:.3f}), scored on "
          f"{len(labels)} held-out crops (load {part.describe()}):\n")
    print("| form | file MB | size vs float32 | held-out accuracy | vs Keras (points) | top-1 = Keras | "
          "max abs diff |")
    print("|---|---|---|---|---|---|---|")
    keras_accuracy = float(np.mean(answers["Keras"].argmax(1) == labels))
    for label, out in answers.items():
        accuracy = float(np.mean(out.argmax(1) == labels))
        size = f"{sizes[label] / 1e6:.1f} | {sizes[label] / sizes['LiteRT float32']:.2f}x" if label in sizes \
            else "- | -"
        print(f"| {label} | {size} | {accuracy * 100:.1f} % | {(accuracy - keras_accuracy) * 100:+.1f} | "
              f"{np.mean(out.argmax(1) == answers['Keras'].argmax(1)) * 100:.1f} % | "
              f"{np.abs(out - answers['Keras']).max():.1e} |", flush=True)
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet5,resnet50", help="registry models (default: lenet5,resnet50)")
    parser.add_argument("--repeats", type=int, default=50, help="timed rounds per model (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default: 5)")
    parser.add_argument("--smoke", action="store_true", help="lenet5, 3 rounds: that it runs")
    parser.add_argument("--quantization", action="store_true",
                        help="instead: a fine-tuned ResNet-50 photo run's files scored on held-out photos")
    parser.add_argument("--per-class", type=int, default=60, help="--quantization: training crops per class")
    parser.add_argument("--test-per-class", type=int, default=50, help="--quantization: held-out crops per class")
    parser.add_argument("--image-size", type=int, default=128, help="--quantization: the run's input side")
    parser.add_argument("--epochs", type=int, default=5, help="--quantization: frozen-phase epochs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.repeats, args.warmup = "lenet5", 3, 1
    import tensorflow as tf

    load = Load()
    if args.quantization:
        print(f"#### Quantisation of a fine-tuned run — {datetime.date.today()}, {os.cpu_count()} CPU cores, "
              f"TF {tf.__version__}\n")
        quantization(args.per_class, args.test_per_class, args.image_size, args.epochs, load)
        load.verdict()
        return
    print(f"#### Batch-1 latency — {datetime.date.today()}, {os.cpu_count()} CPU cores, "
          f"{platform.processor() or platform.machine()}, TF {tf.__version__}, {args.repeats} rounds, "
          f"sides alternating\n")
    for name in args.models.split(","):
        times, sizes, agree, part = measure(name.strip(), args.repeats, args.warmup, load)
        saved = np.median(times["SavedModel"])
        print(f"{name} (load {part.describe()}):\n")
        print("| runtime | median ms | p90 ms | vs SavedModel | file MB | max abs diff from Keras |")
        print("|---|---|---|---|---|---|")
        for label, values in times.items():
            median, p90 = np.median(values), np.percentile(values, 90)
            megabytes = f"{sizes[label] / 1e6:.2f}" if label in sizes else "-"
            print(f"| {label} | {median * 1e3:.2f} | {p90 * 1e3:.2f} | {saved / median:.2f}x | {megabytes} | "
                  f"{agree[label]:.1e} |")
        fastest = min((l for l in times if l not in ("Keras predict", "Keras call", "SavedModel")),
                      key=lambda l: np.median(times[l]))
        print(f"\nfastest exported format: {fastest}, {saved / np.median(times[fastest]):.2f}x the SavedModel "
              f"(goal for resnet50: >= 1.5x)\n", flush=True)
    load.verdict()


if __name__ == "__main__":
    main()
