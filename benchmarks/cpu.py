"""CPU speed: `zoo classify` and zoo's inference path against their floors, on this machine.

1. `zoo classify IMAGE` wall time, process start to answer, against a minimal Keras
   script doing the same (keras.applications model, the same weights file, load_img,
   preprocess_input, predict). Both import TensorFlow and load the same weights; what
   zoo takes beyond the script is the CLI's own overhead (goal: under 0.5 s). The
   script's own split (imports, build + weights, the forward pass) says where a cold
   start goes.
2. Batch-1 latency and batch-32 throughput of zoo's inference path against the graph's
   floor, a warmed `tf.function` of the same model called on the same uint8 batch:
   `zoo.tasks.classify.forward_function` (the compiled call `zoo classify`, `Run.predict`
   and evaluation use) and `zoo.classify` on in-memory images (with top-5 labels).
   Goal: within 5 % of the floor.

Sides alternate and medians are reported (on a shared 2-core machine one side can
catch another process's burst; best-of hides that, medians do not), each with the
highest 1-minute load average seen while it was timed (benchmarks/load.py).

    PYTHONPATH=. python benchmarks/cpu.py [--models vgg19,resnet50,inception_v3] [--repeats 5]
    PYTHONPATH=. python benchmarks/cpu.py --smoke      # tiny: CI keeps it working
Results go in benchmarks/README.md, section "CPU speed".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import Load, highest, text  # noqa: E402

# registry name -> (keras.applications module, constructor)
APPLICATIONS = {"vgg19": ("vgg19", "VGG19"), "resnet50": ("resnet50", "ResNet50"),
                "inception_v3": ("inception_v3", "InceptionV3")}

KERAS_SCRIPT = textwrap.dedent("""
    import sys, time
    start = time.perf_counter()
    import numpy as np
    import keras
    from keras.applications import {module}
    imported = time.perf_counter()
    model = {module}.{constructor}(weights=sys.argv[2])
    built = time.perf_counter()
    image = keras.utils.load_img(sys.argv[1], target_size={size})
    batch = {module}.preprocess_input(np.expand_dims(keras.utils.img_to_array(image), 0))
    probabilities = model.predict(batch, verbose=0)[0]
    done = time.perf_counter()
    print(int(probabilities.argmax()), float(probabilities.max()))
    print("split", imported - start, built - imported, done - built)
""")


def run_process(command):
    """Wall seconds of a process from start to exit, and its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command[:4]))} failed: {done.stderr[-2000:]}")
    return wall, done.stdout


def cli_wall_time(name, repeats, folder, load):
    """`zoo classify` against the minimal Keras script, cold processes, alternating."""
    import keras
    from PIL import Image

    from benchmarks.data import load_photo

    module, constructor = APPLICATIONS[name]
    size = (299, 299) if name == "inception_v3" else (224, 224)
    image = folder / "photo.jpg"
    Image.fromarray(load_photo("chelsea")).save(image, quality=90)
    weights = folder / f"{name}.weights.h5"
    keras.utils.set_random_seed(0)
    getattr(keras.applications, constructor)(weights=None).save_weights(weights)
    script = KERAS_SCRIPT.format(module=module, constructor=constructor, size=size)
    zoo_command = [sys.executable, "-m", "zoo", "classify", str(image), "--model", name, "--weights", str(weights),
                   "--top", "1", "--json"]
    keras_command = [sys.executable, "-c", script, str(image), str(weights)]
    imports_command = [sys.executable, "-c", "import tensorflow, keras"]
    walls = {"zoo classify": [], "keras script": [], "import tensorflow, keras": []}
    loads = {key: [] for key in walls}
    splits = []
    for round_ in range(repeats):
        for key, command in (("zoo classify", zoo_command), ("keras script", keras_command),
                             ("import tensorflow, keras", imports_command)):
            with load.timed(f"{key}, round {round_ + 1}") as part:
                wall, out = run_process(command)
            walls[key].append(wall)
            loads[key].append(part)
            if key == "keras script":
                splits.append([float(v) for v in out.splitlines()[-1].split()[1:]])
    medians = {k: statistics.median(v) for k, v in walls.items()}
    split = [statistics.median(s[i] for s in splits) for i in range(3)]
    return {"model": name, "medians_s": medians, "rounds_s": walls,
            "load": {k: highest(v) for k, v in loads.items()},
            "keras_script_split_s": dict(zip(("imports", "build + weights", "image + forward"), split)),
            "zoo_overhead_s": medians["zoo classify"] - medians["keras script"]}


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def inference_path(name, repeats, load, batch_sizes=(1, 32), size=None):
    """zoo's compiled call and `zoo.classify` against a warmed tf.function of the model."""
    import keras
    import numpy as np
    import tensorflow as tf

    import zoo
    from zoo.tasks.classify import forward_function

    keras.utils.set_random_seed(0)
    options = {"input_shape": (size, size, 3), "num_classes": 10} if size else {}
    model = zoo.create(name, weights=None, **options)
    floor_fn = tf.function(lambda batch: model(batch, training=False))
    forward = forward_function(model)
    labels = [f"class {i}" for i in range(model.outputs[0].shape[-1])]
    height, width = model.inputs[0].shape[1:3]
    rng = np.random.default_rng(0)
    rows = []
    for batch_size in batch_sizes:
        x = rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8)
        images = list(x)
        x_tensor = tf.constant(x)
        sides = {
            "floor (tf.function)": lambda: floor_fn(x_tensor).numpy(),
            "zoo forward_function": lambda: forward(x),
            "zoo.classify": lambda: zoo.classify(images, model=model, top=5, labels=labels, batch_size=batch_size),
        }
        for fn in sides.values():  # trace and warm each once
            fn()
        times = {k: [] for k in sides}
        calls = repeats * (5 if batch_size == 1 else 1)
        # One load part for the three sides: they alternate call by call.
        with load.timed(f"{name}, batch {batch_size}") as part:
            for _ in range(calls):  # alternate, so a burst from elsewhere hits every side alike
                for key, fn in sides.items():
                    times[key] += timed(fn, 1)
        medians = {k: statistics.median(v) for k, v in times.items()}
        floor = medians["floor (tf.function)"]
        rows.append({"model": name, "batch": batch_size, "size": [int(height), int(width)], "calls": calls,
                     "median_ms": {k: round(1000 * v, 2) for k, v in medians.items()},
                     "images_per_s": {k: round(batch_size / v, 2) for k, v in medians.items()},
                     "vs_floor": {k: round(v / floor, 3) for k, v in medians.items()}, "load": part.max})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg19,resnet50,inception_v3")
    parser.add_argument("--cli-model", default="vgg19", help="the model `zoo classify` is timed with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: check that the script runs")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    repeats = 1 if args.smoke else args.repeats
    from zoo.cli.console import start_backend

    start_backend()  # TensorFlow without its start-up chatter
    print(f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"{time.strftime('%Y-%m-%d')}; load: the highest 1-minute load average while a figure was timed",
          flush=True)
    load = Load()
    results = {"cli": None, "inference": []}
    with tempfile.TemporaryDirectory() as tmp:
        cli = cli_wall_time("resnet50" if args.smoke else args.cli_model, repeats, Path(tmp), load)
    results["cli"] = cli
    m, loads = cli["medians_s"], cli["load"]
    print(f"zoo classify, one photo, {cli['model']} (median of {repeats} cold starts): "
          f"zoo {m['zoo classify']:.2f} s (load {text(loads['zoo classify'])}), minimal Keras script "
          f"{m['keras script']:.2f} s (load {text(loads['keras script'])}), import tensorflow+keras alone "
          f"{m['import tensorflow, keras']:.2f} s (load {text(loads['import tensorflow, keras'])})")
    split = cli["keras_script_split_s"]
    print("  the script's split: " + ", ".join(f"{k} {v:.2f} s" for k, v in split.items()))
    print(f"  zoo's overhead beyond the script: {cli['zoo_overhead_s']:+.2f} s (goal < 0.5 s)", flush=True)
    for name in (["resnet50"] if args.smoke else models):
        for row in inference_path(name, repeats, load, batch_sizes=(1, 4) if args.smoke else (1, 32),
                                  size=75 if args.smoke else None):
            results["inference"].append(row)
            cells = ", ".join(f"{k} {row['median_ms'][k]:.1f} ms ({row['vs_floor'][k]:.3f}x)"
                              for k in row["median_ms"])
            print(f"{name} batch {row['batch']} at {row['size'][0]} px, median of {row['calls']}: {cells} "
                  f"(load {text(row['load'])})", flush=True)
    results["load"] = load.as_dict()
    load.verdict()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
