"""Is `zoo.classify` at least as fast as the Keras-docs way of classifying files?

Both sides start from the same 64 image files (real photos: scikit-image's samples and
scikit-learn's china/flower, with crops to reach 64, saved as JPEG) and the same
random weights (fixed seed; the keras.applications model's weights are saved and zoo
loads that file). The reference is what the Keras docs show:

    img = keras.utils.load_img(path, target_size=(224, 224)); x = img_to_array(img)
    batch = preprocess_input(np.stack(xs)); model.predict(batch)

zoo's side is `zoo.classify(paths, model=zoo_model, top=5)`, which also does the
top-k and label formatting. One warm-up pass each is excluded; then the two sides
alternate for `--repeats` rounds and the median round of each is reported (`predict`
here alternates between using one core and two; the best round would hide that), with
the highest 1-minute load average seen during that side's rounds (benchmarks/load.py).

    PYTHONPATH=. python benchmarks/classify.py              # --model vgg19 --repeats 5
    PYTHONPATH=. python benchmarks/classify.py --smoke      # tiny: checks the script end to end
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.load import Load, highest, text  # noqa: E402

# registry name -> (keras.applications constructor, its preprocess_input module)
REFERENCES = {
    "vgg16": ("VGG16", "vgg16"),
    "vgg19": ("VGG19", "vgg19"),
    "resnet50": ("ResNet50", "resnet"),
    "resnet101": ("ResNet101", "resnet"),
    "resnet152": ("ResNet152", "resnet"),
    "inception_v3": ("InceptionV3", "inception_v3"),
}


def make_photos(folder: Path, count=64):
    """`count` JPEGs from real photos: each whole photo, then crops of them."""
    from PIL import Image

    from benchmarks.data import load_photo

    sources = [load_photo(name) for name in ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        photo = sources[i % len(sources)]
        if i >= len(sources):  # a random crop, 50-90 % of each side
            h, w = photo.shape[:2]
            ch, cw = (int(s * rng.uniform(0.5, 0.9)) for s in (h, w))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            photo = photo[y:y + ch, x:x + cw]
        path = folder / f"photo{i:02d}.jpg"
        Image.fromarray(np.ascontiguousarray(photo)).save(path, quality=90)
        paths.append(str(path))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg19", choices=sorted(REFERENCES))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: resnet50, 4 images, batch 2, 1 round (checks the script, figures mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.images, args.batch_size, args.repeats = "resnet50", 4, 2, 1

    import importlib

    import keras

    import zoo
    import zoo.models

    constructor, module = REFERENCES[args.model]
    preprocess_input = importlib.import_module(f"keras.applications.{module}").preprocess_input
    size = zoo.models.get_spec(args.model).input_size

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_photos(Path(tmp), args.images)
        keras.utils.set_random_seed(0)
        reference = getattr(keras.applications, constructor)(weights=None)
        weights_file = Path(tmp) / "reference.weights.h5"
        reference.save_weights(weights_file)
        ours = zoo.create(args.model, weights=str(weights_file))

        def run_reference():
            arrays = [keras.utils.img_to_array(keras.utils.load_img(p, target_size=size)) for p in paths]
            batch = preprocess_input(np.stack(arrays))
            return reference.predict(batch, batch_size=args.batch_size, verbose=0)

        def run_zoo():
            return zoo.classify(paths, model=ours, top=5, batch_size=args.batch_size)

        # Same weights, same photos: the two sides should mostly agree on the top class
        # (not always: Keras' load_img resizes with "nearest", zoo with bilinear).
        ref_top = run_reference().argmax(-1)
        zoo_top = np.array([r["predictions"][0]["class_id"] for r in run_zoo()])
        agreement = float((ref_top == zoo_top).mean())

        load = Load()
        times = {"keras": [], "zoo": []}
        loads = {"keras": [], "zoo": []}
        for round_ in range(args.repeats):
            for name, fn in (("keras", run_reference), ("zoo", run_zoo)):
                with load.timed(f"{name}, round {round_ + 1}") as part:
                    fn()
                times[name].append(part.seconds)
                loads[name].append(part)

    median = {name: len(paths) / float(np.median(t)) for name, t in times.items()}
    print(f"model {args.model}, {len(paths)} JPEGs, batch {args.batch_size}, median of {args.repeats}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {datetime.date.today()}; "
          f"load: the highest 1-minute load average during a side's rounds")
    print(f"top-1 agreement keras vs zoo: {agreement:.0%}")
    for name in ("keras", "zoo"):
        rounds = ", ".join(f"{len(paths) / t:.2f}" for t in times[name])
        print(f"{name:6s} {median[name]:7.2f} img/s   (rounds: {rounds}; load {text(highest(loads[name]))})")
    print(f"ratio zoo / keras: {median['zoo'] / median['keras']:.3f}")
    load.verdict()


if __name__ == "__main__":
    main()
