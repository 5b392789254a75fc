"""LeNet-5 and AlexNet trained from scratch (`--weights none`) on real digits, through
the same `zoo train classifier` path as fine-tuning: no frozen phase, one rate for all
layers."""

import json

import pytest

from helpers import forked_zoo

import zoo
from tests.helpers.digit_folders import write_folder


pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)


@pytest.fixture(scope="module")
def digit_folder(digits, tmp_path_factory):
    images, _, labels, _ = digits  # the training split only
    return write_folder(tmp_path_factory.mktemp("digits"), images, labels, range(10), per_class=60)


def test_lenet5_from_scratch_learns_real_digits(digit_folder, tmp_path):
    out = tmp_path / "lenet"
    result = forked_zoo.run(["train", "classifier", digit_folder, "--model", "lenet5", "--weights", "none", "--epochs", "10",
                             "--lr", "3e-3", "--batch-size", "32", "--out", out, "--no-tensorboard"], timeout=600)
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "run.json").read_text())
    # From scratch: no frozen phase, the same rate for every layer.
    assert config["freeze_epochs"] == 0 and config["lr_mult"] == 1.0 and config["weights"] == "none"
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(h["phase"] == 2 for h in metrics["history"]) and len(metrics["history"]) == 10
    print(f"LeNet-5 from scratch, 480 training digits, 10 epochs: {metrics['val_accuracy']:.3f}")
    assert metrics["val_accuracy"] >= 0.85  # 10 classes: chance is 0.10


def test_alexnet_from_scratch_trains_on_the_same_path(digit_folder, tmp_path):
    # AlexNet publishes no weights: its default is from scratch. 64 px keeps it small here.
    run = zoo.train("classifier", digit_folder, model="alexnet", epochs=2, image_size=64, lr=1e-3, batch_size=32,
                    out=tmp_path / "alexnet", verbose=0, no_tensorboard=True)
    assert run.config["freeze_epochs"] == 0 and run.config["lr_mult"] == 1.0
    assert run.model.name == "alexnet" and run.model.get_layer("conv1").trainable
    history = run.metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["loss"] < history[0]["loss"]
    assert run.predict([str(next(digit_folder.glob("digit_3/*.png")))])[0]["predictions"][0]["label"] in run.classes
