"""A localisation set for the pointing game (Zhang et al., 2016), made from real photos.

Each image is a 64x64 crop of a scikit-image photo (a camera man, the moon, text,
coins, bricks, grass, cells, a retina, deep space ...) with one object cut from another
scikit-image photo pasted at a random place, scale and mirror: a cat's face (chelsea),
a cup of coffee, the astronaut's face, the rocket. The class is the object, so the only
evidence for it is inside the pasted box; backgrounds come from the same photos for
every class.

`register_tiny_cnn()` adds `tiny_cnn` to zoo's registry: a small convolutional network
(a 16x16 last block at 64x64) that trains from scratch on 2 CPU cores in seconds; it
goes through `zoo finetune` like any registry model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 64
OBJECT_SIZES = (22, 30)
# (photo, crop rows, crop columns) of each class's object.
OBJECTS = {"cat": ("chelsea", (10, 240), (110, 340)), "coffee": ("coffee", (20, 330), (120, 470)),
           "astronaut": ("astronaut", (20, 220), (150, 330)), "rocket": ("rocket", (60, 420), (280, 420))}
BACKGROUNDS = ("camera", "moon", "page", "text", "coins", "brick", "grass", "gravel", "hubble_deep_field",
               "immunohistochemistry", "retina")


def _rgb(image):
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (255 * image.astype("float32") / max(1e-9, float(image.max()))).astype("uint8")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3]


def _load(name):
    import skimage.data

    return _rgb(getattr(skimage.data, name)())


def make_set(n_per_class=60, classes=tuple(OBJECTS), seed=0):
    """`(images uint8 (N, 64, 64, 3), labels (N,), boxes (N, 4) as x0, y0, x1, y1)`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    backgrounds = [_load(name) for name in BACKGROUNDS]
    objects = {}
    for name in classes:
        photo, (r0, r1), (c0, c1) = OBJECTS[name]
        objects[name] = _load(photo)[r0:r1, c0:c1]
    images, labels, boxes = [], [], []
    for label, name in enumerate(classes):
        obj = objects[name]
        for _ in range(n_per_class):
            photo = backgrounds[rng.integers(len(backgrounds))]
            crop = int(min(photo.shape[:2]) * rng.uniform(0.2, 0.7))
            top = rng.integers(0, photo.shape[0] - crop + 1)
            left = rng.integers(0, photo.shape[1] - crop + 1)
            image = np.asarray(Image.fromarray(photo[top:top + crop, left:left + crop]).resize(
                (SIZE, SIZE), Image.BILINEAR)).copy()
            # The object: a slightly jittered crop of its photo, mirrored half the time.
            h, w = obj.shape[:2]
            dy, dx = rng.integers(0, h // 10 + 1), rng.integers(0, w // 10 + 1)
            piece = obj[dy:h - (h // 10 - dy), dx:w - (w // 10 - dx)]
            if rng.random() < 0.5:
                piece = piece[:, ::-1]
            side = int(rng.integers(OBJECT_SIZES[0], OBJECT_SIZES[1] + 1))
            ph = side
            pw = max(8, int(round(side * piece.shape[1] / piece.shape[0])))
            if pw > SIZE - 2:
                pw = SIZE - 2
            piece = np.asarray(Image.fromarray(np.ascontiguousarray(piece)).resize((pw, ph), Image.BILINEAR))
            x0 = int(rng.integers(0, SIZE - pw + 1))
            y0 = int(rng.integers(0, SIZE - ph + 1))
            image[y0:y0 + ph, x0:x0 + pw] = piece
            images.append(image)
            labels.append(label)
            boxes.append((x0, y0, x0 + pw, y0 + ph))
    order = rng.permutation(len(images))
    return np.stack(images)[order], np.asarray(labels)[order], np.asarray(boxes)[order]


def write_folder(root, images, labels, boxes, classes=tuple(OBJECTS)):
    """One sub-folder per class (`digit0/`, ...); boxes.json maps each file to its box."""
    from PIL import Image

    root = Path(root)
    index = {}
    for i, (image, label, box) in enumerate(zip(images, labels, boxes)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:04d}.png"
        Image.fromarray(image).save(path)
        index[str(path)] = [int(v) for v in box]
    (root.parent / f"{root.name}-boxes.json").write_text(json.dumps(index))
    return root


def tiny_cnn(inputs, include_top=True, classes=4):
    from keras import layers

    x = inputs
    for i, filters in enumerate((32, 32, 64, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        if i in (2, 3):
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Conv2D(96, 3, padding="same", use_bias=False, name="conv5")(x)
    x = layers.BatchNormalization(momentum=0.9, name="bn5")(x)
    x = layers.ReLU(name="relu5")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return x


def register_tiny_cnn():
    import zoo
    from zoo import models
    from zoo.errors import UnknownModelError

    try:
        return models.get_spec("tiny_cnn")
    except UnknownModelError:
        pass
    spec = zoo.ModelSpec(name="tiny_cnn", family="tests", task="image-classification", builder=tiny_cnn,
                         input_size=(SIZE, SIZE), preprocessing="unit", labels=None, num_classes=4,
                         num_params=0, description="A small all-convolutional test network.",
                         default_weights=None, feature_layer="relu5")
    zoo.register(spec)
    return spec
