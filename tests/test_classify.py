"""`zoo.classify` in-process: result format, bad files among good ones, every image mode
Pillow reads, and agreement with calling the model directly.

LeNet-5 (shipped weights, 28x28) keeps these instant; the CLI tests run a real
ImageNet architecture on real photos.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import zoo
from zoo.data.pillow import as_batch, load_rgb, to_rgb


@pytest.fixture(scope="module")
def lenet():
    return zoo.create("lenet5")


@pytest.fixture(scope="module")
def photo():
    import skimage.data

    return skimage.data.chelsea()  # a real photo of a cat, 300x451 RGB


def _check_result(result, top, num_classes=10):
    assert set(result) == {"image", "predictions"}
    predictions = result["predictions"]
    assert len(predictions) == top
    for p in predictions:
        assert set(p) == {"label", "class_id", "probability"}
        assert isinstance(p["label"], str) and isinstance(p["class_id"], int)
        assert isinstance(p["probability"], float) and 0.0 <= p["probability"] <= 1.0
        assert 0 <= p["class_id"] < num_classes
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert len({p["class_id"] for p in predictions}) == top


def test_result_format_and_order(tmp_path, photo):
    paths = []
    for i, crop in enumerate([photo, photo[:150], photo[:, :200]]):
        path = tmp_path / f"cat{i}.jpg"
        Image.fromarray(crop).save(path, quality=90)
        paths.append(str(path))
    results = zoo.classify(paths, model="lenet5", top=3)
    assert [r["image"] for r in results] == paths
    for result in results:
        _check_result(result, top=3)
        assert result["predictions"][0]["label"] == str(result["predictions"][0]["class_id"])


def test_single_path_and_pathlike(tmp_path, photo):
    path = tmp_path / "cat.png"
    Image.fromarray(photo).save(path)
    by_str = zoo.classify(str(path), model="lenet5", top=1)
    by_path = zoo.classify(path, model="lenet5", top=1)
    assert len(by_str) == 1 and by_str[0]["image"] == str(path)
    assert by_str[0]["predictions"] == by_path[0]["predictions"]


def test_matches_calling_the_model(tmp_path, lenet):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28, 3), dtype="uint8")
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"img{i}.png"  # lossless, already 28x28: no resize
        Image.fromarray(image).save(path)
        paths.append(path)
    expected = np.asarray(lenet(images))
    results = zoo.classify(paths, model=lenet, top=10)
    for result, row in zip(results, expected):
        got = np.zeros(10)
        for p in result["predictions"]:
            got[p["class_id"]] = p["probability"]
        np.testing.assert_allclose(got, row, rtol=1e-5, atol=1e-6)


def test_arrays_and_pil_images(lenet, photo):
    results = zoo.classify([photo, Image.fromarray(photo), photo[:28, :28]], model=lenet, top=2)
    assert [r["image"] for r in results] == ["#0", "#1", "#2"]
    for result in results:
        _check_result(result, top=2)
    # A numpy array and the same pixels as a PIL image give the same answer.
    assert results[0]["predictions"] == results[1]["predictions"]


def test_a_bad_file_is_reported_and_the_others_classified(tmp_path, photo):
    good = tmp_path / "good.jpg"
    Image.fromarray(photo).save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    missing = tmp_path / "missing.png"
    results = zoo.classify([truncated, good, text, missing, good], model="lenet5", top=1)
    assert [r["image"] for r in results] == [str(p) for p in (truncated, good, text, missing, good)]
    for index in (0, 2, 3):
        assert set(results[index]) == {"image", "error"}
        assert results[index]["error"].startswith(results[index]["image"])
    assert "truncated" in results[0]["error"]
    assert "no such file" in results[3]["error"]
    assert results[1]["predictions"] == results[4]["predictions"]


def test_all_images_bad(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    results = zoo.classify([bad], model="lenet5")
    assert results == [{"image": str(bad), "error": results[0]["error"]}]
    assert zoo.classify([], model="lenet5") == []


def test_top_and_labels(lenet, photo):
    assert len(zoo.classify(photo, model=lenet, top=50)[0]["predictions"]) == 10  # capped
    names = [f"class-{i}" for i in range(10)]
    result = zoo.classify(photo, model=lenet, top=10, labels=names)[0]
    assert sorted(p["label"] for p in result["predictions"]) == sorted(names)
    for p in result["predictions"]:
        assert p["label"] == names[p["class_id"]]
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(ValueError, match="`top` must be a positive int"):
            zoo.classify(photo, model=lenet, top=bad)


def test_unknown_model_name():
    from zoo.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match="lenet5"):
        zoo.classify(np.zeros((28, 28, 3), "uint8"), model="lenet")


def test_batches_give_the_same_answer(lenet):
    images = list(np.random.default_rng(1).integers(0, 256, (7, 28, 28, 3), dtype="uint8"))
    whole = zoo.classify(images, model=lenet, top=3, batch_size=32)
    small = zoo.classify(images, model=lenet, top=3, batch_size=2)
    for a, b in zip(whole, small):
        assert [p["class_id"] for p in a["predictions"]] == [p["class_id"] for p in b["predictions"]]
        np.testing.assert_allclose([p["probability"] for p in a["predictions"]],
                                   [p["probability"] for p in b["predictions"]], rtol=1e-5)


# --------------------------------------------------------------------------- image modes
def _rgb_of(path):
    return load_rgb(path)


def test_png_with_alpha_is_composited_on_white(tmp_path, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, "uint8")])
    rgba[:100, :, 3] = 0  # a transparent band on top
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = _rgb_of(path)
    assert rgb.dtype == np.uint8 and rgb.shape == photo.shape
    assert (rgb[:100] == 255).all()
    np.testing.assert_array_equal(rgb[100:], photo[100:])


def test_grayscale(tmp_path, photo):
    gray = Image.fromarray(photo).convert("L")
    path = tmp_path / "gray.png"
    gray.save(path)
    rgb = _rgb_of(path)
    assert rgb.shape == photo.shape
    np.testing.assert_array_equal(rgb[..., 0], np.asarray(gray))
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_cmyk_jpeg(tmp_path, photo):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(photo).convert("CMYK").save(path, quality=95)
    with Image.open(path) as opened:
        assert opened.mode == "CMYK"
    rgb = _rgb_of(path)
    assert rgb.shape == photo.shape
    # Close to the original colours (JPEG and CMYK round trip lose a little).
    assert np.abs(rgb.astype(int) - photo.astype(int)).mean() < 8


def test_16_bit_png_is_scaled_not_clipped(tmp_path, photo):
    gray8 = np.asarray(Image.fromarray(photo).convert("L"))
    gray16 = gray8.astype("uint16") * 257  # 0..65535
    path = tmp_path / "deep.png"
    Image.fromarray(gray16).save(path)
    with Image.open(path) as opened:
        assert opened.mode.startswith("I")
    rgb = _rgb_of(path)
    assert rgb.shape == photo.shape
    np.testing.assert_array_equal(rgb[..., 1], gray8)


def test_palette_and_exif_rotation(tmp_path, photo):
    path = tmp_path / "palette.gif"
    Image.fromarray(photo).convert("P").save(path)
    assert _rgb_of(path).shape == photo.shape
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(photo).save(rotated, exif=exif, quality=90)
    assert _rgb_of(rotated).shape == (photo.shape[1], photo.shape[0], 3)


def test_every_mode_classifies(tmp_path, photo):
    pil = Image.fromarray(photo)
    files = {
        "rgb.jpg": pil,
        "alpha.png": pil.convert("RGBA"),
        "gray.png": pil.convert("L"),
        "cmyk.jpg": pil.convert("CMYK"),
        "deep.png": Image.fromarray(np.asarray(pil.convert("L")).astype("uint16") * 257),
        "la.png": pil.convert("LA"),
        "palette.png": pil.convert("P"),
    }
    paths = []
    for name, image in files.items():
        image.save(tmp_path / name)
        paths.append(tmp_path / name)
    results = zoo.classify(paths, model="lenet5", top=1)
    assert all("predictions" in r for r in results), results


def test_as_batch_resizes_to_the_model_input(tmp_path, photo):
    path = tmp_path / "cat.jpg"
    Image.fromarray(photo).save(path)
    batch, errors = as_batch([path, photo, Image.fromarray(photo)], (224, 200))
    assert errors == {}
    assert batch.shape == (3, 224, 200, 3) and batch.dtype == np.uint8
    # The same pixels give (nearly) the same resized image, whatever the source.
    assert np.abs(batch[1].astype(int) - batch[2].astype(int)).max() <= 1
    assert np.abs(batch[0].astype(int) - batch[1].astype(int)).mean() < 6  # JPEG loss


def test_as_batch_rejects_wrong_array_shapes():
    batch, errors = as_batch([np.zeros((8, 8)), np.zeros((8, 8, 4)), np.zeros((8, 8, 3))], (8, 8))
    assert sorted(errors) == [0, 1] and "expected an (H, W, 3) array" in errors[0]
    assert batch.shape == (1, 8, 8, 3)


def test_to_rgb_of_float_image():
    image = Image.fromarray(np.linspace(0, 1, 64, dtype="float32").reshape(8, 8), "F")
    rgb = np.asarray(to_rgb(image))
    assert rgb.shape == (8, 8, 3) and rgb.max() == 255 and rgb.min() == 0


def test_zoo_classify_stays_the_function_after_runs_predict(tmp_path):
    """`zoo.classify` must not be shadowed by a submodule of the same name once other
    parts of zoo (e.g. Run.predict) have imported the implementation."""
    import zoo.runs  # noqa: F401
    import zoo.tasks.classify  # noqa: F401

    assert callable(zoo.classify) and zoo.classify.__name__ == "classify"
