"""Issue 22, items 15, 16 and 19: what a user reads on the console and in the plots.

- 15: a real run prints none of TensorFlow's alarms that are no fault of the user's:
  the DCGAN's grappler `E0000 ... remapper failed` line, `--lr auto`'s "triggered
  tf.function retracing" warning, and `zoo serve`'s restore logged twice.
- 16: a `--minutes` run's epoch header is the budget's clock (`Epoch 3 (4:10 of
  15:00)`), not `Epoch 3/1000`; curves.png of a one-epoch run draws the per-step
  values (metrics.json's `step_history`), not a lone point.
- 19: top_losses.png titles each image `class/file`.

The real runs are subprocesses with the environment a user has (no
`TF_CPP_MIN_LOG_LEVEL` of the tests'), their stderr read as the user would see it.
"""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import forked_zoo

from helpers.processes import stop_with_ctrl_c

ROOT = Path(__file__).resolve().parents[1]
REMAPPER = "remapper failed"
RETRACING = "triggered tf.function retracing"


def user_env():
    """The environment of a user's shell: TensorFlow's log level left to zoo."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def zoo_run(*argv, timeout=600):
    done = forked_zoo.run(argv, env=user_env(), timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def tiny_classifier(num_classes=2):
    import keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(num_classes, activation="softmax")])
    return model


# ------------------------------------------------------- item 15: the DCGAN's remapper line
def test_dcgan_trains_without_a_grappler_remapper_error(capfd):
    """TensorFlow's C++ log goes to file descriptor 2: `capfd` sees what a user would."""
    from zoo.architectures.dcgan import dcgan
    from zoo.training import Defaults, Tracking, fit

    gan = dcgan(latent_dim=4, width=4, seed=0)
    images = np.random.default_rng(0).integers(0, 255, (16, 28, 28, 1), dtype="uint8")
    capfd.readouterr()
    fit(gan, images, epochs=1, batch_size=8, defaults=Defaults.own_loss(compile_args={"optimizer": gan.optimizers()}),
        tracking=Tracking.off(), verbose=0)
    err = capfd.readouterr().err
    assert REMAPPER not in err, err[-3000:]


def test_the_dcgan_leaky_relu_is_keras_leaky_relu():
    """Same values and gradients as Keras' LeakyReLU (the layer it replaces), and it
    survives a save/load of its config."""
    import keras
    import tensorflow as tf

    from zoo.architectures.dcgan import LeakyReLU

    x = tf.constant(np.linspace(-3, 3, 25, dtype="float32"))
    mine, theirs = LeakyReLU(0.2), keras.layers.LeakyReLU(0.2)
    grads = []
    for layer in (mine, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        grads.append(tape.gradient(loss, x).numpy())
        np.testing.assert_allclose(y.numpy(), theirs(x).numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(mine))
    assert type(again) is LeakyReLU and again.negative_slope == 0.2


@pytest.mark.large  # a real `zoo train gan` (about 10 s)
def test_a_gan_run_prints_no_remapper_line_and_its_curves_are_curves(tmp_path):
    from zoo.plots import curve_series

    done = zoo_run("train", "gan", "--data", "digits", "--width", 8, "--latent-dim", 8, "--batch-size", 64,
                   "--epochs", 1, "--out", tmp_path / "run", "--no-tensorboard")
    assert REMAPPER not in done.stderr and "E0000" not in done.stderr, done.stderr[-3000:]
    assert RETRACING not in done.stderr
    # Item 16: one epoch of 23 steps draws 23 points per panel, not one.
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1]
    for panel in ("d_loss", "g_loss"):
        x, y = curve_series(metrics["history"], panel, metrics["step_history"])[f"train {panel} (per step)"]
        assert len(x) == 23 and len(set(y)) > 1 and 0 < min(x) < max(x) < 1


# ------------------------------------------------------ item 15: --lr auto's retracing line
def test_new_models_keras_functions_are_not_reported_as_retracing(caplog, capfd):
    """Six models trained one after the other, a step each: TensorFlow counts their
    train functions as one function traced six times (five in ten calls warns)."""
    from zoo.training import Defaults, Tracking, fit

    x, y = np.zeros((4, 8), "float32"), np.array([0, 1, 0, 1])
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for _ in range(6):
            fit(tiny_classifier(), (x, y), epochs=1, batch_size=4, defaults=Defaults.classifier(),
                tracking=Tracking.off(), verbose=0)
    said = [r.getMessage() for r in caplog.records] + [capfd.readouterr().err]
    assert not any(RETRACING in m for m in said), said


@pytest.mark.large  # a real `zoo finetune --lr auto` (about 15 s)
def test_lr_auto_prints_no_retracing_warning(digits, tmp_path):
    from helpers.digit_folders import write_folder

    x_train, _, y_train, _ = digits
    photos = write_folder(tmp_path / "photos", x_train, y_train, classes=(1, 7), per_class=20)
    done = zoo_run("finetune", photos, "--model", "lenet5", "--epochs", 1, "--lr", "auto", "--out",
                   tmp_path / "run", "--no-tensorboard")
    assert "lr auto:" in done.stdout
    assert RETRACING not in done.stderr and "WARNING:tensorflow" not in done.stderr, done.stderr[-3000:]


# ---------------------------------------------------------- item 15: zoo serve's restores
def test_zoo_serve_logs_each_restore_once(tmp_path):
    """A TF1-style SavedModel (its variables restored through a Saver, as TF Serving's
    own test models are): TensorFlow's "Restoring parameters" came out twice, through
    its own handler and the root one; now zoo's `serving ... version 1` line is the one."""
    from helpers.tf_serving_models import half_plus_two

    half_plus_two(tmp_path / "models" / "half" / "1")
    process = subprocess.Popen([sys.executable, "-m", "zoo", "serve", tmp_path / "models", "--port", "0",
                                "--grpc-port", "-1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=user_env())
    try:
        first = process.stdout.readline()  # printed once the models are loaded
    finally:
        _, err = stop_with_ctrl_c(process)
    assert first.startswith("REST on http://127.0.0.1:"), first + err[-3000:]
    version = str(tmp_path / "models" / "half" / "1")
    lines = [line for line in err.splitlines() if version in line]
    assert len(lines) == 1 and re.search(r"serving half version 1 from ", lines[0]), err[-3000:]
    assert "Restoring parameters" not in err and "INFO:tensorflow" not in err, err[-3000:]


# ------------------------------------------------------------ item 16: the budget's header
def test_clock():
    from zoo.training.callbacks import clock

    assert [clock(s) for s in (0, 9, 250, 900, 3725)] == ["0:00", "0:09", "4:10", "15:00", "1:02:05"]


def test_the_budget_header_counts_the_whole_runs_training_time():
    from zoo.training.callbacks import RunProgress

    resumed = [{"epoch": 1, "seconds": 125.0}, {"epoch": 2, "seconds": 125.4}]  # two epochs before a kill
    assert RunProgress(1000, minutes=15, history=resumed).header(2) == "Epoch 3 (4:10 of 15:00)"
    assert RunProgress(4, history=resumed).header(2) == "Epoch 3/4"


def test_a_time_budget_run_heads_each_epoch_with_its_clock(capsys):
    from zoo.training import Defaults, Tracking, fit

    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    capsys.readouterr()
    result = fit(tiny_classifier(), (x, y), epochs=1000, batch_size=16, defaults=Defaults.classifier(), verbose=2,
                 tracking=Tracking.off(minutes=0.02))  # 1.2 s
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("Epoch")]
    assert headers[0] == "Epoch 1 (0:00 of 0:01)", out
    assert len(headers) == len(result.history) and all(re.fullmatch(r"Epoch \d+ \(0:0[01] of 0:01\)", h)
                                                       for h in headers), out
    # A run without a budget keeps Keras' count.
    fit(tiny_classifier(), (x, y), epochs=2, batch_size=16, defaults=Defaults.classifier(), verbose=2,
        tracking=Tracking.off())
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch")] == [
        "Epoch 1/2", "Epoch 2/2"]


@pytest.mark.large  # a real `zoo train text-generation --minutes` (about 15 s)
def test_a_minutes_run_prints_the_budget_not_an_epoch_cap(tmp_path):
    import pydoc_data.topics

    text = tmp_path / "text.txt"
    text.write_text("".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[:40000])
    done = zoo_run("train", "text-generation", "--text", text, "--minutes", 0.1, "--units", 16, "--seq-len", 32,
                   "--batch-size", 16, "--out", tmp_path / "run", "--no-tensorboard")
    headers = [line for line in done.stdout.splitlines() if line.startswith("Epoch")]
    assert headers and all(re.fullmatch(r"Epoch \d+ \(\d+:\d\d of 0:06\)", line) for line in headers), done.stdout
    assert headers[0] == "Epoch 1 (0:00 of 0:06)"
    assert "/1000" not in done.stdout


# ------------------------------------------------------------ item 16: per-step curves
def test_one_epoch_draws_a_curve_per_panel_and_keeps_the_epoch_records(tmp_path):
    from zoo.plots import curve_series, plot_history
    from zoo.training import Defaults, Tracking, fit

    x = np.random.default_rng(0).normal(size=(96, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    result = fit(tiny_classifier(), (x, y), (x[:32], y[:32]), epochs=1, batch_size=8,
                 defaults=Defaults.classifier(1e-2), tracking=Tracking(run_dir=tmp_path, tensorboard=False),
                 verbose=0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # The per-epoch records are as they were: one record, its scalars, no step data.
    assert metrics["history"] == result.history and len(metrics["history"]) == 1
    assert set(metrics["history"][0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    steps = metrics["step_history"]
    assert len(steps) == 12 and [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    # The steps' mean is the epoch's (Keras logs running means; each record is one step's own).
    assert np.mean([s["loss"] for s in steps]) == pytest.approx(metrics["history"][0]["loss"], rel=1e-4)
    for panel in ("loss", "accuracy"):
        series = curve_series(metrics["history"], panel, steps)
        points = sum(len(x) for x, _ in series.values())
        assert len(series[f"train {panel} (per step)"][0]) == 12 and points == 14, series
    assert plot_history(metrics["history"], tmp_path / "curves.png", step_history=steps).stat().st_size > 0


def test_step_history_is_thinned_and_survives_a_resume(tmp_path):
    from zoo.training import Defaults, Tracking, fit
    from zoo.training.callbacks import STEP_POINTS, step_records

    # 200 steps of running means -> at most STEP_POINTS stretches whose means average back.
    values = np.random.default_rng(1).normal(size=200)
    running = [(k + 1, {"loss": float(values[:k + 1].mean())}) for k in range(200)]
    records = step_records(running, 3, {"phase": 2})
    assert len(records) == STEP_POINTS and records[0]["epoch"] == 3 and records[0]["phase"] == 2
    assert 2 < records[0]["at"] < records[-1]["at"] < 3
    assert records[-1]["loss"] == pytest.approx(values[-4:].mean(), abs=1e-4)  # the last stretch: 4 steps
    # A resumed run keeps the earlier epochs' steps (the checkpoint holds them).
    x = np.zeros((16, 8), "float32")
    y = np.array([0, 1] * 8)
    fit(tiny_classifier(), (x, y), epochs=1, batch_size=4, defaults=Defaults.classifier(),
        tracking=Tracking(run_dir=tmp_path, tensorboard=False), verbose=0)
    result = fit(tiny_classifier(), (x, y), epochs=2, batch_size=4, defaults=Defaults.classifier(),
                 tracking=Tracking(run_dir=tmp_path, tensorboard=False, resume=True), verbose=0)
    assert [s["epoch"] for s in result.step_history] == [1] * 4 + [2] * 4


# ------------------------------------------------------------ item 19: top losses' titles
def test_top_losses_titles_carry_the_class_folder(tmp_path, monkeypatch):
    import zoo
    import zoo.plots
    from zoo.tasks.image_classifier import evaluate

    titles = []
    save = zoo.plots._save

    def keep_titles(fig, path):
        if Path(path).name == "top_losses.png":
            titles.extend(ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_title())
        return save(fig, path)

    monkeypatch.setattr(zoo.plots, "_save", keep_titles)
    model = zoo.create("lenet5", weights=None, num_classes=2)
    images = np.random.default_rng(0).integers(0, 255, (2, 28, 28, 3), dtype="uint8")
    files = [tmp_path / "photos" / "cat" / "10.jpg", tmp_path / "photos" / "coffee" / "10.jpg"]
    evaluate(model, [(images, np.array([0, 1]))], ["cat", "coffee"], out=tmp_path, files=files)
    assert sorted(titles) == ["cat/10.jpg", "coffee/10.jpg"]
    assert (tmp_path / "top_losses.png").is_file()
