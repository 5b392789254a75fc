"""Weights in the official Keras-applications `.h5` layout load into zoo's models.

The published ImageNet files cannot be downloaded here, so each test makes a file of
the same layout: it builds the keras.applications model with `weights=None` (fixed
seed), writes it with Keras' own legacy HDF5 writer (the code that wrote the published
files), serves it from 127.0.0.1 under the published file name, and points a test
manifest at it. `zoo.create(..., weights="imagenet")` must download and verify the file
and, fed uint8 photos, give the reference model's outputs on the same photos
preprocessed by keras.applications' own `preprocess_input`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest


keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
skimage_data = pytest.importorskip("skimage.data")

pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)

# model, keras.applications constructor and module, variant, head, input side, hash kind.
# vgg19-top is the one published file of ~550 MB (about 25 s here); the others keep
# inputs small where the weights do not depend on the input size.
CASES = {
    "vgg19-top": ("vgg19", "VGG19", "vgg19", "imagenet", True, 224, "md5"),
    "vgg19-notop": ("vgg19", "VGG19", "vgg19", "imagenet_notop", False, 64, "md5"),
    "resnet50-top": ("resnet50", "ResNet50", "resnet50", "imagenet", True, 224, "md5"),
    "inception_v3-notop": ("inception_v3", "InceptionV3", "inception_v3", "imagenet_notop", False, 96, "sha256"),
}


def photos(side):
    """Three real photos (astronaut, cat, coffee) as uint8 `(3, side, side, 3)`."""
    from PIL import Image

    images = [skimage_data.astronaut(), skimage_data.chelsea(), skimage_data.coffee()]
    return np.stack(
        [np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR)) for image in images]
    )


def write_official_h5(model, path: Path) -> bytes:
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return path.read_bytes()


def published_filename(zoo_model, variant):
    """The file name of the published weights (from the shipped manifest's URL)."""
    from zoo import weights

    shipped = weights._read_manifest(weights.shipped_dir() / weights.MANIFEST_NAME, None)
    return Path(shipped[weights.key(zoo_model, variant)]["url"]).name


@pytest.mark.parametrize("case", list(CASES))
def test_official_layout_weights_download_load_and_match_keras(
    case, file_server, weights_manifest, zoo_home, tmp_path
):
    import zoo
    from zoo import weights

    model_name, constructor, module, variant, include_top, side, algorithm = CASES[case]
    applications = importlib.import_module(f"keras.applications.{module}")
    filename = published_filename(model_name, variant)

    keras.utils.set_random_seed(0)
    reference = getattr(keras.applications, constructor)(
        weights=None, include_top=include_top, input_shape=(side, side, 3)
    )
    data = write_official_h5(reference, tmp_path / filename)
    url = file_server.add(f"{case}/{filename}", data)
    weights_manifest(
        weights_manifest.variant(model_name, variant, url, data, algorithm=algorithm,
                                 include_top=include_top)
    )

    keras.utils.set_random_seed(1)  # zoo's own initialisation must differ from the file
    model = zoo.create(
        model_name, weights="imagenet", include_top=include_top,
        input_shape=None if include_top else (side, side, 3),
    )

    # Downloaded once from the test server, verified, cached under the published name.
    assert [r.range for r in file_server.requests_for(f"{case}/{filename}")] == [None]
    cached = zoo_home / "weights" / model_name / filename
    assert cached.read_bytes() == data
    assert weights.verify(weights.resolve(model_name, variant)) == cached

    images = photos(side)
    assert model.input.dtype == "uint8"
    expected = reference.predict(applications.preprocess_input(images.astype("float32")), verbose=0)
    got = model.predict(images, verbose=0)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) < 1e-5
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    # Not a degenerate match (all zeros, or the same output for every photo).
    assert np.std(expected) > 0
    assert np.max(np.abs(expected[0] - expected[1])) > 10 * 1e-5
    keras.backend.clear_session()

