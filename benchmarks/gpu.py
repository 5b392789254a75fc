"""GPU speed: zoo's training and inference path against the peers, side by side.

The rows are issue 14's: ResNet50 and VGG19 at 224 px, InceptionV3 at 299 px, bf16,
synthetic data, training (SGD with momentum, as the peers) and inference at batch 256
(VGG19: 128). zoo's side goes through zoo's own path, never a hand-written loop:

- training: `zoo.create(name, weights=None)` built under `zoo.training.precision("auto")`,
  trained by `zoo.training.fit` on uint8 host arrays (images stay uint8 until the
  model), with its fast defaults (XLA, 8 steps per compiled call on a GPU);
- inference: `zoo.tasks.classify.forward_function(model)` on uint8 host batches, what
  `zoo classify` and `Run.predict` call.

In the same run, the peers are imported from `../shared/bench/` (`anchor_bench.py`,
`anchor_bench3.py`): torch eager and torch.compile when torch and CUDA are there, and
the jitted Keras-JAX loop (`stateless_call` under `jax.jit`, data already on the device).
The table gives each row's best peer, zoo/peer, and the fraction of the card's bf16
peak, measured in the same run with a large bf16 matmul.

`--profile` splits ResNet50 training into what one compiled step costs on data already
on the device, what feeding it from host memory adds, and what the rest of zoo's path
(callbacks, the Keras loop) adds.

Run (a machine with an NVIDIA GPU; JAX backend, TensorFlow not needed):
    KERAS_BACKEND=jax python benchmarks/gpu.py [--rows resnet50-train,...] [--profile]
    python benchmarks/gpu.py --smoke      # tiny, on a CPU: keeps the script working in CI
On a GPU the table, with the device's name, is written into benchmarks/README.md
(section "GPU speed") — only when the run was quiet: each row carries the highest
1-minute load average seen while it was measured (zoo's side and the peers), and above
1.5 during any timed part the README is left as it is, with one line saying why
(benchmarks/load.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import Load, text  # noqa: E402

# 2 x multiply-accumulates of one forward pass per image; training is ~3x.
GFLOP_FORWARD = {"resnet50": 8.2, "vgg19": 39.3, "inception_v3": 11.5}
ZOO_NAMES = {"resnet50": "resnet50", "vgg19": "vgg19", "inception_v3": "inception_v3"}
# (model, mode, batch, image size): issue 14's six rows.
ROWS = [("resnet50", "train", 256, 224), ("vgg19", "train", 128, 224), ("inception_v3", "train", 256, 299),
        ("resnet50", "infer", 256, 224), ("vgg19", "infer", 128, 224), ("inception_v3", "infer", 256, 299)]
GOALS = {("resnet50", "train"): 7000, ("vgg19", "train"): 4200, ("inception_v3", "train"): 4700,
         ("resnet50", "infer"): 25000, ("vgg19", "infer"): 15000, ("inception_v3", "infer"): 18500}
PEERS_DIR = ROOT.parent / "shared" / "bench"
README_START, README_END = "<!-- gpu.py table -->", "<!-- /gpu.py table -->"


def device_name():
    import jax

    device = jax.devices()[0]
    return getattr(device, "device_kind", device.platform), device.platform


def matmul_peak_tflops(size=8192, repeats=20):
    """bf16 TFLOP/s of a large square matmul: the card's practical ceiling."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), jnp.bfloat16)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = f(a)
    out.block_until_ready()
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e12


def build(name, size, num_classes=1000):
    import zoo
    from zoo.training import precision

    with precision("auto"):
        return zoo.create(ZOO_NAMES[name], weights=None, input_shape=(size, size, 3), num_classes=num_classes)


def synthetic(batch, size, count, num_classes=1000, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    # The same images repeated: generating hundreds of MB of noise would time numpy.
    return np.broadcast_to(x[None], (count, *x.shape)).reshape(-1, size, size, 3), \
        rng.integers(0, num_classes, batch * count)


def zoo_train(name, batch, size, steps, warmup, num_classes=1000):
    """Images per second through `zoo.training.fit` (after a warm-up call compiles it)."""
    import keras

    from zoo.training import Defaults, Tracking, fit

    model = build(name, size, num_classes)
    x, y = synthetic(batch, size, max(steps, warmup), num_classes)
    common = dict(batch_size=batch, tracking=Tracking.off(), verbose=0, shuffle=False)
    fit(model, (x[:batch * warmup], y[:batch * warmup]),
        defaults=Defaults.classifier().replace(optimizer=keras.optimizers.SGD(0.01, momentum=0.9)), **common)
    start = time.perf_counter()
    fit(model, (x[:batch * steps], y[:batch * steps]), compile=False, **common)
    return batch * steps / (time.perf_counter() - start), model


def zoo_infer(name, batch, size, steps, warmup, model=None):
    """Images per second through `zoo.tasks.classify.forward_function` on uint8 host batches."""
    from zoo.tasks.classify import forward_function

    model = model or build(name, size)
    x, _ = synthetic(batch, size, 1)
    forward = forward_function(model)
    for _ in range(warmup):
        forward(x)
    start = time.perf_counter()
    for _ in range(steps):
        forward(x)
    return batch * steps / (time.perf_counter() - start)


def profile_train(name, batch, size, steps, warmup):
    """Where ResNet50 training's time goes: one compiled step on device-resident data
    (compute), the same fed from host uint8 arrays (+ input), and zoo's fit (+ loop)."""
    import jax
    import keras
    import numpy as np

    model = build(name, size)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def loss(trainable, non_trainable, x, y):
        predictions, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, predictions), non_trainable

    grad = jax.value_and_grad(loss, has_aux=True)

    @jax.jit
    def step(state, x, y):
        trainable, non_trainable, slots = state
        (value, non_trainable), grads = grad(trainable, non_trainable, x, y)
        trainable, slots = optimizer.stateless_apply(slots, grads, trainable)
        return value, (trainable, non_trainable, slots)

    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    host_x, host_y = synthetic(batch, size, 1)
    device_x, device_y = jax.device_put(host_x), jax.device_put(host_y)

    def timed(feed):
        nonlocal state
        for _ in range(warmup):
            value, state = step(state, *feed())
        value.block_until_ready()
        start = time.perf_counter()
        for _ in range(steps):
            value, state = step(state, *feed())
        value.block_until_ready()
        return batch * steps / (time.perf_counter() - start)

    # Each twice, the second counted: the first also pays for whatever the first calls
    # after compilation still set up (allocations, autotuning).
    compute = [timed(lambda: (device_x, device_y)) for _ in range(2)][-1]
    fed = [timed(lambda: (np.asarray(host_x), np.asarray(host_y))) for _ in range(2)][-1]
    through_zoo, _ = zoo_train(name, batch, size, steps, warmup)
    return {"compute only": compute, "+ input from host": fed, "zoo.training.fit": through_zoo}


def peers(name, mode, batch, steps, smoke):
    """The peers' images per second, by name, from ../shared/bench (what can run here)."""
    if not PEERS_DIR.is_dir():
        return {}, f"peers not found ({PEERS_DIR})"
    sys.path.insert(0, str(PEERS_DIR))
    import anchor_bench as ab

    ab.GFLOP_FWD.setdefault("inception_v3", GFLOP_FORWARD["inception_v3"])
    found, notes = {}, []
    before = len(ab.RESULTS)
    plan = []
    import anchor_bench3 as ab3

    try:
        import torch

        if torch.cuda.is_available() and not smoke:
            if name == "inception_v3":
                plan += [lambda: ab3.torch_inception(mode, batch), lambda: ab3.torch_inception(mode, batch, True)]
            else:
                plan += [lambda: ab.torch_bench(name, mode, batch), lambda: ab.torch_bench(name, mode, batch, True)]
        else:
            notes.append("torch: no CUDA here")
    except ImportError:
        notes.append("torch: not installed")
    if name == "inception_v3" and not smoke:
        plan.append(lambda: ab3.keras_inception(mode, batch))
    elif not smoke:
        plan.append(lambda: ab.keras_jax_bench(name, mode, batch))
    elif name == "resnet50" and mode == "infer":
        # Smoke: the anchors are fixed at 224 px; one tiny call shows they still run.
        plan.append(lambda: ab.keras_jax_bench(name, mode, 1, steps=1))
    for run in plan:
        try:
            run()
        except Exception as error:  # noqa: BLE001 — one peer failing must not lose the table
            notes.append(f"a peer failed: {type(error).__name__}: {str(error)[:200]}")
    for result in ab.RESULTS[before:]:
        found[result["name"]] = result["img_per_s"]
    return found, "; ".join(notes)


def table(rows, device, peak):
    lines = [f"| images/s on {device} | zoo | best peer | which | zoo/peer | zoo % of bf16 peak | goal | load |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        best = max(row["peers"].items(), key=lambda item: item[1]) if row["peers"] else (None, None)
        ratio = f"{row['zoo'] / best[1]:.2f}" if best[1] else "—"
        flop = GFLOP_FORWARD[row["model"]] * (3 if row["mode"] == "train" else 1) * 1e9
        share = f"{100 * row['zoo'] * flop / (peak * 1e12):.0f} %" if peak else "—"
        lines.append(f"| {row['model']} {row['mode']}, batch {row['batch']}, {row['size']} px | {row['zoo']:,.0f} | "
                     f"{best[1] and f'{best[1]:,.0f}' or '—'} | {best[0] or '—'} | {ratio} | {share} | "
                     f"{GOALS[(row['model'], row['mode'])]:,} | {text(row.get('load'))} |")
    return "\n".join(lines)


def write_readme(table_text):
    path = ROOT / "benchmarks" / "README.md"
    readme = path.read_text()
    block = f"{README_START}\n{table_text}\n{README_END}"
    if README_START in readme:
        head, rest = readme.split(README_START, 1)
        readme = head + block + rest.split(README_END, 1)[1]
    else:
        readme += f"\n## GPU speed\n\n{block}\n"
    path.write_text(readme)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on a CPU: check that the script runs")
    parser.add_argument("--rows", help="comma-separated MODEL-MODE (e.g. resnet50-train); default: all six")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="where ResNet50 training's time goes")
    parser.add_argument("--profile-batch", type=int, default=256)
    parser.add_argument("--profile-size", type=int, default=224)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.smoke and os.environ["KERAS_BACKEND"] == "jax":
        # As on the GPU machines, which have no TensorFlow: any import of it fails.
        sys.modules["tensorflow"] = None

    import keras

    rows = ROWS
    if args.rows is not None:
        wanted = set(args.rows.split(","))
        rows = [r for r in ROWS if f"{r[0]}-{r[1]}" in wanted]
    elif args.smoke:  # every code path, at the least cost: ResNet50's two rows
        rows = [r for r in ROWS if r[0] == "resnet50"]
    steps, warmup = (2, 2) if args.smoke else (args.steps, 5)
    device, platform = device_name()
    peak = None if args.smoke or platform == "cpu" else matmul_peak_tflops()
    print(f"device: {device} ({platform}); Keras {keras.__version__} on {keras.backend.backend()}; "
          f"bf16 matmul peak: {f'{peak:.0f} TFLOP/s' if peak else 'not measured (smoke or CPU)'}", flush=True)
    load = Load()
    results = []
    for name, mode, batch, size in rows:
        if args.smoke:
            batch, size = 2, 75  # the smallest input InceptionV3 takes
        # One load part per row: zoo's side and the peers it is compared with.
        with load.timed(f"{name} {mode}, batch {batch}") as part:
            if mode == "train":
                zoo_rate, _ = zoo_train(name, batch, size, steps, warmup, num_classes=10 if args.smoke else 1000)
            else:
                zoo_rate = zoo_infer(name, batch, size, steps, warmup)
            found, note = peers(name, mode, batch, steps, args.smoke)
        result = {"model": name, "mode": mode, "batch": batch, "size": size, "zoo": zoo_rate, "peers": found,
                  "load": part.max}
        results.append(result)
        print(json.dumps({**result, "note": note}), flush=True)
    table_text = table(results, device, peak)
    if args.smoke:
        table_text += ("\n(smoke: tiny sizes on a CPU, and the peers, when found, at their own sizes: the figures "
                       "mean nothing)")
    print(table_text)
    if args.profile:
        batch, size = (2, 75) if args.smoke else (args.profile_batch, args.profile_size)
        with load.timed("profile, ResNet50 training") as part:
            parts = profile_train("resnet50", batch, size, steps, warmup)
        print(f"ResNet50 training, batch {batch}, {size} px (images/s): "
              + ", ".join(f"{k} {v:,.1f}" for k, v in parts.items())
              + f"; zoo's path at {parts['zoo.training.fit'] / parts['compute only']:.0%} of compute only"
              + f"; load {part.describe()}")
        results.append({"profile": parts, "load": part.max})
    print(f"TensorFlow imported: {sys.modules.get('tensorflow') is not None}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    load.verdict()
    if platform == "gpu" and not args.smoke and load.may_write_readme():
        write_readme(f"{time.strftime('%Y-%m-%d')}, {device}, one run of `benchmarks/gpu.py` (load: the highest "
                     f"1-minute load average while the row was measured):\n\n{table_text}")
    return results


if __name__ == "__main__":
    main()
