"""A semantic-segmentation set made from real photos, with masks known by construction.

Each image is a random crop of a scikit-image photo (the camera man, the moon, text,
bricks, grass, cells, a retina, deep space ...) with one or two objects cut from other
scikit-image photos pasted on it: a cat's face (chelsea), a cup of coffee, the
astronaut's face, the rocket and a single coin. Every object is cut out with the ellipse
inscribed in its pasted rectangle (a circle for the coin), so the shapes a model has to
trace are curved, not boxes, and the mask is exactly the ellipse: no annotator, no
guesswork. Class 0 is background; with `ignore_border=True` a one-pixel band along each
object's outline is `IGNORE` (255), as in Oxford-IIIT-Pet trimaps, so that resampling at
the edge does not decide a test.

`write_folder` lays a set out the way segmentation folders usually come (images/,
masks/ as palette PNGs holding class indices, codes.txt as in CamVid), and
`iou_per_class`/`mean_iou` are the tests' own reference for IoU, written without zoo so
that they can check it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from . import localisation

CLASSES = ("background", "cat", "coffee", "astronaut", "rocket", "coins")
IGNORE = 255
# (photo, crop rows, crop columns); the coin is the face in the middle of the third row
# of skimage.data.coins(), a square box that the coin fills, so its inscribed circle is
# the coin's outline.
OBJECTS = dict(localisation.OBJECTS, coins=("coins", (169, 217), (189, 237)))
# The coins photo is an object here; as a background it would put unlabelled coins
# next to labelled ones.
BACKGROUNDS = tuple(name for name in localisation.BACKGROUNDS if name != "coins")
OBJECT_SIDE = (0.35, 0.60)  # the longer side of a pasted object, as a fraction of size
# Half-width of the ignored band, in pixels: pixel centres between the ellipses with
# semi-axes shrunk and grown by this much are ignored, a band about one pixel wide
# each side of the outline.
BAND = 0.75

# Index 0 black, the classes in distinct colours (PASCAL VOC's first ones), IGNORE white.
PALETTE = np.zeros((256, 3), dtype=np.uint8)
PALETTE[1:len(CLASSES)] = [(128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128)]
PALETTE[IGNORE] = (255, 255, 255)


@functools.lru_cache(maxsize=None)
def _background(name):
    photo = localisation._load(name)
    photo.flags.writeable = False  # shared by every call through the cache
    return photo


@functools.lru_cache(maxsize=None)
def _object(name):
    photo, (r0, r1), (c0, c1) = OBJECTS[name]
    piece = np.ascontiguousarray(localisation._load(photo)[r0:r1, c0:c1])
    piece.flags.writeable = False
    return piece


def _ellipse(height, width, grow=0.0, pad=0):
    """Pixel centres inside the ellipse inscribed in a height x width box, its semi-axes
    grown by `grow` pixels, on the box padded by `pad` pixels each side."""
    y = np.arange(-pad, height + pad) + 0.5 - height / 2
    x = np.arange(-pad, width + pad) + 0.5 - width / 2
    a, b = height / 2 + grow, width / 2 + grow
    if a <= 0 or b <= 0:
        return np.zeros((height + 2 * pad, width + 2 * pad), dtype=bool)
    return (y[:, None] / a) ** 2 + (x[None, :] / b) ** 2 <= 1.0


def make_set(n, seed=0, size=64, ignore_border=True):
    """`(images uint8 (n, size, size, 3), masks uint8 (n, size, size))`; the masks hold
    indices into CLASSES, and IGNORE on object outlines when `ignore_border`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        photo = _background(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
        crop = max(1, int(min(photo.shape[:2]) * rng.uniform(0.2, 0.7)))
        top = rng.integers(0, photo.shape[0] - crop + 1)
        left = rng.integers(0, photo.shape[1] - crop + 1)
        image = np.array(Image.fromarray(photo[top:top + crop, left:left + crop]).resize(
            (size, size), Image.BILINEAR))
        mask = masks[i]
        for _ in range(int(rng.integers(1, 3))):
            label = int(rng.integers(1, len(CLASSES)))
            piece = _object(CLASSES[label])
            if rng.random() < 0.5:
                piece = piece[:, ::-1]
            longer = max(2, int(round(size * rng.uniform(*OBJECT_SIDE))))
            h, w = piece.shape[:2]
            if h >= w:
                ph, pw = longer, max(2, int(round(longer * w / h)))
            else:
                ph, pw = max(2, int(round(longer * h / w))), longer
            piece = np.asarray(Image.fromarray(np.ascontiguousarray(piece)).resize((pw, ph), Image.BILINEAR))
            y0 = int(rng.integers(0, size - ph + 1))
            x0 = int(rng.integers(0, size - pw + 1))
            # A hard alpha equal to the labelled ellipse: every pixel the mask calls the
            # object shows the object, and no other pixel does.
            inside = _ellipse(ph, pw)
            window = image[y0:y0 + ph, x0:x0 + pw]
            window[inside] = piece[inside]
            mask[y0:y0 + ph, x0:x0 + pw][inside] = label
            if ignore_border:
                # The band reaches BAND px outside the box, so work on the box padded by
                # one pixel and clip that to the image.
                band = _ellipse(ph, pw, BAND, pad=1) & ~_ellipse(ph, pw, -BAND, pad=1)
                top_, left_ = y0 - 1, x0 - 1
                bt, bl = max(0, -top_), max(0, -left_)
                bb = band.shape[0] - max(0, top_ + band.shape[0] - size)
                br = band.shape[1] - max(0, left_ + band.shape[1] - size)
                mask[top_ + bt:top_ + bb, left_ + bl:left_ + br][band[bt:bb, bl:br]] = IGNORE
        images[i] = image
    return images, masks


def write_folder(root, images, masks, codes=True, image_format="png"):
    """`root/images/NNNN.png|jpg`, `root/masks/NNNN.png` (palette PNGs of class indices)
    and, when `codes`, `root/codes.txt` (class names, one a line, in index order)."""
    from PIL import Image

    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', not {image_format!r}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    palette = PALETTE.reshape(-1).tolist()
    for i, (image, mask) in enumerate(zip(images, masks)):
        if image_format == "jpg":
            Image.fromarray(image).save(root / "images" / f"{i:04d}.jpg", quality=95)
        else:
            Image.fromarray(image).save(root / "images" / f"{i:04d}.png")
        # Mode "P" keeps the indices as they are, and the palette lets a person see them.
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        indexed = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
        indexed.putpalette(palette)
        indexed.save(root / "masks" / f"{i:04d}.png")
    if codes:
        (root / "codes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    return root


def iou_per_class(truth, prediction, num_classes, ignore=IGNORE):
    """IoU |A and B| / |A or B| of each class over the pixels where `truth` is not
    `ignore`; NaN for a class in neither."""
    truth = np.asarray(truth)
    prediction = np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    valid = np.ones(truth.shape, dtype=bool) if ignore is None else truth != ignore
    truth, prediction = truth[valid], prediction[valid]
    ious = np.full(num_classes, np.nan, dtype=np.float64)
    for c in range(num_classes):
        t, p = truth == c, prediction == c
        union = np.count_nonzero(t | p)
        if union:
            ious[c] = np.count_nonzero(t & p) / union
    return ious


def mean_iou(truth, prediction, num_classes, ignore=IGNORE):
    """The mean of `iou_per_class` over the classes present in truth or prediction."""
    return float(np.nanmean(iou_per_class(truth, prediction, num_classes, ignore)))


def tiny_encoder(inputs, include_top=True, classes=6):
    """A small convolutional encoder with stages at strides 2, 4, 8 and 16 (two 3x3
    convolutions with BatchNorm each, widths 16 to 96): what a U-Net decoder is fed
    by, small enough to train from scratch on 2 CPU cores in a test's budget."""
    from keras import layers

    x = inputs
    for stage, filters in enumerate((16, 32, 64, 96), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(filters, 3, strides=2 if conv == 1 else 1, padding="same", use_bias=False,
                              name=f"stage{stage}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"stage{stage}_bn{conv}")(x)
            x = layers.ReLU(name=f"stage{stage}_relu{conv}")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return x


def register_tiny_encoder():
    """Add `tiny_encoder` to zoo's registry (an image model like any other: `zoo train
    segmenter --model tiny_encoder` builds its U-Net on it)."""
    import zoo
    from zoo import models
    from zoo.errors import UnknownModelError

    try:
        return models.get_spec("tiny_encoder")
    except UnknownModelError:
        pass
    spec = zoo.ModelSpec(name="tiny_encoder", family="tests", task="image-classification", builder=tiny_encoder,
                         input_size=(64, 64), preprocessing="unit", labels=None, num_classes=len(CLASSES),
                         num_params=0, description="A small four-stage convolutional encoder for tests.",
                         default_weights=None, feature_layer="stage4_relu2")
    zoo.register(spec)
    return spec
