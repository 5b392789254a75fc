"""Data pipeline throughput: `zoo.data` (tf.data) vs a plain Pillow loop and a good one.

Every side decodes the same JPEG files and resizes them to 224x224 uint8 RGB. The files
are crops of real photos (scikit-learn's and scikit-image's sample photos) written
to a temporary folder by `make_photo_folder`, which other benchmarks import too:

    from benchmarks.data import make_photo_folder
    make_photo_folder("/tmp/photos", per_class=200)      # 2 classes x 200 JPEGs

Every rate is printed with the highest 1-minute load average seen while that side was
timed (benchmarks/load.py).

Run:  PYTHONPATH=. python benchmarks/data.py [--per-class 200] [--repeats 3]
      PYTHONPATH=. python benchmarks/data.py --smoke     # tiny: checks the script end to end
Results go in benchmarks/README.md, section "Data pipeline".
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load import Load, highest, text  # noqa: E402

# Photos that ship with scikit-learn / scikit-image, distinct enough that a classifier
# can tell crops of one from crops of another.
PHOTOS = ("china", "flower", "chelsea", "coffee", "astronaut", "rocket")


def load_photo(name):
    """One of `PHOTOS` as a uint8 RGB array."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"`name` must be one of {PHOTOS}. Received: name={name!r}")
    return getattr(skimage.data, name)()


def make_photo_folder(path, per_class=200, size=(480, 640), classes=("china", "flower"), seed=0, quality=90):
    """Write an image-classification folder of JPEG crops of real photos.

    Each class is one photo; each image is a random crop (35-90 % of the photo's
    short side, random position, random horizontal flip, slight brightness change)
    resized to `size`. Classes are visually distinct, so a classifier learns them.

    Args:
        path: str or path. Folder to create (sub-folders per class).
        per_class: int. Images per class. Defaults to `200`.
        size: `(height, width)` of each JPEG. Defaults to `(480, 640)` (VGA, a
            small photo; the sources are 427x640 and 512x512, so crops are upscaled).
        classes: sequence of names from `PHOTOS`; each becomes a class. Defaults to
            `("china", "flower")`.
        seed: int. Defaults to `0`.
        quality: int. JPEG quality. Defaults to `90`.

    Returns:
        The folder, as a `Path`. Existing files are overwritten.
    """
    from PIL import Image

    root = Path(path)
    height, width = size
    rng = np.random.default_rng(seed)
    for name in classes:
        photo = Image.fromarray(load_photo(name))
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        pw, ph = photo.size
        for i in range(per_class):
            crop_h = int(min(ph, pw * height / width) * rng.uniform(0.35, 0.9))
            crop_w = int(crop_h * width / height)
            top = int(rng.integers(0, ph - crop_h + 1))
            left = int(rng.integers(0, pw - crop_w + 1))
            image = photo.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.BILINEAR)
            if rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            array = np.asarray(image, dtype="float32") * rng.uniform(0.85, 1.15)
            Image.fromarray(np.clip(array, 0, 255).astype("uint8")).save(folder / f"{name}_{i:04d}.jpg", quality=quality)
    return root


def pil_loop(files, size=224):
    """The baseline: open, convert, resize, one file after another."""
    from PIL import Image

    out = np.empty((len(files), size, size, 3), dtype="uint8")
    for i, file in enumerate(files):
        with Image.open(file) as image:
            out[i] = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    return out


def pil_threads(files, size=224, workers=None):
    """The Pillow loop people write well: JPEG draft mode (libjpeg's DCT scaling to the
    smallest size at least `size`, as zoo.data decodes) and a thread per core (Pillow
    decodes and resizes without the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    out = np.empty((len(files), size, size, 3), dtype="uint8")

    def load(i):
        with Image.open(files[i]) as image:
            image.draft("RGB", (size, size))
            out[i] = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))

    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(load, range(len(files))))
    return out


def tf_epoch(dataset):
    count = 0
    for images, _ in dataset:
        count += int(images.shape[0])
    return count


def measure(fn, count, repeats):
    """Best of `repeats` runs: (images per wall second, CPU milliseconds per image).

    The CPU figure (all threads of this process) is what contention from other
    processes on a shared machine distorts least.
    """
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return count / best_wall, 1000 * best_cpu / count


def bench_size(size, per_class, repeats, batch_size, folder=None, load=None):
    import zoo.data

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(folder) if folder else make_photo_folder(Path(tmp) / "photos", per_class, size=size)
        start = time.perf_counter()
        report = zoo.data.scan_folder(root, validation_split=0, verbose=False)
        check_rate = report.num_train / (time.perf_counter() - start)
        files = report.train_files
        n = len(files)
        # cache=False: every epoch decodes again, which is what is being measured.
        dataset = zoo.data.from_files(
            files, report.train_labels, 224, batch_size=batch_size, cache=False,
            pillow_files=report.pillow_files,
        )
        tf_epoch(dataset)  # trace the graph and warm the thread pool once
        pil_threads(files[:8])  # start the pool's threads once
        # Alternate the three so a burst of load from elsewhere hits each alike; report
        # medians (best-of would hide which side a burst happened to hit).
        load = load or Load()
        pil, threads, tf = [], [], []
        loads = {"pil": [], "threads": [], "tf": []}
        for round_ in range(repeats):
            for key, rounds, fn in (("pil", pil, lambda: pil_loop(files)), ("threads", threads, lambda: pil_threads(files)),
                                    ("tf", tf, lambda: tf_epoch(dataset))):
                with load.timed(f"{key}, {size[1]}x{size[0]}, round {round_ + 1}") as part:
                    rounds.append(measure(fn, n, 1))
                loads[key].append(part)
        loads = {key: text(highest(parts)) for key, parts in loads.items()}

    def medians(rounds):
        return float(np.median([r for r, _ in rounds])), float(np.median([c for _, c in rounds]))

    (pil_rate, pil_cpu), (threads_rate, threads_cpu), (tf_rate, tf_cpu) = medians(pil), medians(threads), medians(tf)
    print(f"{n} JPEGs of {size[1]}x{size[0]} ({', '.join(report.classes)}) -> 224x224 uint8, medians of {repeats}")
    print(f"  up-front check (Pillow, threads): {check_rate:,.0f} files/s")
    print(f"  PIL loop:                {pil_rate:7,.0f} img/s   {pil_cpu:.2f} CPU-ms/img   load {loads['pil']}")
    print(f"  PIL draft + {os.cpu_count()} threads:   {threads_rate:7,.0f} img/s   {threads_cpu:.2f} CPU-ms/img   "
          f"load {loads['threads']}")
    print(f"  zoo.data (tf):           {tf_rate:7,.0f} img/s   {tf_cpu:.2f} CPU-ms/img   load {loads['tf']}")
    print(f"  zoo.data vs PIL loop:    {tf_rate / pil_rate:.2f}x wall, {pil_cpu / tf_cpu:.2f}x CPU")
    print(f"  zoo.data vs PIL threads: {tf_rate / threads_rate:.2f}x wall, {threads_cpu / tf_cpu:.2f}x CPU")
    return {"size": size, "files": n, "check": check_rate, "pil": pil_rate, "pil_threads": threads_rate,
            "tf": tf_rate, "pil_cpu_ms": pil_cpu, "pil_threads_cpu_ms": threads_cpu, "tf_cpu_ms": tf_cpu,
            "load": loads}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sizes", default="480x640,240x320",
                        help="comma-separated HxW sizes of the JPEGs to write")
    parser.add_argument("--folder", help="use this folder instead of writing temporary ones")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: 16 small JPEGs per class, one round (checks the script, figures mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.per_class, args.repeats, args.sizes = 16, 1, "240x320"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"machine: {os.cpu_count()} CPU cores ({platform.machine()}), {time.strftime('%Y-%m-%d')}; load: the "
          f"highest 1-minute load average while a side was timed")
    load = Load()
    results = [bench_size(size, args.per_class, args.repeats, args.batch_size, args.folder, load) for size in sizes]
    load.verdict()
    return results


if __name__ == "__main__":
    main()
