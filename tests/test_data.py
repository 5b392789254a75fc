"""zoo.data: image folders (checked files, odd formats, splits, errors) and TFDS."""

import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import zoo.data  # noqa: E402
from zoo.data import image_folder  # noqa: E402
from zoo.errors import DataError  # noqa: E402
from zoo.data.pillow import load_rgb  # noqa: E402

SIZE = (24, 32)  # (height, width): the odd files are written at this size, so the
# pipeline's resize is the identity and pixels compare exactly with Pillow's.


def _photo(name):
    import skimage.data

    return getattr(skimage.data, name)()


def _crops(photo, count, size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(count):
        scale = rng.integers(2, 5)
        top = rng.integers(0, photo.shape[0] - h * scale)
        left = rng.integers(0, photo.shape[1] - w * scale)
        crop = photo[top : top + h * scale, left : left + w * scale]
        out.append(np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR)))
    return out


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """Two classes of real photo crops plus every kind of awkward file."""
    root = tmp_path_factory.mktemp("messy")
    cats, rockets = root / "cat", root / "rocket"
    cats.mkdir()
    rockets.mkdir()
    for i, crop in enumerate(_crops(_photo("chelsea"), 5)):
        Image.fromarray(crop).save(cats / f"cat{i}.jpg", quality=90)
    for i, crop in enumerate(_crops(_photo("rocket"), 4, seed=1)):
        Image.fromarray(crop).save(rockets / f"rocket{i}.png")
    h, w = SIZE
    special = {}
    # CMYK JPEG (TF's decoder is not trusted with these; Pillow converts them).
    cmyk = Image.fromarray(_crops(_photo("coffee"), 1)[0]).convert("CMYK")
    special["cmyk"] = cats / "cmyk.jpg"
    cmyk.save(special["cmyk"], quality=95)
    # 16-bit grayscale ramp 0..65535: must come out as a ramp, not saturated white.
    ramp = np.tile(np.linspace(0, 65535, w), (h, 1)).astype("uint16")
    special["gray16"] = rockets / "ramp16.png"
    Image.fromarray(ramp).save(special["gray16"])
    assert Image.open(special["gray16"]).mode.startswith("I;16")
    # 8-bit grayscale.
    gray = np.asarray(Image.fromarray(_crops(_photo("astronaut"), 1)[0]).convert("L"))
    special["gray"] = cats / "gray.png"
    Image.fromarray(gray).save(special["gray"])
    # RGBA: transparent pixels become white, as zoo.data.pillow.to_rgb does.
    rgba = np.dstack([_crops(_photo("astronaut"), 1, seed=3)[0], np.full((h, w), 255, "uint8")])
    rgba[:, : w // 2, 3] = 0
    special["rgba"] = rockets / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(special["rgba"])
    # The three bad files.
    good_jpeg = (cats / "cat0.jpg").read_bytes()
    bad = {
        "truncated": cats / "truncated.jpg",
        "text": rockets / "notes.txt",
        "empty": rockets / "empty.png",
    }
    bad["truncated"].write_bytes(good_jpeg[: len(good_jpeg) // 2])
    bad["text"].write_text("not a picture\n")
    bad["empty"].write_bytes(b"")
    (cats / ".DS_Store").write_bytes(b"\x00\x01junk")  # hidden: ignored, not reported
    return {"root": root, "special": special, "bad": bad, "num_good": 5 + 4 + 4}


def _all(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def test_messy_folder_whole_epoch_and_exact_report(messy):
    data = image_folder(messy["root"], image_size=SIZE, batch_size=4, augment=True, verbose=False)
    train, val, classes = data
    assert classes == ["cat", "rocket"]
    report = data.report
    bad = {str(p): kind for kind, p in messy["bad"].items()}
    assert {s.path for s in report.skipped} == set(bad)
    reasons = {s.path: s.reason for s in report.skipped}
    assert "truncated" in reasons[str(messy["bad"]["truncated"])]
    assert "not an image" in reasons[str(messy["bad"]["text"])]
    assert "empty" in reasons[str(messy["bad"]["empty"])]
    for epoch in range(2):  # the second epoch reads from the cache
        x, y = _all(train)
        assert x.dtype == np.uint8 and x.shape[1:] == (*SIZE, 3)
        assert len(x) == report.num_train
    xv, yv = _all(val)
    assert len(x) + len(xv) == messy["num_good"]
    text = str(report)
    for path, reason in reasons.items():
        assert f"{path}: {reason}" in text
    assert report.counts == {
        "cat": (int((report.train_labels == 0).sum()), int((report.val_labels == 0).sum())),
        "rocket": (int((report.train_labels == 1).sum()), int((report.val_labels == 1).sum())),
    }


def test_odd_formats_match_pillow_conversion(messy):
    files = [str(p) for p in messy["special"].values()]
    checks = zoo.data.check_files(files, verbose=False)
    assert all(c.ok for c in checks)
    modes = {c.path: c.mode for c in checks}
    assert modes[str(messy["special"]["cmyk"])] == "CMYK"
    pillow = {c.path for c in checks if c.pillow}
    assert str(messy["special"]["cmyk"]) in pillow and str(messy["special"]["rgba"]) in pillow
    ds = zoo.data.from_files(files, [0] * len(files), SIZE, batch_size=8, pillow_files=pillow)
    images, _ = _all(ds)
    for image, path in zip(images, files):
        expected = load_rgb(path)
        assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1, path
    out = dict(zip(messy["special"], images))
    ramp = out["gray16"][..., 0].astype(int)
    assert ramp[:, 0].max() <= 1 and ramp[:, -1].min() >= 254  # 0 → black, 65535 → white
    assert 100 < ramp.mean() < 155  # a ramp, not saturated to white
    assert np.all(np.diff(ramp[0]) >= 0)
    assert (out["gray"][..., 0] == out["gray"][..., 1]).all()
    assert (out["gray"][..., 0] == np.asarray(Image.open(messy["special"]["gray"]))).all()
    assert (out["rgba"][:, :10] == 255).all()  # the transparent half is white
    # CMYK: close to the RGB photo it was made from (JPEG loss aside).
    original = _crops(_photo("coffee"), 1)[0].astype(int)
    assert np.abs(out["cmyk"].astype(int) - original).mean() < 12


def test_split_is_deterministic_stratified_and_complete(messy):
    a = zoo.data.scan_folder(messy["root"], validation_split=0.4, seed=7, verbose=False)
    b = zoo.data.scan_folder(messy["root"], validation_split=0.4, seed=7, verbose=False)
    c = zoo.data.scan_folder(messy["root"], validation_split=0.4, seed=8, verbose=False)
    assert a.val_files == b.val_files and a.train_files == b.train_files
    assert a.val_files != c.val_files
    assert not set(a.train_files) & set(a.val_files)
    assert len(a.train_files) + len(a.val_files) == messy["num_good"]
    assert set(a.train_labels) == set(a.val_labels) == {0, 1}
    assert a.counts == {"cat": (4, 3), "rocket": (4, 2)}


def test_unshuffled_train_follows_file_order(messy):
    data = image_folder(
        messy["root"], image_size=SIZE, batch_size=3, shuffle=False, augment=False, verbose=False
    )
    images, labels = _all(data.train)
    assert list(labels) == list(data.report.train_labels)
    first = data.report.train_files[0]
    # TF's and Pillow's JPEG decoders round the IDCT differently: close, not equal.
    diff = np.abs(images[0].astype(int) - load_rgb(first).astype(int))
    assert diff.mean() < 1.5 and diff.max() <= 8
    again, _ = _all(data.report.dataset("train", batch_size=5))
    assert (again == images).all()


def test_shuffled_train_changes_order_between_epochs(messy):
    train = image_folder(messy["root"], SIZE, batch_size=16, validation_split=0.2, verbose=False).train
    orders = [tuple(_all(train)[0].reshape(-1, np.prod(SIZE) * 3).sum(1)) for _ in range(3)]
    assert sorted(orders[0]) == sorted(orders[1])
    assert len(set(orders)) > 1
    # The same seed, the same orders, epoch by epoch: decoding in parallel must not
    # reorder the images (a rerun, or another worker of a multi-worker run, sees these).
    for cache in (True, False):
        runs = [image_folder(messy["root"], SIZE, batch_size=16, validation_split=0.2, verbose=False, cache=cache).train
                for _ in range(2)]
        assert [tuple(_all(runs[0])[0].reshape(-1, np.prod(SIZE) * 3).sum(1)) for _ in range(2)] == \
            [tuple(_all(runs[1])[0].reshape(-1, np.prod(SIZE) * 3).sum(1)) for _ in range(2)]


def test_augmentation_is_uint8_and_has_no_vertical_flip(messy):
    layer = zoo.data.default_augmentation()
    flips = [l for l in layer.layers if l.__class__.__name__ == "RandomFlip"]
    assert [f.mode for f in flips] == ["horizontal"]
    data = image_folder(messy["root"], SIZE, batch_size=16, augment=True, shuffle=False, verbose=False)
    plain = image_folder(messy["root"], SIZE, batch_size=16, augment=False, shuffle=False, verbose=False)
    x_aug, y_aug = _all(data.train)
    x, y = _all(plain.train)
    assert x_aug.dtype == np.uint8 and x_aug.shape == x.shape
    assert (y_aug == y).all()
    assert not (x_aug == x).all()
    assert (_all(data.val)[0] == _all(plain.val)[0]).all()  # validation is never augmented


def test_custom_augmentation_layer(messy):
    import keras

    invert = keras.layers.Lambda(lambda t: 255.0 - t)
    data = image_folder(messy["root"], SIZE, batch_size=16, augment=invert, shuffle=False, verbose=False)
    plain = image_folder(messy["root"], SIZE, batch_size=16, shuffle=False, verbose=False)
    assert (_all(data.train)[0] == 255 - _all(plain.train)[0]).all()


def test_crop_keeps_the_centre(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            wide = np.zeros((20, 40, 3), "uint8")
            wide[:, :10] = (255, 0, 0)
            wide[:, 10:30] = (0, 255, 0)
            wide[:, 30:] = (0, 0, 255)
            Image.fromarray(wide).save(tmp_path / name / f"{i}.png")
    crop = image_folder(tmp_path, (10, 10), resize="crop", validation_split=0, verbose=False)
    squish = image_folder(tmp_path, (10, 10), resize="squish", validation_split=0, verbose=False)
    assert crop.val is None
    x = _all(crop.train)[0]
    assert (x[:, 1:-1, 1:-1] == (0, 255, 0)).all()
    xs = _all(squish.train)[0]
    assert xs[0, 5, 0, 0] > 200 and xs[0, 5, -1, 2] > 200  # squish keeps the red and blue edges


def _write(folder, count, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i, crop in enumerate(_crops(_photo("chelsea"), count, seed=start)):
        Image.fromarray(crop).save(folder / f"{start + i}.jpg")


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no images found") as info:
        image_folder(tmp_path, SIZE, verbose=False)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="no images found"):
        image_folder(tmp_path, SIZE, verbose=False)
    with pytest.raises(DataError, match="not a folder"):
        image_folder(tmp_path / "nope", SIZE, verbose=False)


def test_single_class(tmp_path):
    _write(tmp_path / "only", 3)
    with pytest.raises(DataError, match="only one class .'only'.") as info:
        image_folder(tmp_path, SIZE, verbose=False)
    assert str(tmp_path) in str(info.value)


def test_class_with_one_usable_image(tmp_path):
    _write(tmp_path / "many", 3)
    _write(tmp_path / "lonely", 1)
    (tmp_path / "lonely" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(DataError, match="class 'lonely' has 1 usable image.*1 skipped") as info:
        image_folder(tmp_path, SIZE, verbose=False)
    assert str(tmp_path / "lonely") in str(info.value)
    # Without a validation split, one image is enough.
    data = image_folder(tmp_path, SIZE, validation_split=0, verbose=False)
    assert data.report.counts == {"lonely": (1, 0), "many": (3, 0)}


def test_argument_errors(tmp_path):
    _write(tmp_path / "a", 2)
    _write(tmp_path / "b", 2)
    with pytest.raises(ValueError, match=r"Received: image_size=\(0, 3\)"):
        image_folder(tmp_path, (0, 3), verbose=False)
    with pytest.raises(ValueError, match="Received: resize='stretch'"):
        image_folder(tmp_path, SIZE, resize="stretch", verbose=False)
    with pytest.raises(ValueError, match="Received: validation_split=1"):
        image_folder(tmp_path, SIZE, validation_split=1, verbose=False)
    with pytest.raises(ValueError, match="Received: augment='yes'"):
        image_folder(tmp_path, SIZE, augment="yes", verbose=False)


def test_check_image_reasons(tmp_path, messy):
    assert zoo.data.check_image(tmp_path / "missing.jpg").reason.startswith("cannot read")
    ok = zoo.data.check_image(messy["root"] / "cat" / "cat0.jpg")
    assert ok.ok and not ok.pillow and ok.format == "JPEG"


def test_cache_to_file(messy, tmp_path):
    data = image_folder(
        messy["root"], SIZE, cache=str(tmp_path / "cache"), shuffle=False, verbose=False
    )
    first = _all(data.train)[0]
    assert any(p.name.startswith("cache") for p in tmp_path.iterdir())
    assert (_all(data.train)[0] == first).all()


def test_tfds_mnist_offline():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=10):
        ds, classes = zoo.data.tfds("mnist", split="train", image_size=32, batch_size=4)
    assert classes == [str(i) for i in range(10)]
    x, y = next(iter(ds))
    assert x.dtype.name == "uint8" and tuple(x.shape) == (4, 32, 32, 3)
    assert y.dtype.name == "int32"
    assert (x[..., 0].numpy() == x[..., 2].numpy()).all()  # grayscale repeated


def test_tfds_several_splits_varying_sizes():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=10):
        data = zoo.data.tfds(
            "tf_flowers", split=["train[:80%]", "train[80%:]"], image_size=(16, 20), batch_size=3
        )
        with pytest.raises(DataError, match="image_size"):
            zoo.data.tfds("tf_flowers", split="train")
    train, val, classes = data
    assert len(classes) == 5 and data.info.name == "tf_flowers"
    # mock_data ignores split slicing: each split gets all 10 mock examples.
    assert sum(int(x.shape[0]) for x, _ in train) == 10
    x, _ = next(iter(val))
    assert tuple(x.shape[1:]) == (16, 20, 3) and x.dtype.name == "uint8"


def test_batches_feed_a_zoo_model(messy):
    """uint8 batches go straight into a registry model (it normalises inside)."""
    import zoo

    data = image_folder(messy["root"], (32, 32), batch_size=4, verbose=False)
    model = zoo.create("lenet5", weights=None, num_classes=2, input_shape=(32, 32, 3))
    x, _ = next(iter(data.train))
    assert x.dtype.name == "uint8"
    assert tuple(model(x).shape) == (x.shape[0], 2)


def test_large_jpeg_downscale_matches_pillow(tmp_path):
    """A photo 8x larger than the target takes the reduced-decode path (DCT scaling)
    and still looks like Pillow's antialiased resize."""
    photo = _photo("astronaut")  # 512x512
    path = tmp_path / "big.jpg"
    Image.fromarray(photo).save(path, quality=92)
    for size in [(32, 32), (48, 40), (300, 200)]:
        ds = zoo.data.from_files([str(path)], [0], size, resize="squish")
        ours = next(iter(ds))[0][0].numpy().astype(int)
        theirs = load_rgb(path, size).astype(int)
        assert np.abs(ours - theirs).mean() < 5, size


def test_fifos_odd_names_links_and_loops_in_a_folder(tmp_path):
    """Only regular files; any file name; each real file once, never in both splits."""
    from PIL import Image

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype="uint8")).save(root / name / f"{i}.png")
    odd = os.fsencode(str(root / "b")) + b"/\xff\xfe-not-utf8.png"
    with open(odd, "wb") as f:
        f.write((root / "b" / "0.png").read_bytes())
    os.mkfifo(root / "a" / "pipe.png")
    os.symlink("..", root / "a" / "loop")  # a/loop/a/loop/... and a/loop/b/...
    os.symlink(root / "a" / "1.png", root / "a" / "again.png")

    report = zoo.data.scan_folder(root, validation_split=0.5, seed=0, verbose=False)
    reasons = {os.path.basename(s.path): s.reason for s in report.skipped}
    assert "not a regular file" in reasons["pipe.png"]
    assert "the same file as" in reasons["again.png"]
    assert report.num_train + report.num_val == 6 + 7  # each real file once, the odd name included
    train, val = set(map(os.path.realpath, report.train_files)), set(map(os.path.realpath, report.val_files))
    assert not train & val
    data = zoo.data.image_folder(root, image_size=32, batch_size=4, validation_split=0.5, verbose=False)
    assert sum(len(np.asarray(y)) for _, y in data.train) == report.num_train
