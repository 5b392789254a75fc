"""LeNet-5 on real handwritten digits: the recipe reaches >= 97 % held-out accuracy, and
the shipped weights classify digit PNGs (either polarity) with no network."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from helpers import forked_zoo
from PIL import Image

import zoo
from zoo.data.digits import load_digits_28, train_test_split_digits


@pytest.fixture(scope="module")
def held_out():
    images, labels = load_digits_28()
    _, x_test, _, y_test = train_test_split_digits(images, labels)
    return x_test, y_test


@pytest.mark.large
def test_recipe_reaches_97_percent_held_out():
    from zoo.tasks.shipped_weights import train_lenet5

    model, accuracy = train_lenet5()
    assert accuracy >= 0.97, accuracy
    assert model.count_params() == 61_706


def _write_digits(folder, images, labels, invert):
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        pixels = 255 - image if invert else image
        path = folder / f"digit{i:03d}_label{label}{'_paper' if invert else ''}.png"
        Image.fromarray(pixels[..., 0], "L").save(path)  # a grayscale PNG, as a scan is
        paths.append(path)
    return paths


@pytest.mark.parametrize("invert", [False, True], ids=["white-on-black", "black-on-white"])
def test_shipped_weights_classify_held_out_pngs(tmp_path, held_out, invert, zoo_home):
    x_test, y_test = held_out
    paths = _write_digits(tmp_path, x_test, y_test, invert)
    results = zoo.classify(paths, model="lenet5", top=1)
    predicted = np.array([int(r["predictions"][0]["label"]) for r in results])
    accuracy = float((predicted == y_test).mean())
    assert accuracy >= 0.97, accuracy


@pytest.mark.large
def test_cli_classifies_digit_pngs_offline(tmp_path, held_out, zoo_home):
    """`zoo classify digit.png --model lenet5` with an empty cache, no proxy and a
    proxy that refuses connections: the weights come from the package."""
    x_test, y_test = held_out
    picks = [int(np.flatnonzero(y_test == digit)[0]) for digit in (3, 7)]
    paths = _write_digits(tmp_path, x_test[picks], y_test[picks], invert=False)
    paths += _write_digits(tmp_path, x_test[picks], y_test[picks], invert=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "http_proxy": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = forked_zoo.run(["classify", *paths, "--model", "lenet5", "--top", "1", "--json"], env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert [r["predictions"][0]["label"] for r in output] == ["3", "7", "3", "7"]
    assert not any((zoo_home / "weights").glob("**/*.h5"))  # nothing was downloaded
