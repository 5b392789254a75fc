"""Segmentation folders: `images/` and `masks/` side by side, one mask per image.

    DIR/images/0001.jpg   DIR/masks/0001.png   DIR/codes.txt (optional)

A mask has the image's stem and size and holds one class index per pixel: a palette
PNG (mode "P", as Pascal VOC and Oxford-IIIT Pet ship them: the palette colours are for
people, the indices are the classes) or an 8-bit grayscale one. `codes.txt` names the
classes, one per line in index order (CamVid's file); without it the classes are the
indices found. Pixels equal to the ignore index (255 by default, the border of Pascal
VOC's and Oxford pets' objects) count for nothing: not in the loss, not in the scores.

Every pair is checked before training, in a thread pool: the image decodes, the mask
is an index image of the same size, and no index is a class beyond `codes.txt`. A bad
pair is one line naming the file and why, and the rest are used. Batches stream from
the files through tf.data (`(uint8 images (N, H, W, 3), uint8 masks (N, H, W))`), with
the same random flip and crop applied to an image and its mask.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.data.images import Skipped, check_image, check_image_size
from zoo.data.pillow import IMAGE_SUFFIXES, check_pixel_count, load_rgb, open_image
from zoo.errors import DataError

IMAGES, MASKS, CODES = "images", "masks", "codes.txt"
MASK_SUFFIXES = (".png", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_IGNORE_INDEX = 255
_INDEX_MODES = ("P", "L", "1", "I;16", "I;16L", "I;16B", "I")


@dataclass
class SegmentationReport:
    """What `segmentation_folder` found.

    Attributes:
        root: str. classes: list of str (`codes.txt`, or "0", "1", ...).
        train_pairs, val_pairs: lists of `(image path, mask path)`.
        skipped: list of `Skipped`. named: bool, whether `codes.txt` named the classes.
        ignore_index: int. image_size: `(height, width)`.
    """

    root: str
    classes: list
    train_pairs: list
    val_pairs: list
    skipped: list = field(default_factory=list)
    named: bool = False
    ignore_index: int = DEFAULT_IGNORE_INDEX
    image_size: tuple = (224, 224)

    @property
    def num_train(self):
        return len(self.train_pairs)

    @property
    def num_val(self):
        return len(self.val_pairs)

    @property
    def val_files(self):
        return [image for image, _ in self.val_pairs]

    def __str__(self):
        source = "codes.txt" if self.named else "the indices found"
        lines = [f"{self.root}: {len(self.classes)} classes ({source}: {', '.join(self.classes)}), "
                 f"{self.num_train} training and {self.num_val} validation images, {len(self.skipped)} skipped"]
        if self.skipped:
            lines.append("Skipped:")
            lines.extend(f"  {item}" for item in self.skipped)
        return "\n".join(lines)


@dataclass
class SegmentationFolder:
    """`train` and `val` datasets (`val` None without validation), the class names and
    the `SegmentationReport`."""

    train: object
    val: object
    classes: list
    report: SegmentationReport


def read_codes(root):
    """The class names of `root/codes.txt` (blank lines and surrounding spaces dropped),
    or None when there is no such file."""
    path = Path(root) / CODES
    if not path.is_file():
        return None
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the class names ({error})") from None
    names = [name for name in names if name]
    if not names:
        raise DataError(f"{path}: names no class (one name per line, in index order)")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: names a class twice")
    return names


def read_mask(path, size=None):
    """A mask file as uint8 class indices `(H, W)`, resized (nearest) to `size=(H, W)`.

    Raises:
        DataError: naming the file: not an index image (RGB colours are not classes),
            an index above 255, or unreadable.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(path) as image:
            check_pixel_count(image, path)
            if image.mode not in _INDEX_MODES:
                raise DataError(f"{path}: a {image.mode} image; a mask holds one class index per pixel "
                                "(a palette or 8-bit grayscale PNG)")
            image.load()
            array = np.asarray(image)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: unreadable mask ({error})") from None
    if array.dtype == bool:
        array = array.astype("uint8")
    if array.ndim != 2:
        raise DataError(f"{path}: a mask has one channel. Received: shape {array.shape}")
    if array.dtype != np.uint8:
        if array.size and int(array.max()) > 255:
            raise DataError(f"{path}: class index {int(array.max())} is above 255")
        array = array.astype("uint8")
    if size is not None and array.shape != tuple(size):
        array = np.asarray(Image.fromarray(array).resize((size[1], size[0]), Image.NEAREST))
    return array


def _image_size_of(path):
    with open_image(path) as image:
        return image.size  # (width, height), from the header


def check_pair(image_path, mask_path, num_classes=None, ignore_index=DEFAULT_IGNORE_INDEX):
    """`(reason or "", highest class index)` for one pair; never raises for a bad file."""
    checked = check_image(image_path)
    if not checked.ok:
        return f"{checked.reason}", -1
    try:
        mask = read_mask(mask_path)
        width, height = _image_size_of(image_path)
    except (DataError, OSError) as error:
        return str(error).removeprefix(f"{mask_path}: ").removeprefix(f"{image_path}: "), -1
    if mask.shape != (height, width):
        return (f"its mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}, the image {width}x{height}"), -1
    found = np.unique(mask)
    found = found[found != ignore_index]
    highest = int(found.max()) if found.size else -1
    if num_classes is not None and highest >= num_classes:
        beyond = [int(v) for v in found if v >= num_classes]
        return (f"its mask {mask_path} has class index {', '.join(map(str, beyond[:5]))}, beyond codes.txt's "
                f"{num_classes} classes (0-{num_classes - 1}; {ignore_index} is ignored)"), highest
    return "", highest


def _files(folder, suffixes):
    found = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        stem, suffix = os.path.splitext(entry.name)
        if suffix.lower() in suffixes:
            found.setdefault(stem, entry.path)
    return found


def scan_segmentation_folder(root, validation_split=0.2, seed=0, ignore_index=DEFAULT_IGNORE_INDEX,
                             image_size=(224, 224), verbose=True, workers=None):
    """Pair, check and split a segmentation folder; returns a `SegmentationReport`.

    Raises:
        DataError: one line: no `images/` or `masks/`, or no usable pair at all.
    """
    root = Path(root)
    for sub in (IMAGES, MASKS):
        if not (root / sub).is_dir():
            raise DataError(f"{root}: no {sub}/ folder (a segmentation folder holds images/ and masks/, one mask "
                            "per image with the same name)")
    if not 0 <= ignore_index <= 255:
        raise DataError(f"`ignore_index` must be 0 to 255. Received: ignore_index={ignore_index!r}")
    names = read_codes(root)
    images = _files(root / IMAGES, IMAGE_SUFFIXES)
    masks = _files(root / MASKS, MASK_SUFFIXES)
    skipped = [Skipped(path, f"no mask with its name in {root / MASKS}") for stem, path in images.items()
               if stem not in masks]
    skipped += [Skipped(path, f"no image with its name in {root / IMAGES}") for stem, path in masks.items()
                if stem not in images]
    pairs = [(images[stem], masks[stem]) for stem in images if stem in masks]
    count = len(names) if names else None
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        checked = list(pool.map(lambda pair: check_pair(*pair, count, ignore_index), pairs))
    good, highest = [], -1
    for pair, (reason, top) in zip(pairs, checked):
        if reason:
            skipped.append(Skipped(pair[0], reason))
        else:
            good.append(pair)
            highest = max(highest, top)
    if not good:
        detail = f": {skipped[0]}" if skipped else ""
        raise DataError(f"{root}: no usable image with its mask ({len(pairs)} pairs, {len(skipped)} skipped){detail}")
    classes = names or [str(i) for i in range(max(highest + 1, 2))]
    order = np.random.default_rng(seed).permutation(len(good))
    n_val = int(round(len(good) * validation_split)) if validation_split else 0
    if validation_split and len(good) > 1:
        n_val = min(max(n_val, 1), len(good) - 1)
    val = sorted(good[i] for i in order[:n_val])
    train = sorted(good[i] for i in order[n_val:])
    report = SegmentationReport(root=str(root), classes=classes, train_pairs=train, val_pairs=val,
                                skipped=sorted(skipped, key=lambda s: s.path), named=names is not None,
                                ignore_index=ignore_index, image_size=tuple(image_size))
    if verbose:
        import sys

        print(str(report), file=sys.stderr if report.skipped else sys.stdout, flush=True)
    return report


def load_pair(image_path, mask_path, image_size):
    """An image (bilinear) and its mask (nearest) at `image_size`: uint8 `(H, W, 3)`, `(H, W)`."""
    image = load_rgb(image_path, tuple(image_size))
    return image, read_mask(mask_path, tuple(image_size))


def pair_dataset(pairs, image_size, batch_size=32, shuffle=False, augment=False, seed=0):
    """`pairs` as a tf.data dataset of `(uint8 images, uint8 masks)` batches, read from
    the files as it goes (nothing of the folder is held in memory)."""
    import tensorflow as tf

    height, width = image_size
    images = tf.constant([image for image, _ in pairs])
    masks = tf.constant([mask for _, mask in pairs])

    def load(image_path, mask_path):
        def read(a, b):
            return load_pair(a.decode(), b.decode(), (height, width))

        image, mask = tf.numpy_function(read, [image_path, mask_path], [tf.uint8, tf.uint8])
        image.set_shape((height, width, 3))
        mask.set_shape((height, width))
        return image, mask

    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    if shuffle:
        dataset = dataset.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment:
        dataset = dataset.map(lambda image, mask: augment_pair(image, mask, seed),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    dataset.augmented = bool(augment)
    dataset.num_examples = len(pairs)
    return dataset


def augment_pair(image, mask, seed=0, min_scale=0.6):
    """The same random mirror and crop (a square of 60-100 % of the side, resized back)
    for an image and its mask (bilinear for the image, nearest for the mask, so a mask
    keeps its class indices), and a brightness and contrast jitter of the image only."""
    import tensorflow as tf

    height, width = image.shape[0], image.shape[1]
    flip = tf.random.uniform([], seed=seed) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    mask = tf.cond(flip, lambda: tf.reverse(mask, axis=[1]), lambda: mask)
    scale = tf.random.uniform([], min_scale, 1.0, seed=seed + 1)
    top = tf.random.uniform([], 0.0, 1.0 - scale, seed=seed + 2) if min_scale < 1 else 0.0
    left = tf.random.uniform([], 0.0, 1.0 - scale, seed=seed + 3) if min_scale < 1 else 0.0
    box = tf.stack([top, left, top + scale, left + scale])[None]
    size = (height, width)
    image = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None], box, [0], size, method="bilinear")[0]
    mask = tf.image.crop_and_resize(tf.cast(mask, tf.float32)[None, ..., None], box, [0], size,
                                    method="nearest")[0, ..., 0]
    image = tf.image.random_brightness(image, 20.0, seed=seed + 4)
    image = tf.image.random_contrast(image, 0.8, 1.2, seed=seed + 5)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return image, tf.cast(mask, tf.uint8)


def segmentation_folder(data_dir, image_size=224, batch_size=32, seed=0, augment=False, validation_split=0.2,
                        ignore_index=DEFAULT_IGNORE_INDEX, verbose=True):
    """A segmentation folder (see the module docstring) as training and validation
    datasets; returns a `SegmentationFolder`. The training batches are shuffled (and,
    with `augment`, flipped and cropped with their masks); the validation batches are
    in a fixed order."""
    size = check_image_size(image_size)
    report = scan_segmentation_folder(data_dir, validation_split=validation_split, seed=seed,
                                      ignore_index=ignore_index, image_size=size, verbose=verbose)
    train = pair_dataset(report.train_pairs, size, batch_size, shuffle=True, augment=augment, seed=seed)
    val = pair_dataset(report.val_pairs, size, batch_size) if report.val_pairs else None
    return SegmentationFolder(train=train, val=val, classes=list(report.classes), report=report)
