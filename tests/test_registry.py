"""The registry: names, specs, and that every registered model builds to its spec.

Cross-checks against keras.applications (built with weights=None) wherever zoo claims
to match it: parameter counts and preprocessing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import zoo
from zoo import models as registry
from zoo.errors import UnknownModelError, WeightsError

CLASSIFIERS = zoo.list_models(task="image-classification")
# Input sizes the families accept without their head (the smallest the builders allow,
# rounded up): small so that every model's forward pass stays cheap.
SMALL = {"inception_v3": (75, 75, 3), "alexnet": (96, 96, 3), "lenet5": (28, 28, 3),
         "inception_resnet_v2": (75, 75, 3), "xception": (75, 75, 3)}


# Building these takes seconds each on 2 cores; they still run, marked slow.
HEAVY = {"vgg16", "vgg19", "resnet101", "resnet152", "inception_v3", "resnet50"}
# keras.applications' families (issue 25): each family's smallest model stands for its
# module and builder here; the other sizes build with `--run_deep` (tests/test_families.py
# checks every size's parameter count there too).
KERAS_FAMILIES = ("efficientnet", "efficientnet_v2", "convnext", "mobilenet", "densenet", "xception",
                  "inception_resnet", "nasnet")
SMALLEST = {"efficientnet_b0", "efficientnet_v2_b0", "convnext_tiny", "mobilenet_v2", "mobilenet_v3_small",
            "densenet121", "xception", "inception_resnet_v2", "nasnet_mobile"}
DEEP = {n for n in CLASSIFIERS if registry.get_spec(n).family in KERAS_FAMILIES} - SMALLEST


def _params(names, heavy):
    return [pytest.param(n, marks=pytest.mark.deep) if n in DEEP else
            pytest.param(n, marks=pytest.mark.large) if n in heavy else n for n in names]


def small_shape(name):
    return SMALL.get(name, (32, 32, 3))


# ---------------------------------------------------------------------------- names
def test_list_models_pattern_sorts_naturally():
    assert zoo.list_models("res*") == ["resnet50", "resnet101", "resnet152"]
    assert zoo.list_models("RES*") == ["resnet50", "resnet101", "resnet152"]
    assert zoo.list_models("vgg*") == ["vgg16", "vgg19"]
    assert zoo.list_models("nothing*") == []


def test_list_models_task_and_exclude():
    every = zoo.list_models()
    assert {"vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "inception_v3",
            "lenet5", "alexnet"} <= set(every)
    assert set(CLASSIFIERS) <= set(every)
    assert all(registry.get_spec(n).task == "image-classification" for n in CLASSIFIERS)
    assert zoo.list_models("res*", exclude=["resnet1*"]) == ["resnet50"]
    assert "vgg16" not in zoo.list_models(exclude=("vgg*",))
    with pytest.raises(ValueError, match=r"`task` must be one of .*Received: task='classify'"):
        zoo.list_models(task="classify")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError) as caught:
        zoo.create("resnet5")
    message = str(caught.value)
    assert "resnet50" in message and "zoo.list_models()" in message
    assert "Received: name='resnet5'" in message
    # A KeyError subclass, so `except KeyError` code keeps working, but not quoted.
    assert isinstance(caught.value, KeyError) and not message.startswith("'")
    with pytest.raises(UnknownModelError, match="vgg19"):
        zoo.info("vgg-19")


def test_lookup_is_case_insensitive():
    assert registry.get_spec("VGG19") is registry.get_spec("vgg19")


def test_duplicate_register_raises():
    spec = registry.get_spec("lenet5")
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(spec)
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(dataclasses.replace(spec, description="another lenet5"))
    assert registry.get_spec("lenet5") is spec  # the first registration stays


def test_register_rejects_unknown_task():
    spec = dataclasses.replace(registry.get_spec("lenet5"), name="lenet5_bad_task", task="magic")
    with pytest.raises(ValueError, match="`task` must be one of"):
        zoo.register(spec)
    assert "lenet5_bad_task" not in zoo.list_models()


def test_spec_is_frozen_data():
    spec = registry.get_spec("vgg19")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_params = 1


def test_info_content():
    info = zoo.info("vgg19")
    assert info["name"] == "vgg19" and info["family"] == "vgg"
    assert info["task"] == "image-classification"
    assert info["input_shape"] == [224, 224, 3]
    assert info["preprocessing"] == "caffe"
    assert info["num_classes"] == 1000 and info["num_params"] == 143_667_240
    assert info["labels"] == "imagenet" and info["default_weights"] == "imagenet"
    assert info["paper"].startswith("https://arxiv.org/abs/1409.1556")
    assert {"imagenet", "imagenet_notop"} <= set(info["weights"])
    imagenet = info["weights"]["imagenet"]
    assert imagenet["url"].startswith("https://storage.googleapis.com/")
    assert imagenet["hash"].startswith("md5:") and isinstance(imagenet["cached"], bool)
    lenet = zoo.info("lenet5")
    assert lenet["input_shape"] == [28, 28, 3] and lenet["default_weights"] == "digits"
    assert lenet["weights"]["digits"]["cached"] is True  # shipped with zoo


def test_info_is_plain_json():
    import json

    for name in zoo.list_models():
        assert json.loads(json.dumps(zoo.info(name)))["name"] == name


def test_labels():
    imagenet = registry.labels("vgg19")
    assert len(imagenet) == 1000 and imagenet[0] == "tench" and imagenet[1] == "goldfish"
    assert registry.labels("lenet5") == [str(i) for i in range(10)]


# ----------------------------------------------------------------- built models vs spec
@pytest.mark.parametrize("name", _params(CLASSIFIERS, {"resnet101", "resnet152"}))
def test_every_model_takes_uint8_and_runs_headless_at_a_small_size(name):
    model = zoo.create(name, weights=None, include_top=False, input_shape=small_shape(name))
    assert model.name == name
    assert len(model.inputs) == 1
    assert tuple(model.inputs[0].shape) == (None, *small_shape(name))
    assert model.inputs[0].dtype == "uint8"
    image = np.random.default_rng(0).integers(0, 256, (1, *small_shape(name)), dtype="uint8")
    out = np.asarray(model(image))
    assert out.shape[0] == 1 and np.isfinite(out).all()


@pytest.mark.parametrize("name", _params(CLASSIFIERS, HEAVY | SMALLEST))
def test_full_model_matches_spec(name):
    spec = registry.get_spec(name)
    model = zoo.create(name, weights=None)
    assert tuple(model.inputs[0].shape) == (None, *spec.input_shape)
    assert model.inputs[0].dtype == "uint8"
    assert tuple(model.outputs[0].shape) == (None, spec.num_classes)
    assert model.count_params() == spec.num_params
    if spec.feature_layer:
        model.get_layer(spec.feature_layer)  # where include_top=False cuts


@pytest.mark.parametrize(
    "name, constructor, expected",
    [
        ("vgg19", "VGG19", 143_667_240),
        ("resnet50", "ResNet50", 25_636_712),
        ("inception_v3", "InceptionV3", 23_851_784),
    ],
)
def test_parameter_counts_equal_keras_applications(name, constructor, expected):
    import keras

    reference = getattr(keras.applications, constructor)(weights=None)
    ours = zoo.create(name, weights=None)
    assert registry.get_spec(name).num_params == expected
    assert reference.count_params() == expected
    assert ours.count_params() == expected
    # The same weights in the same order (our input + preprocessing add none), which is
    # what lets the official files load unchanged.
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in reference.weights]


# ---------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize(
    "name, app_module",
    [("vgg19", "vgg19"), ("vgg16", "vgg16"), ("resnet50", "resnet50"), ("inception_v3", "inception_v3"),
     ("efficientnet_b0", "efficientnet"), ("efficientnet_v2_b0", "efficientnet_v2"), ("convnext_tiny", "convnext"),
     ("mobilenet_v2", "mobilenet_v2"), ("densenet121", "densenet"), ("xception", "xception"),
     ("inception_resnet_v2", "inception_resnet_v2"), ("nasnet_mobile", "nasnet")],
)
def test_preprocess_input_equals_keras_applications(name, app_module):
    import importlib

    import keras

    family = importlib.import_module(f"zoo.architectures.{registry.get_spec(name).family}")
    image = np.random.default_rng(1).integers(0, 256, (2, 17, 19, 3)).astype("float32")
    expected = getattr(keras.applications, app_module).preprocess_input(image.copy())
    np.testing.assert_allclose(family.preprocess_input(image.copy()), expected, rtol=1e-6, atol=1e-4)
    # And the model's in-graph layer does the same arithmetic on uint8 input.
    from zoo.architectures.preprocessing import Preprocess

    layer = Preprocess(registry.get_spec(name).preprocessing)
    np.testing.assert_allclose(np.asarray(layer(image.astype("uint8"))), expected, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch", "unit", "digits", "raw"])
def test_preprocess_layer_equals_preprocess_input(mode):
    from zoo.architectures.preprocessing import Preprocess, preprocess_input

    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (3, 8, 8, 3), dtype="uint8")
    batch[1] = 255 - batch[1] // 8  # a light image: the digits mode inverts it
    expected = preprocess_input(batch, mode)
    got = np.asarray(Preprocess(mode)(batch))
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)


def test_torch_mode_matches_torchvision_constants():
    from zoo.architectures.preprocessing import preprocess_input

    import keras

    image = np.random.default_rng(3).integers(0, 256, (1, 5, 5, 3)).astype("float32")
    expected = keras.applications.imagenet_utils.preprocess_input(image.copy(), mode="torch")
    np.testing.assert_allclose(preprocess_input(image, "torch"), expected, rtol=1e-5, atol=1e-5)


def test_preprocess_rejects_unknown_mode():
    from zoo.architectures.preprocessing import Preprocess, preprocess_input

    with pytest.raises(ValueError, match="`mode` must be one of .*Received: mode='bgr'"):
        preprocess_input(np.zeros((1, 2, 2, 3)), "bgr")
    with pytest.raises(ValueError, match="Received: mode='bgr'"):
        Preprocess("bgr")


# ------------------------------------------------------------------- saving, heads, sizes
def test_keras_save_load_round_trip(tmp_path):
    import keras

    model = zoo.create("lenet5")  # shipped weights
    images = np.random.default_rng(4).integers(0, 256, (4, 28, 28, 3), dtype="uint8")
    path = tmp_path / "lenet5.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # Preprocess is registered: no custom_objects
    assert loaded.inputs[0].dtype == "uint8"
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(model(images)), atol=1e-6)


def test_new_head_on_pretrained_base():
    pretrained = zoo.create("lenet5")
    model = zoo.create("lenet5", num_classes=5)
    assert tuple(model.outputs[0].shape) == (None, 5)
    assert model.inputs[0].dtype == "uint8"
    # The base carries the pretrained weights; only the head is new.
    for layer_name in ("c1", "c3", "c5", "f6"):
        for got, want in zip(model.get_layer(layer_name).get_weights(),
                             pretrained.get_layer(layer_name).get_weights()):
            np.testing.assert_array_equal(got, want)
    images = np.random.default_rng(5).integers(0, 256, (2, 28, 28, 3), dtype="uint8")
    probabilities = np.asarray(model(images))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


def test_new_head_on_imagenet_architecture_without_weights():
    model = zoo.create("resnet50", weights=None, num_classes=5, input_shape=(64, 64, 3))
    assert tuple(model.inputs[0].shape) == (None, 64, 64, 3)
    assert tuple(model.outputs[0].shape) == (None, 5)


@pytest.mark.parametrize("shape", [(96, 128, 3), (160, 160, 3)])
def test_include_top_false_other_input_sizes(shape):
    model = zoo.create("vgg16", weights=None, include_top=False, input_shape=shape)
    assert tuple(model.inputs[0].shape) == (None, *shape)
    # VGG's five 2x2 pools: spatial size / 32, 512 channels.
    assert tuple(model.outputs[0].shape) == (None, shape[0] // 32, shape[1] // 32, 512)


def test_include_top_false_cuts_shipped_weights():
    full = zoo.create("lenet5")
    headless = zoo.create("lenet5", include_top=False)
    assert tuple(headless.outputs[0].shape) == (None, 84)
    images = np.random.default_rng(6).integers(0, 256, (2, 28, 28, 3), dtype="uint8")
    import keras

    features = keras.Model(full.inputs[0], full.get_layer("f6").output)
    np.testing.assert_allclose(np.asarray(headless(images)), np.asarray(features(images)), atol=1e-6)


def test_weights_from_a_file(tmp_path):
    source = zoo.create("lenet5", weights=None)
    path = tmp_path / "mine.weights.h5"
    source.save_weights(path)
    loaded = zoo.create("lenet5", weights=str(path))
    images = np.random.default_rng(7).integers(0, 256, (2, 28, 28, 3), dtype="uint8")
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(source(images)), atol=1e-6)
    # A pathlib.Path works too.
    zoo.create("lenet5", weights=path)


# ------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"input_shape": (28, 28, 1)}, ValueError, r"`input_shape` must be \(height, width, 3\).*Received: input_shape=\(28, 28, 1\)"),
        ({"input_shape": (28, 28)}, ValueError, r"`input_shape` must be .*Received"),
        ({"num_classes": 0}, ValueError, r"`num_classes` must be >= 1. Received: num_classes=0"),
        ({"input_shape": (32, 32, 3)}, ValueError, r"pretrained head needs input_shape=\(28, 28, 3\).*include_top=False"),
        ({"weights": "imagenet"}, WeightsError, r"`weights` must be a known variant of lenet5 \(.*digits.*\).*Received: weights='imagenet'"),
        ({"weights": "/no/such/file.weights.h5"}, WeightsError, r"Weights file not found: /no/such/file.weights.h5"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        zoo.create("lenet5", **kwargs)


def test_weights_file_that_does_not_fit_is_rejected(tmp_path):
    path = tmp_path / "headless.weights.h5"
    zoo.create("lenet5", weights=None, include_top=False).save_weights(path)
    with pytest.raises(WeightsError, match="does not fit"):
        zoo.create("lenet5", weights=str(path), num_classes=None, include_top=True)


GENERATIVE = [name for task in ("text-generation", "autoencoder", "gan") for name in zoo.list_models(task=task)]


@pytest.mark.parametrize("name", GENERATIVE)
def test_generative_models_build_with_their_spec_parameter_count(name):
    spec = registry.get_spec(name)
    model = zoo.create(name)
    assert model.count_params() == spec.num_params
    assert zoo.list_models(task=spec.task) and name in zoo.list_models(task=spec.task)
    assert zoo.info(name)["task"] == spec.task


def test_list_by_task_shows_each_kind_of_model():
    assert "char_lstm" in zoo.list_models(task="text-generation")
    assert {"conv_autoencoder", "conv_vae"} <= set(zoo.list_models(task="autoencoder"))
    assert "lenet5" not in zoo.list_models(task="autoencoder")
