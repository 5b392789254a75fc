"""The core (registry, architectures, classify, transfer, training) is backend-agnostic Keras: it
runs on the JAX backend with TensorFlow impossible to import, as on the GPU machines."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed"),
              pytest.mark.large]  # the large tier (--run_large; CI runs it)

SCRIPT = r"""
import json, sys
sys.modules["tensorflow"] = None  # as on a machine without TensorFlow: importing it fails
import numpy as np
import keras, zoo
from zoo.data.digits import load_digits_28, train_test_split_digits
from zoo.transfer import cached_features, replace_head, fine_tune
from zoo.training import Defaults, Tracking, fit, lr_find
x, y = load_digits_28()
x_train, x_test, y_train, y_test = train_test_split_digits(x, y)
labels = [r["predictions"][0]["label"] for r in zoo.classify(list(x_test[:20]), model="lenet5", top=1)]
model = replace_head(zoo.create("lenet5", weights="digits04", include_top=False), 10)
result = fine_tune(model, (x_train[:300], y_train[:300]), (x_test, y_test), epochs=2, freeze_epochs=2,
                   base_lr=1e-2, verbose=0, tracking=Tracking(run_dir=sys.argv[1], tensorboard=False))
suggestion = lr_find(model, (x_train, y_train), num_steps=20, features=cached_features(model)).suggestion
scratch = zoo.create("lenet5", weights=None)
run = sys.argv[1] + "/run"
fit(scratch, (x_train[:200], y_train[:200]), (x_test[:60], y_test[:60]), epochs=2, defaults=Defaults.classifier(),
    tracking=Tracking(run_dir=run, restore_best=False), verbose=0)
resumed = fit(scratch, (x_train[:200], y_train[:200]), (x_test[:60], y_test[:60]), epochs=3,
              defaults=Defaults.classifier(), tracking=Tracking(run_dir=run, resume=True), verbose=0)
# The fast defaults on JAX (told it is on a GPU): bfloat16, 8 steps per XLA-compiled call.
import zoo.training.distribute
from zoo.training import precision
zoo.training.distribute.accelerator = lambda: ("gpu", (9, 0))
with precision("auto"):
    fast = zoo.create("lenet5", weights=None)
fit(fast, (x_train[:256], y_train[:256]), epochs=1, defaults=Defaults.classifier(), tracking=Tracking(checkpoint=None),
    verbose=0)
fast_config = [fast.get_layer("c1").dtype_policy.name, fast.steps_per_execution, bool(fast.jit_compile)]
import pathlib

print(json.dumps({
    "backend": keras.backend.backend(),
    "tensorflow_imported": sys.modules.get("tensorflow") is not None,
    "classify_accuracy": float(np.mean(np.array(labels) == y_test[:20].astype(str))),
    "val_accuracy": result.history[-1]["val_accuracy"],
    "suggestion": suggestion,
    "resumed_epochs": [h["epoch"] for h in resumed.history],
    "event_files": len(list(pathlib.Path(run, "logs").rglob("events.out.tfevents.*"))),
    "fast_config": fast_config,
}))
"""


def test_core_runs_on_jax_without_tensorflow(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ckpt")], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert report["tensorflow_imported"] is False
    assert report["classify_accuracy"] >= 0.95
    assert report["val_accuracy"] > 0.6
    assert 1e-7 < report["suggestion"] < 10
    # zoo.training's checkpoint, resume and TensorBoard logs on JAX, still without TensorFlow.
    assert report["resumed_epochs"] == [1, 2, 3]
    assert report["event_files"] >= 2
    assert report["fast_config"] == ["mixed_bfloat16", 8, True]
