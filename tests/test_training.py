"""`zoo.training`: the one fit path — resume for any number of optimizers, checkpoints
that write only what changes, the best epoch, TensorBoard logs, lr_find as a callback,
and the commands that share it (`zoo train classifier` = `zoo finetune`)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import forked_zoo

import zoo
from helpers.digit_folders import write_folder
from zoo.training import Checkpoint, Defaults, Tracking, fit

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
GAN = [sys.executable, str(ROOT / "tests" / "helpers" / "mini_gan.py")]


def zoo_cli(*args, timeout=600):
    return forked_zoo.run(args, env=ENV, timeout=timeout)


# ------------------------------------------------------------------ two optimizers
@pytest.mark.large
def test_gan_with_two_optimizers_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    whole = subprocess.run([*GAN, tmp_path / "whole"], capture_output=True, text=True, env=ENV, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]

    run = tmp_path / "killed"
    process = subprocess.Popen([*GAN, run, "--pause-at", "3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=ENV)
    for line in process.stdout:  # wait until it is in the middle of epoch 3
        if "PAUSED" in line:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epochs_done"] == 2
    assert set(state["last_layout"]["optimizers"]) >= {"d_optimizer", "g_optimizer"}
    assert not (run / "final.npz").exists()

    resumed = subprocess.run([*GAN, run, "--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 3/4" in resumed.stdout and "Epoch 1/4" not in resumed.stdout
    assert "epochs in history: [1, 2, 3, 4]" in resumed.stdout
    with np.load(tmp_path / "whole" / "final.npz") as a, np.load(run / "final.npz") as b:
        assert sorted(a.files) == sorted(b.files) and len(a.files) == 8
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_resume_restores_every_optimizer_and_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    from helpers.mini_gan import LATENT, MiniGAN, real_points

    def make():
        keras.utils.set_random_seed(0)
        gan = MiniGAN()
        gan.build((None, LATENT))
        return gan

    args = dict(batch_size=64, shuffle=False, tracking=Tracking(run_dir=tmp_path, tensorboard=False), verbose=0)
    gan = make()
    fit(gan, real_points(256), epochs=1, defaults=Defaults.own_loss(compile_args={
        "d_optimizer": keras.optimizers.Adam(1e-3), "g_optimizer": keras.optimizers.Adam(1e-3)}), **args)
    saved = [np.array(v) for v in gan.d_optimizer.variables]
    fresh = make()
    fresh.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
    checkpoint = Checkpoint(tmp_path / "checkpoints", resume=True)
    assert checkpoint.restore(fresh, fresh) == 1
    assert fresh.d_optimizer.built and int(fresh.d_optimizer.iterations) == 4
    for a, b in zip(saved, fresh.d_optimizer.variables):
        np.testing.assert_array_equal(a, np.asarray(b))
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="does not fit"):
        checkpoint.restore(other)


# ------------------------------------------------------- checkpoints: what changes
def test_checkpoint_writes_the_frozen_base_once_and_only_the_head_each_epoch(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    x = keras.layers.Dense(512, activation="relu", name="base_1")(inputs)
    x = keras.layers.BatchNormalization(name="base_bn")(x)
    x = keras.layers.Dense(256, activation="relu", name="base_2")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head_predictions")(x)
    model = keras.Model(inputs, outputs)
    for layer in model.layers[1:-1]:
        layer.trainable = False
    x_train = np.random.default_rng(0).normal(size=(128, 64)).astype("float32")
    y_train = np.arange(128) % 3
    times = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            frozen = list((tmp_path / "checkpoints").glob("frozen-*.npz"))
            times.append([os.stat(p).st_mtime_ns for p in frozen])

    fit(model, (x_train, y_train), (x_train, y_train), epochs=3, defaults=Defaults.classifier(),
        tracking=Tracking(run_dir=tmp_path, tensorboard=False), verbose=0, callbacks=[Watch()])
    frozen = list((tmp_path / "checkpoints").glob("frozen-*.npz"))
    assert len(frozen) == 1
    assert times[0] == times[1] == times[2], "the frozen base was written again"
    last = (tmp_path / "checkpoints" / "last.npz").stat().st_size
    base = frozen[0].stat().st_size
    # The head (771 weights) plus Adam's slots, against ~165k frozen weights.
    assert last * 20 < base, (last, base)


# -------------------------------------------------------------------- best epoch
class Sabotage(keras.callbacks.Callback):
    """From epoch `at` on, scrambles the head after every epoch: the metric falls."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 >= self.at:
            rng = np.random.default_rng(epoch)
            for layer in self.model.layers:
                if layer.name.startswith("head_") and layer.weights:
                    for w in layer.weights:
                        w.assign(rng.normal(0, 5.0, tuple(w.shape)).astype("float32"))


def test_a_run_whose_metric_peaks_early_keeps_the_best_epoch_as_its_model(tmp_path, digits):
    x_train, x_test, y_train, y_test = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(1, 4, 7), per_class=40)
    out = tmp_path / "run"
    # Phase 2 starts each epoch from a scrambled head and cannot catch up in one epoch
    # at this learning rate: the best epoch is in phase 1.
    run = zoo.train("classifier", data, model="lenet5", epochs=2, freeze_epochs=3, lr=1e-2, batch_size=16,
                    out=out, verbose=0, callbacks=[Sabotage(at=4)])
    metrics = json.loads((out / "metrics.json").read_text())
    history = {h["epoch"]: h["val_accuracy"] for h in metrics["history"]}
    best = max(history, key=lambda e: history[e])
    assert metrics["best_epoch"] <= 3 and history[metrics["best_epoch"]] == history[best]
    assert metrics["last_epoch"] == 5 and history[5] < history[best]
    assert "best epoch" in metrics["model_weights"] and metrics["best_epoch"] != 5
    # The saved model is the best epoch's, and its validation accuracy says so.
    assert metrics["val_accuracy"] == pytest.approx(metrics["best_value"], abs=1e-6)
    assert (out / "last.weights.h5").is_file()
    last = run.load_last()
    assert not np.allclose(np.asarray(last.get_layer("head_predictions").kernel),
                           np.asarray(run.model.get_layer("head_predictions").kernel))
    assert not (out / "checkpoints").exists(), "a finished run keeps no checkpoints"


# ------------------------------------------------------------------- TensorBoard
def test_tensorboard_logs_hold_every_epoch_and_the_confusion_matrix(tmp_path, digits):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(0, 3), per_class=30)
    out = tmp_path / "run"
    zoo.train("classifier", data, model="lenet5", epochs=1, freeze_epochs=2, lr=1e-2, batch_size=16, out=out,
              verbose=0)
    train = EventAccumulator(str(out / "logs" / "train"), size_guidance={"images": 0})
    train.Reload()
    val = EventAccumulator(str(out / "logs" / "validation"), size_guidance={"images": 0})
    val.Reload()
    metrics = json.loads((out / "metrics.json").read_text())
    for tag, key in (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy")):
        events = train.Scalars(tag)
        assert [e.step for e in events] == [1, 2, 3]
        np.testing.assert_allclose([e.value for e in events], [h[key] for h in metrics["history"]], rtol=1e-6)
    assert [e.step for e in val.Scalars("epoch_accuracy")] == [1, 2, 3]
    assert [e.step for e in train.Scalars("epoch_learning_rate")] == [1, 2, 3]
    images = val.Images("confusion_matrix")
    assert len(images) == 1 and images[0].step == 3 and images[0].width > 100
    assert zoo_cli  # the CLI flag is covered below


@pytest.mark.large
def test_no_tensorboard_writes_no_logs(tmp_path, digits):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(0, 3), per_class=20)
    result = zoo_cli("train", "classifier", data, "--model", "lenet5", "--epochs", 0, "--no-tensorboard",
                     "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model.keras").is_file() and not (tmp_path / "run" / "logs").exists()


# ------------------------------------------------------------ one command, two names
@pytest.mark.large
def test_train_classifier_and_finetune_produce_the_same_run(tmp_path, digits):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(2, 5), per_class=30)
    args = [data, "--model", "lenet5", "--epochs", 1, "--freeze-epochs", 1, "--lr", "1e-2", "--batch-size", 16]
    a = zoo_cli("train", "classifier", *args, "--out", tmp_path / "a")  # the task's old name, still taken
    b = zoo_cli("finetune", *args, "--out", tmp_path / "b")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    note = 'zoo: the task "classifier" is now called "image-classification"; the old name still works'
    assert a.stderr.splitlines().count(note) == 1 and "now called" not in b.stderr
    help_text = zoo_cli("train", "--help").stdout
    assert "image-classification" in help_text
    run_a, run_b = (json.loads((tmp_path / n / "run.json").read_text()) for n in "ab")
    assert run_a == run_b and run_a["kind"] == "image-classification"
    for name in ("classes.json",):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    ma, mb = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in "ab")
    assert [h["epoch"] for h in ma["history"]] == [h["epoch"] for h in mb["history"]] == [1, 2]
    assert [h["phase"] for h in ma["history"]] == [h["phase"] for h in mb["history"]] == [1, 2]
    # Same settings, same data split; the numbers agree up to TensorFlow's CPU
    # non-determinism (thread order), so compare what the user gets: a model that works.
    assert ma["val_accuracy"] >= 0.9 and mb["val_accuracy"] >= 0.9
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in (tmp_path / "b").iterdir())


# ------------------------------------------------------------ a user's work is kept
@pytest.mark.large
def test_finished_runs_are_not_overwritten_and_resume_names_what_differs(tmp_path, digits):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(2, 5), per_class=20)
    out = tmp_path / "run"
    args = ["finetune", data, "--model", "lenet5", "--epochs", 0, "--out", out]
    assert zoo_cli(*args).returncode == 0
    before = (out / "model.keras").stat().st_mtime_ns
    again = zoo_cli(*args)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert str(out) in again.stderr and "--overwrite" in again.stderr and "--out" in again.stderr
    assert (out / "model.keras").stat().st_mtime_ns == before

    (out / "model.keras").unlink()  # as if interrupted: run.json, no model
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "state.json").write_text(json.dumps({"epochs_done": 0}))
    differs = zoo_cli(*args[:-2], "--batch-size", 8, "--out", out, "--resume")
    assert differs.returncode == 1 and "--batch-size differs" in differs.stderr and "32" in differs.stderr
    unasked = zoo_cli(*args)
    assert unasked.returncode == 1 and "--resume" in unasked.stderr

    assert zoo_cli(*args, "--overwrite").returncode == 0
    assert (out / "model.keras").is_file()

    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    refused = zoo_cli(*args[:-2], "--out", a_file)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr and "is a file" in refused.stderr
    assert len(refused.stderr.strip().splitlines()[-1]) > 0 and a_file.read_text() == "mine"


# ------------------------------------------------------------------------ lr_find
def _lr_find_before_zoo_training(trainer, x, y, start_lr=1e-7, end_lr=10.0, num_steps=60, batch_size=32,
                                 diverge=4.0, seed=0):
    """The sweep as zoo ran it before `zoo.training` (its own train_on_batch loop)."""
    from zoo.training.lr_find import valley

    saved = [np.array(w) for w in trainer.weights]
    optimizer = keras.optimizers.Adam(learning_rate=start_lr)
    trainer.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    ratio = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    rng = np.random.default_rng(seed)
    lrs, losses, smoothed, best, step = [], [], 0.0, np.inf, 0
    while step < num_steps:
        order = rng.permutation(len(x))
        done = False
        for start in range(0, len(x), batch_size):
            lr = start_lr * ratio ** step
            optimizer.learning_rate.assign(lr)
            index = order[start:start + batch_size]
            loss = float(np.ravel(trainer.train_on_batch(x[index], y[index]))[0])
            step += 1
            smoothed = 0.98 * smoothed + 0.02 * loss
            value = smoothed / (1 - 0.98 ** step)
            lrs.append(lr)
            losses.append(value)
            best = min(best, value)
            if not np.isfinite(value) or value > diverge * best or step >= num_steps:
                done = True
                break
        if done:
            break
    for variable, value in zip(trainer.weights, saved):
        variable.assign(value)
    finite = np.isfinite(losses)
    return valley(list(np.array(lrs)[finite]), list(np.array(losses)[finite]))


def test_lr_find_through_fit_agrees_with_the_old_loop_on_digits(digits):
    from zoo.training import compute_features, lr_find
    from zoo.transfer import cached_features, freeze, replace_head
    from zoo.transfer.features import feature_extractor, head_model

    x_train, _, y_train, _ = digits
    keep = y_train >= 5
    x, y = x_train[keep][:300], y_train[keep][:300] - 5
    keras.utils.set_random_seed(0)
    model = replace_head(zoo.create("lenet5", weights="digits04", include_top=False), 5)
    freeze(model)
    initial = [np.array(w) for w in model.weights]
    new = lr_find(model, (x, y), num_steps=60, features=cached_features(model)).suggestion
    for w, value in zip(model.weights, initial):
        np.testing.assert_array_equal(np.asarray(w), value)  # weights restored
    features = compute_features(feature_extractor(model), (x, y))
    old = _lr_find_before_zoo_training(head_model(model), *features, num_steps=60)
    assert 0.5 <= new / old <= 2.0, (new, old)


def test_fast_defaults_follow_the_hardware(monkeypatch):
    import zoo.training.distribute
    from zoo.training import resolve_precision
    from zoo.training import resolve_steps_per_execution

    for found, policy, spe in [(("cpu", None), "float32", 1), (("gpu", (9, 0)), "mixed_bfloat16", 8),
                               (("gpu", (8, 0)), "mixed_bfloat16", 8), (("gpu", (7, 5)), "mixed_float16", 8),
                               (("gpu", None), "mixed_float16", 8), (("tpu", None), "mixed_bfloat16", 8)]:
        monkeypatch.setattr(zoo.training.distribute, "accelerator", lambda found=found: found)
        assert resolve_precision("auto") == policy, found
        assert resolve_steps_per_execution("auto", 100) == spe and resolve_steps_per_execution("auto", 3) == min(spe, 3)
        assert resolve_precision("float32") == "float32" and resolve_steps_per_execution(1, 100) == 1  # off switches
    monkeypatch.setattr(zoo.training.distribute, "accelerator", lambda: ("gpu", (7, 0)))
    assert resolve_precision("auto", float16=False) == "float32"  # a GAN's two optimizers: no loss scaling
    monkeypatch.undo()
    assert zoo.training.distribute.accelerator() == ("cpu", None)  # this machine, asked for real


def test_fast_defaults_apply_and_train_as_well_as_float32(tmp_path, digits, monkeypatch):
    """On a GPU (here: told it is one), a run's defaults are mixed bfloat16 and 8 steps
    per compiled call, on uint8 input; it learns as well as the same run in float32."""
    import zoo.training.distribute
    from zoo.training import Defaults, fit, precision

    x_train, x_test, y_train, y_test = digits
    accuracies = {}
    for name, found in [("float32", ("cpu", None)), ("auto", ("gpu", (9, 0)))]:
        monkeypatch.setattr(zoo.training.distribute, "accelerator", lambda found=found: found)
        keras.utils.set_random_seed(0)
        with precision("auto"):
            model = zoo.create("lenet5", weights=None)
        fit(model, (x_train[:600], y_train[:600]), epochs=4, batch_size=32, defaults=Defaults.classifier(3e-3),
            tracking=Tracking(checkpoint=None), verbose=0)
        probabilities = np.asarray(model.predict(x_test, verbose=0))
        accuracies[name] = float(np.mean(probabilities.argmax(-1) == y_test))
        if name == "auto":
            assert model.get_layer("c1").dtype_policy.name == "mixed_bfloat16"
            assert model.get_layer("c1").kernel.dtype == "float32"  # float32 master weights
            assert model.steps_per_execution == 8 and not model.run_eagerly  # a compiled, multi-step call
            assert model.inputs[0].dtype == "uint8"  # images cast inside the model, on the device
            assert probabilities.dtype == np.float32
        else:
            assert model.get_layer("c1").dtype_policy.name == "float32" and model.steps_per_execution == 1
    assert keras.config.dtype_policy().name == "float32"  # the switch does not leak
    assert accuracies["float32"] >= 0.9 and abs(accuracies["auto"] - accuracies["float32"]) <= 0.03, accuracies


@pytest.mark.large
@pytest.mark.parametrize("policy", ["mixed_float16"])
def test_precision_switch_builds_and_trains_in_mixed_precision(tmp_path, digits, policy):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(1, 4, 7), per_class=30)
    run = zoo.train("classifier", data, model="lenet5", epochs=1, freeze_epochs=2, lr=1e-2, batch_size=16,
                    out=tmp_path / "run", precision=policy, verbose=0, no_tensorboard=True)
    assert run.model.get_layer("c1").dtype_policy.name == policy
    assert run.model.output.dtype == "float32"  # the head's softmax stays float32
    assert run.metrics["val_accuracy"] >= 0.9
    assert keras.config.dtype_policy().name == "float32"  # the switch does not leak
    with pytest.raises(ValueError, match="`precision` must be one of"):
        zoo.train("classifier", data, model="lenet5", epochs=0, out=tmp_path / "bad", precision="fp8", verbose=0)


@pytest.mark.large
def test_run_files_and_exports_follow_the_users_umask(tmp_path, digits):
    import stat

    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(1, 7), per_class=12)
    old = os.umask(0o022)
    try:
        zoo.train("classifier", data, model="lenet5", epochs=0, out=tmp_path / "run", verbose=0)
        version = zoo.export(tmp_path / "run", tmp_path / "models", "digits")
    finally:
        os.umask(old)
    for name in ("model.keras", "run.json", "metrics.json", "classes.json", "curves.png"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE(Path(version).stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 for p in Path(version).rglob("*") if p.is_file())


@pytest.mark.large
def test_piped_output_is_plain_and_says_each_thing_once(tmp_path, digits):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(1, 7), per_class=12)
    (data / "digit_1" / "broken.png").write_bytes(b"not a png")
    done = zoo_cli("finetune", data, "--model", "lenet5", "--epochs", 1, "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    everything = done.stdout + done.stderr
    assert "\r" not in everything and "\x1b[" not in everything  # no redrawn bars, no colour codes
    assert done.stdout.count("Epoch 1/2") == 1 and done.stdout.count("Epoch 2/2") == 1  # the run's count, both phases
    assert everything.count("broken.png") == 1, everything


@pytest.mark.large
def test_refusals_are_one_line_not_a_traceback(tmp_path, digits):
    # A model file carrying Python code (a Lambda layer) is refused, and says why.
    inputs = keras.Input((28, 28, 3), dtype="uint8")
    outputs = keras.layers.Lambda(lambda x: keras.ops.mean(keras.ops.cast(x, "float32"), axis=(1, 2)))(inputs)
    run = tmp_path / "lambda_run"
    run.mkdir()
    keras.Model(inputs, outputs).save(run / "model.keras")
    (run / "run.json").write_text(json.dumps({"kind": "classifier"}))
    (run / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    image = ROOT / "examples" / "digit-7.png"
    refused = zoo_cli("predict", run, image)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "Refusing to load" in refused.stderr and "Lambda" in refused.stderr

    # A checkpoint holding a pickled array is refused on --resume, in one line.
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(1, 7), per_class=12)
    out = tmp_path / "run"
    args = ["finetune", data, "--model", "lenet5", "--epochs", 1, "--out", out]
    assert zoo_cli(*args).returncode == 0
    (out / "model.keras").unlink()
    checkpoints = out / "checkpoints"
    checkpoints.mkdir()
    np.savez(checkpoints / "last.npz", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    np.savez(checkpoints / "frozen-x.npz", np.zeros(1))
    layout = {"dynamic": [0], "frozen_file": "frozen-x.npz", "optimizers": {}}
    (checkpoints / "state.json").write_text(json.dumps({"epochs_done": 1, "history": [], "last_layout": layout,
                                                       "segment": "phase1"}))
    resumed = zoo_cli(*args, "--resume")
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stderr[-2000:]
    assert "Refusing to resume" in resumed.stderr and "--overwrite" in resumed.stderr


@pytest.mark.large
def test_lr_auto_runs_lr_find_first_and_records_the_rate(tmp_path, digits):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(1, 4, 7), per_class=30)
    out = tmp_path / "run"
    done = zoo_cli("finetune", data, "--model", "lenet5", "--epochs", 1, "--lr", "auto", "--batch-size", 16,
                   "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((out / "run.json").read_text())
    assert config["lr_auto"] is True and 1e-7 < config["lr"] < 10
    assert f"lr auto: {config['lr']:.2e}" in done.stdout
    assert (out / "lr_find.png").stat().st_size > 1000
    assert json.loads((out / "metrics.json").read_text())["val_accuracy"] >= 0.9
    bad = zoo_cli("finetune", data, "--model", "lenet5", "--epochs", 1, "--lr", "fast", "--out", tmp_path / "b")
    assert bad.returncode == 2 and "--lr" in bad.stderr


def test_lr_find_markers_sit_inside_the_sweep(digits):
    from zoo.training import lr_find
    from zoo.transfer import cached_features, freeze, replace_head

    x_train, _, y_train, _ = digits
    keras.utils.set_random_seed(0)
    model = replace_head(zoo.create("lenet5", weights="digits04", include_top=False), 10)
    freeze(model)
    result = lr_find(model, (x_train[:400], y_train[:400]), num_steps=80, features=cached_features(model))
    assert result.suggestions["steep"] > result.lrs[len(result.lrs) // 10 - 1]
    assert result.suggestions["minimum"] == pytest.approx(result.lrs[int(np.argmin(result.losses))] / 10)


def test_history_records_the_epochs_mean_learning_rate_not_where_the_schedule_ended():
    from zoo.training import OneCycle

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    x, y = np.random.default_rng(0).random((320, 4)).astype("float32"), np.arange(320) % 3
    schedule = OneCycle(1e-2, 10)
    result = fit(model, (x, y), epochs=1, batch_size=32, defaults=Defaults.classifier(schedule),
                 tracking=Tracking(checkpoint=None), verbose=0)
    expected = np.mean([float(schedule(step)) for step in range(10)])
    assert result.history[0]["lr"] == pytest.approx(expected, rel=1e-3)
    assert result.history[0]["lr"] > 100 * float(schedule(10))  # the end value is ~1e-6


def test_resume_removes_what_a_kill_left_mid_write_and_nothing_else(tmp_path):
    from zoo import io, runs

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "samples").mkdir()
    io.write_json(run / runs.RUN_FILE, {"kind": "gan"})
    stale = [run / "samples" / ".epoch-002.4242.0a1b2c3d.tmp.png", run / "checkpoints" / ".last.4242.deadbeef.tmp.npz"]
    for path in stale:
        path.write_bytes(b"half a file")
    mine = [run / "samples" / "epoch-001.png", run / "notes.tmp.txt", run / ".hidden.tmp"]
    for path in mine:
        path.write_bytes(b"kept")
    assert runs.prepare(run, resume=True) is True
    assert not any(path.exists() for path in stale)
    assert all(path.read_bytes() == b"kept" for path in mine)
