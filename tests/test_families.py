"""Issue 25: today's backbones from keras.applications, on the registry's contract (uint8
in, the family's preprocessing inside, official weight files in the manifest).

Each family's smallest model, at a small input side: it builds with the weights Keras'
own model has (shapes, order, count); an official-layout weight file (written by the
test from keras.applications with a seeded random init: the published files cannot be
downloaded here) loads into it and gives keras.applications' outputs on real photos
within 1e-5; and it fine-tunes on a real photo folder. The other sizes of each family
(the same module, the same builder) are checked for their parameter count with
`--run_deep`: building EfficientNet-B7 or ConvNeXt-XLarge takes long."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

import zoo
from zoo import models as registry

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.large

# The smallest model of each family: zoo name -> keras.applications module (for its
# preprocess_input, the reference's input).
SMALLEST = {"efficientnet_b0": "efficientnet", "efficientnet_v2_b0": "efficientnet_v2", "convnext_tiny": "convnext",
            "mobilenet_v2": "mobilenet_v2", "mobilenet_v3_small": "mobilenet_v3", "densenet121": "densenet",
            "xception": "xception", "inception_resnet_v2": "inception_resnet_v2", "nasnet_mobile": "nasnet"}
FAMILIES = ("efficientnet", "efficientnet_v2", "convnext", "mobilenet", "densenet", "xception", "inception_resnet",
            "nasnet")
SIDE = 96


def _constructor(name):
    return registry.get_spec(name).builder.target.partition(":")[2]


def _photos(side):
    import skimage.data
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(getattr(skimage.data, n)()).resize((side, side)))
                     for n in ("astronaut", "chelsea", "coffee", "rocket")]).astype("uint8")


def test_every_family_is_registered_with_keras_documented_figures():
    names = [n for n in zoo.list_models(task="image-classification") if registry.get_spec(n).family in FAMILIES]
    assert len(names) == 30
    for name in names:
        spec = registry.get_spec(name)
        assert spec.preprocessing in ("raw", "tf", "torch") and spec.input_size[0] >= 224
        entries = zoo.info(name)["weights"]
        if name == "mobilenet_v2":
            assert entries == {} and spec.default_weights is None  # Keras publishes no hash for its files
            continue
        assert set(entries) == {"imagenet", "imagenet_notop"}
        for entry in entries.values():
            assert entry["url"].startswith("https://storage.googleapis.com/") and ":" in entry["hash"]
    assert registry.get_spec("convnext_tiny").top1 == 81.3 and registry.get_spec("efficientnet_b0").top1 == 77.1


@pytest.mark.parametrize("name", list(SMALLEST))
def test_official_layout_weights_load_and_answer_as_keras_applications(name, tmp_path):
    from test_official_weights import write_official_h5

    constructor = getattr(keras.applications, _constructor(name))
    keras.utils.set_random_seed(0)
    reference = constructor(weights=None, include_top=False, input_shape=(SIDE, SIDE, 3))
    write_official_h5(reference, tmp_path / f"{name}_notop.h5")
    keras.utils.set_random_seed(1)  # zoo's own initialisation differs from the file
    model = zoo.create(name, weights=tmp_path / f"{name}_notop.h5", include_top=False, input_shape=(SIDE, SIDE, 3))
    assert model.input.dtype == "uint8"
    assert [tuple(w.shape) for w in model.weights] == [tuple(w.shape) for w in reference.weights]
    photos = _photos(SIDE)
    module = importlib.import_module(f"keras.applications.{SMALLEST[name]}")
    expected = np.asarray(reference.predict(module.preprocess_input(photos.astype("float32")), verbose=0))
    got = np.asarray(model.predict(photos, verbose=0))
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max()), np.abs(got - expected).max()
    assert np.std(expected) > 0


# MobileNetV3-Small in CI's large tier (18 s); the other families' fine-tunes take 17-80 s
# each here and run with `--run_deep`.
@pytest.mark.parametrize("name", [n if n == "mobilenet_v3_small" else pytest.param(n, marks=pytest.mark.deep)
                                  for n in SMALLEST])
def test_a_family_fine_tunes_on_a_photo_folder(name, tmp_path):
    """Two epochs (one frozen, one fine-tuning) at 96 px on crops of two real photos."""
    from test_batch_norm import crops
    from PIL import Image

    from helpers import forked_zoo

    images, labels = crops(12, 128, seed=0)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "photos" / ("chelsea", "coffee")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    constructor = getattr(keras.applications, _constructor(name))
    from test_official_weights import write_official_h5

    keras.utils.set_random_seed(0)
    write_official_h5(constructor(weights=None, include_top=False, input_shape=(SIDE, SIDE, 3)), tmp_path / "w.h5")
    out = tmp_path / "run"
    done = forked_zoo.run(["finetune", tmp_path / "photos", "--model", name, "--weights", tmp_path / "w.h5",
                           "--image-size", SIDE, "--epochs", 1, "--out", out, "--no-tensorboard"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert zoo.load_run(out).model.inputs[0].shape[1:3] == (SIDE, SIDE)


@pytest.mark.deep
@pytest.mark.parametrize("name", [
    "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6",
    "efficientnet_b7", "efficientnet_v2_b1", "efficientnet_v2_b2", "efficientnet_v2_b3", "efficientnet_v2_s",
    "efficientnet_v2_m", "efficientnet_v2_l", "convnext_small", "convnext_base", "convnext_large", "convnext_xlarge",
    "mobilenet_v3_large", "densenet169", "densenet201", "nasnet_large", *SMALLEST])
def test_every_size_builds_at_its_spec_parameter_count(name):
    model = zoo.create(name, weights=None)
    assert model.count_params() == registry.get_spec(name).num_params
    keras.backend.clear_session()
