"""`zoo finetune`, `zoo predict`, `zoo lr-find` end to end on folders of real digits."""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

import zoo
from helpers.digit_folders import write_folder
from helpers import forked_zoo
from helpers.processes import kill_zoo_when

pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)


ZOO = [sys.executable, "-m", "zoo"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def run_zoo(*args, timeout=600):
    return forked_zoo.run(args, env=ENV, timeout=timeout)


def test_finetune_writes_a_complete_run_and_predict_labels_held_out_images(tmp_path, digits):
    x_train, x_test, y_train, y_test = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(1, 4, 7), per_class=40)
    out = tmp_path / "run"
    result = run_zoo("finetune", data, "--model", "lenet5", "--epochs", 3, "--freeze-epochs", 2,
                     "--lr", "1e-2", "--batch-size", 16, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("model.keras", "classes.json", "run.json", "metrics.json", "curves.png",
                 "confusion_matrix.png", "top_losses.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "classes.json").read_text()) == ["digit_1", "digit_4", "digit_7"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(h["epoch"], h["phase"]) for h in metrics["history"]] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]
    assert metrics["cached_features"] is True
    assert metrics["val_accuracy"] >= 0.9
    assert np.sum(metrics["confusion_matrix"]) == 24  # 20 % of 120 images
    assert "Epoch 5/5" in result.stdout

    # Held-out digits the run never saw, through the CLI and through Python.
    held = []
    for c in (1, 4, 7):
        image = x_test[y_test == c][0]
        path = tmp_path / f"held_{c}.png"
        Image.fromarray(image).save(path)
        held.append((path, f"digit_{c}"))
    predicted = run_zoo("predict", out, *[p for p, _ in held], "--json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    labels = [r["predictions"][0]["label"] for r in json.loads(predicted.stdout)]
    assert labels == [label for _, label in held]

    run = zoo.load_run(out)
    assert run.classes == ["digit_1", "digit_4", "digit_7"]
    assert [r["predictions"][0]["label"] for r in run.predict([p for p, _ in held])] == labels


def test_finetune_skips_and_reports_exactly_the_bad_files(tmp_path, digits):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(0, 1), per_class=12)
    good = Image.fromarray(x_train[y_train == 0][20])
    good.convert("CMYK").save(data / "digit_0" / "cmyk.jpg")
    Image.fromarray((x_train[y_train == 1][20][..., 0].astype("uint16") * 257)).save(data / "digit_1" / "deep.png")
    good.convert("L").save(data / "digit_0" / "gray.png")
    good.save(data / "digit_1" / "whole.jpg")
    jpeg = (data / "digit_1" / "whole.jpg").read_bytes()
    (data / "digit_1" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (data / "digit_0" / "notes.txt").write_text("not an image")
    (data / "digit_0" / "empty.png").write_bytes(b"")

    out = tmp_path / "run"
    result = run_zoo("finetune", data, "--model", "lenet5", "--epochs", 1, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    skipped = {os.path.basename(s["path"]): s["reason"] for s in metrics["skipped"]}
    assert set(skipped) == {"truncated.jpg", "notes.txt", "empty.png"}
    assert all(skipped.values())
    config = json.loads((out / "run.json").read_text())
    assert config["num_train"] + config["num_val"] == 12 * 2 + 4  # cmyk, 16-bit, gray, whole
    assert "truncated.jpg" in (out / "skipped.txt").read_text()


@pytest.mark.parametrize("layout, message", [
    ({}, "no images|empty"),
    ({"only": 5}, "one class|only one"),
    ({"a": 5, "b": 1}, "class 'b'"),
])
def test_unusable_folders_fail_clearly_before_training(tmp_path, digits, layout, message):
    x_train = digits[0]
    data = tmp_path / "data"
    data.mkdir()
    for name, count in layout.items():
        (data / name).mkdir()
        for i in range(count):
            Image.fromarray(x_train[i]).save(data / name / f"{i}.png")
    out = tmp_path / "run"
    result = run_zoo("finetune", data, "--model", "lenet5", "--epochs", 1, "--out", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(data) in result.stderr
    import re
    assert re.search(message, result.stderr, re.IGNORECASE), result.stderr
    assert not (out / "model.keras").exists()
    assert not (out / "checkpoints").exists()


def test_kill_9_during_epoch_3_then_resume_runs_only_epochs_3_to_5(tmp_path, digits):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(2, 3, 5, 8), per_class=140)
    out = tmp_path / "run"
    # 96 px LeNet from scratch: epochs long enough (~1-2 s) to be killed in the middle of.
    args = ["finetune", data, "--model", "lenet5", "--weights", "none", "--image-size", 96,
            "--epochs", 4, "--freeze-epochs", 1, "--batch-size", 8, "--out", out]
    kill_zoo_when(args, lambda line: line.startswith("Epoch 3/"), env=ENV)  # killed in epoch 3
    state = out / "checkpoints" / "state.json"
    assert json.loads(state.read_text())["epochs_done"] == 2
    assert not (out / "metrics.json").exists()

    resumed = run_zoo(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 3/5" in resumed.stdout and "Epoch 5/5" in resumed.stdout
    assert "Epoch 1/5" not in resumed.stdout and "Epoch 2/5" not in resumed.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5]


def test_lr_find_command_prints_a_suggestion_and_writes_the_plot(tmp_path, digits):
    x_train, _, y_train, _ = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(0, 6), per_class=30)
    plot = tmp_path / "lr.png"
    result = run_zoo("lr-find", data, "--model", "lenet5", "--plot", plot)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "suggested learning rate:" in result.stdout
    value = float(result.stdout.split("suggested learning rate:")[1].split()[0])
    assert 1e-7 <= value <= 10
    assert plot.stat().st_size > 1000
