"""Filter pictures and activation maps (zoo.interpret.filters): what a user would see.

A filter picture is worth looking at when it drives its own filter harder than a gray
image, than random noise and than the pictures made for the other filters; and when it
is a picture (smooth shapes), not pixel noise. They must come out the same for a model
however it is wrapped: flat, nested inside another model, or Sequential; and on JAX.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import zoo  # noqa: E402
from zoo.interpret import filters  # noqa: E402

# The tiny model, as source: the JAX subprocess builds the very same one.
TINY = r'''
def tiny_layers(keras, input_layer=True):
    from keras import layers
    from zoo.architectures.preprocessing import Preprocess

    stack = [keras.Input((24, 24, 3), dtype="uint8", name="image")] if input_layer else []
    return stack + [
        Preprocess("unit", name="preprocess"),
        layers.Conv2D(8, 3, activation="relu", name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(8, 3, name="conv2"),
        layers.ReLU(name="relu2"),
    ]


def tiny_base(keras):
    """Functional, uint8 input, ending in relu2's (N, 9, 9, 8) map."""
    inputs, *rest = tiny_layers(keras)
    x = inputs
    for layer in rest:
        x = layer(x)
    return keras.Model(inputs, x, name="tiny_base")


def tiny_classifier(keras, base):
    """`base` nested inside a classifier, as a fine-tuned model holds its base."""
    inputs = keras.Input((24, 24, 3), dtype="uint8", name="image")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(base(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x), name="tiny")
'''
exec(TINY)  # defines tiny_layers, tiny_base, tiny_classifier


def _activations(model, layer, images):
    return filters.filter_activations(model, layer, np.asarray(images, "uint8"))


def assert_pictures_drive_their_filters(model, layer, pictures, size, margin=2.0):
    """Picture i -> filter j: each picture beats gray, noise and, on its own filter, the
    other pictures (the diagonal dominates its column, on average by `margin`). Filters
    that nothing here makes fire (dead ReLUs) have no picture to judge and are left out."""
    count = len(pictures)
    matrix = _activations(model, layer, pictures)[:, :count]
    own = np.diag(matrix)
    gray = _activations(model, layer, np.full((1, *size, 3), 128))[0, :count]
    noise = _activations(model, layer, np.random.default_rng(7).integers(0, 256, (8, *size, 3))).max(axis=0)[:count]
    others = (matrix.sum(axis=0) - own) / (count - 1)
    alive = np.maximum(matrix.max(axis=0), np.maximum(gray, noise)) > 0
    assert alive.sum() >= 0.75 * count, f"too few filters ever fire: {alive}"
    own, gray, noise, others = own[alive], gray[alive], noise[alive], others[alive]
    assert np.mean(own > gray) >= 0.9, (own, gray)
    assert np.mean(own > noise) >= 0.9, (own, noise)
    assert np.mean(own > others) >= 0.85, (own, others)
    assert own.mean() > margin * others.mean(), (own, others)


def assert_readable(pictures):
    """Shapes, not pixel noise: neighbouring pixels are alike (for uniform noise the mean
    neighbour difference is about 1.2 standard deviations), and not flat gray."""
    x = pictures.astype("float32")
    std = x.std(axis=(1, 2, 3))
    step = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))
    assert np.median(std) > 20, std
    assert np.median(step / 2 / np.maximum(std, 1e-6)) < 0.35, step / 2 / np.maximum(std, 1e-6)


@pytest.fixture(scope="module")
def lenet():
    return zoo.create("lenet5")


@pytest.fixture(scope="module")
def lenet_c3_pictures(lenet):
    return filters.filter_pictures(lenet, "c3", n=16)


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(3)
    base = tiny_base(keras)
    return base, tiny_classifier(keras, base)


# ------------------------------------------------------------------- filter pictures
def test_lenet_pictures_drive_their_own_filters(lenet, lenet_c3_pictures):
    assert lenet_c3_pictures.shape == (16, 28, 28, 3) and lenet_c3_pictures.dtype == np.uint8
    assert_pictures_drive_their_filters(lenet, "c3", lenet_c3_pictures, (28, 28))
    assert_readable(lenet_c3_pictures)


def test_tiny_model_pictures_drive_their_own_filters(tiny):
    base, _ = tiny
    for layer in ("conv1", "relu2"):  # an activation inside the conv, and a ReLU layer
        pictures = filters.filter_pictures(base, layer, steps=48)
        assert pictures.shape == (8, 24, 24, 3)
        assert_pictures_drive_their_filters(base, layer, pictures, (24, 24))


def test_pictures_of_a_deeper_model_are_shapes_not_noise():
    """Plain gradient ascent on this random 4-conv model gives pixel noise (a neighbour
    difference of ~1.1 standard deviations); the regularised pictures stay near 0.15.
    Random filters share tastes (colour, contrast), so the diagonal leads by less."""
    from keras import layers

    from zoo.architectures.preprocessing import Preprocess

    keras.utils.set_random_seed(5)
    inputs = keras.Input((48, 48, 3), dtype="uint8")
    x = Preprocess("caffe")(inputs)
    for i, channels in enumerate((16, 16, 32, 32)):
        x = layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if i % 2:
            x = layers.MaxPooling2D(2)(x)
    model = keras.Model(inputs, x)
    pictures = filters.filter_pictures(model, "conv4", n=8)
    assert_readable(pictures)
    assert_pictures_drive_their_filters(model, "conv4", pictures, (48, 48), margin=1.25)


def test_nested_and_sequential_models_give_the_same_pictures(tiny):
    base, nested = tiny
    sequential = keras.Sequential(tiny_layers(keras), name="tiny_sequential")
    for layer in sequential.layers:
        layer.set_weights(base.get_layer(layer.name).get_weights())
    kwargs = dict(n=4, steps=6, seed=1)
    flat = filters.filter_pictures(base, "relu2", **kwargs)
    for model in (nested, sequential):
        pictures = filters.filter_pictures(model, "relu2", **kwargs)
        assert pictures.shape == (4, 24, 24, 3) and pictures.dtype == np.uint8
        assert np.abs(pictures.astype(int) - flat).max() <= 1  # float round-off, rounded
    # The layer object itself works too, and chosen filters come in the order asked.
    chosen = filters.filter_pictures(nested, base.get_layer("relu2"), filters=[3, 1], steps=6, seed=1)
    assert chosen.shape == (2, 24, 24, 3)


def test_a_sequential_model_never_called_works():
    keras.utils.set_random_seed(4)
    model = keras.Sequential(tiny_layers(keras, input_layer=False))
    pictures = filters.filter_pictures(model, "conv1", n=3, size=20, steps=4)
    assert pictures.shape == (3, 20, 20, 3) and pictures.dtype == np.uint8
    maps = filters.activation_maps(model, np.zeros((20, 20, 3), "uint8"), "relu2")
    assert maps.shape == (7, 7, 8) and maps.dtype == np.float32


def test_errors_name_the_problem(lenet):
    with pytest.raises(ValueError, match="'c9'"):
        filters.filter_pictures(lenet, "c9")
    with pytest.raises(ValueError, match=r"'c5'.*2-D output.*c1, s2, c3, s4"):
        filters.filter_pictures(lenet, "c5")
    with pytest.raises(ValueError, match="'c5'"):
        filters.activation_maps(lenet, np.zeros((28, 28, 3), "uint8"), "c5")
    with pytest.raises(ValueError, match=r"0\.\.15.*16 filters"):
        filters.filter_pictures(lenet, "c3", filters=[2, 16])
    with pytest.raises(ValueError, match=r"28x28.*include_top=False"):
        filters.filter_pictures(lenet, "c3", size=64)
    with pytest.raises(ValueError, match="steps"):
        filters.filter_pictures(lenet, "c3", steps=-1)


def test_verbose_prints_a_line_per_batch(lenet, capsys):
    filters.filter_pictures(lenet, "c1", n=6, batch_size=4, steps=2, verbose=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("c1: filters 6/6")


# ------------------------------------------------------------------ activation maps
def test_activation_maps_match_a_sub_model_on_a_flat_model(lenet, digits):
    image = digits[1][0]
    maps = filters.activation_maps(lenet, image, "c3")
    assert maps.shape == (10, 10, 16) and maps.dtype == np.float32
    # On a flat Functional model (only there) a sub-model is a fair reference.
    direct = keras.Model(lenet.inputs, lenet.get_layer("c3").output)([image[None]])
    np.testing.assert_allclose(maps, keras.ops.convert_to_numpy(direct)[0], atol=1e-5)
    np.testing.assert_array_equal(filters.activation_maps(lenet, image, "c3", n=5), maps[..., :5])
    # A larger photo of the digit is resized to the model's input first.
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    assert filters.activation_maps(lenet, big, "c1").shape == (28, 28, 6)


def test_activation_maps_of_a_nested_model_are_the_base_models(tiny):
    base, nested = tiny
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype("uint8")
    np.testing.assert_allclose(filters.activation_maps(nested, image, "conv1"),
                               filters.activation_maps(base, image, "conv1"), atol=1e-6)


# --------------------------------------------------------------------------- grids
def _png(path):
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_filter_grid_png_shows_the_pictures_labelled(lenet_c3_pictures, tmp_path):
    path = filters.filter_grid(lenet_c3_pictures[:6], tmp_path / "grid.png", filters=[0, 1, 2, 3, 4, 5])
    grid = _png(path)
    assert grid.shape[:2] == filters.grid_shape(6, 28, 28) == (2 * (84 + 11 + 2) + 2, 3 * (84 + 2) + 2)
    label = grid[2:2 + filters.LABEL_HEIGHT, 2:30]
    assert (label < 100).any() and (label == 255).any()  # dark text on the white strip
    top = 2 + filters.LABEL_HEIGHT
    np.testing.assert_array_equal(grid[top:top + 84, 2:2 + 84],
                                  np.repeat(np.repeat(lenet_c3_pictures[0], 3, axis=0), 3, axis=1))
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no leftovers
    with pytest.raises(ValueError, match="one index per picture"):
        filters.filter_grid(lenet_c3_pictures[:6], tmp_path / "bad.png", filters=[1, 2])


def test_activation_grid_png_shows_the_most_active_channels_first(lenet, digits, tmp_path):
    maps = filters.activation_maps(lenet, digits[1][3], "c3")
    order = filters.most_active(maps)
    means = maps.mean(axis=(0, 1))
    assert list(order) == sorted(range(16), key=lambda c: (-means[c], c))
    path = filters.activation_grid(maps, tmp_path / "maps.png", n=9)
    grid = _png(path)
    scale = 7  # 10-pixel maps enlarged to at least 64
    assert grid.shape[:2] == filters.grid_shape(9, 10, 10) == (3 * (70 + 11 + 2) + 2, 3 * (70 + 2) + 2)
    top = 2 + filters.LABEL_HEIGHT
    first = filters.colorize(maps[..., order[:1]])[0]
    np.testing.assert_array_equal(grid[top:top + 70, 2:72], np.repeat(np.repeat(first, scale, 0), scale, 1))
    # Each channel spans the whole colormap: its peak is viridis' yellow end.
    assert first.reshape(-1, 3)[np.argmax(maps[..., order[0]])].tolist() == [253, 231, 37]
    in_order = _png(filters.activation_grid(maps, tmp_path / "index.png", n=None, order="index"))
    assert in_order.shape[:2] == filters.grid_shape(16, 10, 10)
    np.testing.assert_array_equal(in_order[top:top + 70, 2:72],
                                  np.repeat(np.repeat(filters.colorize(maps[..., :1])[0], scale, 0), scale, 1))


# ----------------------------------------------------------------------------- JAX
JAX_SCRIPT = TINY + r'''
import json, sys
import numpy as np
import keras
from zoo.interpret import filters
base = tiny_base(keras)
base.load_weights(sys.argv[1])
image = np.load(sys.argv[2])
maps = filters.activation_maps(base, image, "conv1")
pictures = filters.filter_pictures(base, "relu2", steps=48)
matrix = filters.filter_activations(base, "relu2", pictures)
filters.filter_grid(pictures, sys.argv[3] + "/filters.png")
filters.activation_grid(maps, sys.argv[3] + "/maps.png")
np.save(sys.argv[3] + "/maps.npy", maps)
np.save(sys.argv[3] + "/pictures.npy", pictures)
# Nested and Sequential on JAX too: the same pictures as the flat base's.
sequential = keras.Sequential(tiny_layers(keras))
for layer in sequential.layers:
    layer.set_weights(base.get_layer(layer.name).get_weights())
same = [int(np.abs(filters.filter_pictures(m, "relu2", n=2, steps=3).astype(int)
                   - filters.filter_pictures(base, "relu2", n=2, steps=3)).max())
        for m in (tiny_classifier(keras, base), sequential)]
print(json.dumps({"backend": keras.backend.backend(), "tensorflow_imported": "tensorflow" in sys.modules,
                  "nested_and_sequential_differ_by": same}))
'''


@pytest.mark.large
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_filters_and_maps_on_the_jax_backend(tiny, tmp_path):
    base, _ = tiny
    base.save_weights(tmp_path / "tiny.weights.h5")
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype("uint8")
    np.save(tmp_path / "image.npy", image)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "tiny.weights.h5"),
                           str(tmp_path / "image.npy"), str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax" and report["tensorflow_imported"] is False
    assert max(report["nested_and_sequential_differ_by"]) <= 1
    # The same weights give the same maps on both backends, and JAX's pictures work here.
    np.testing.assert_allclose(np.load(tmp_path / "maps.npy"), filters.activation_maps(base, image, "conv1"),
                               atol=1e-4)
    pictures = np.load(tmp_path / "pictures.npy")
    assert pictures.shape == (8, 24, 24, 3) and pictures.dtype == np.uint8
    assert_pictures_drive_their_filters(base, "relu2", pictures, (24, 24))
    assert _png(tmp_path / "filters.png").shape[:2] == filters.grid_shape(8, 24, 24)
    assert _png(tmp_path / "maps.png").shape[:2] == filters.grid_shape(8, 22, 22)
