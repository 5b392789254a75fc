"""Unlabelled images in memory, for the models that learn images themselves: the
autoencoders and the GAN (`--data DIR|digits`).

    data = zoo.data.image_arrays("digits")               # uint8 (N, 28, 28, 1), real scans
    data = zoo.data.image_arrays("faces/", image_size=64)  # uint8 (N, 64, 64, 3)

A folder is searched recursively (sub-folders need not be classes); a file that cannot
be read is listed by name and the rest are used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from zoo.errors import DataError

DIGITS = "digits"
DIGITS_SIZE = 28
FOLDER_SIZE = 64
HELD_OUT = 0.1


@dataclass
class ImageArrays:
    """`train` and `val` uint8 `(N, H, W, C)` arrays, and the files that were skipped
    (`[(path, reason)]`)."""

    train: np.ndarray
    val: np.ndarray
    source: str
    skipped: list = field(default_factory=list)

    @property
    def image_shape(self):
        return tuple(self.train.shape[1:])


def image_arrays(source, image_size=None, channels=None, held_out=HELD_OUT, seed=0, verbose=True):
    """Load `"digits"` (scikit-learn's 1,797 real handwritten digits, upsampled) or a
    folder of images as uint8 arrays, split into training and held-out images.

    Args:
        source: `"digits"` or the path of a folder of images (searched recursively).
        image_size: int or None. Side of the square images. Defaults to 28 for digits
            and 64 for a folder.
        channels: 1, 3 or None. Grayscale or RGB. Defaults to 1 for digits, 3 for a
            folder.
        held_out: float. The share kept out of training. Digits use zoo's standard
            stratified split (the one LeNet-5's shipped weights were trained on, 20 %),
            so held-out digits were never seen by it either.
        seed: int. The shuffle before a folder's split.
        verbose: bool. Print the skipped files.

    Returns:
        `ImageArrays`.
    """
    if channels not in (None, 1, 3):
        raise DataError(f"`channels` must be 1 or 3. Received: channels={channels!r}")
    if str(source) == DIGITS:
        return _digits(image_size or DIGITS_SIZE, channels or 1)
    if not os.path.isdir(source):
        raise DataError(f"`data` must be 'digits' or a folder of images; {source} is not a folder. "
                        f"Received: data={str(source)!r}")
    return _folder(source, image_size or FOLDER_SIZE, channels or 3, held_out, seed, verbose)


def _digits(size, channels):
    try:
        from zoo.data.digits import load_digits_28, train_test_split_digits
        images, labels = load_digits_28(size)
        train, val, _, _ = train_test_split_digits(images, labels)
    except ImportError:
        raise DataError("The digits come with scikit-learn: pip install scikit-learn (or zoo[recipes]).") from None
    return ImageArrays(_channels(train, channels), _channels(val, channels), DIGITS)


def _channels(images, channels):
    if channels == 1:
        return images[..., :1] if images.shape[-1] == 3 else images
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _folder(root, size, channels, held_out, seed, verbose):
    import sys

    from zoo.data.pillow import as_batch, expand_folders, is_empty_folder

    paths = [path for path in expand_folders([root]) if not is_empty_folder(path)]
    if not paths:
        raise DataError(f"{root} holds no image files (.jpg, .png, ...).")
    batch, errors = as_batch(paths, (size, size))
    skipped = [(paths[i], message) for i, message in sorted(errors.items())]
    if verbose and skipped:
        print(f"skipped {len(skipped)} of {len(paths)} files:", file=sys.stderr)
        for path, message in skipped:
            print(f"  {message if message.startswith(str(path)) else f'{path}: {message}'}", file=sys.stderr)
    if len(batch) < 2:
        raise DataError(f"{root} holds {len(batch)} readable image(s): at least 2 are needed to hold one out.")
    if channels == 1:
        # ITU-R 601 luma, as Pillow's "L" mode computes it.
        batch = np.round(batch.astype("float32") @ np.array([0.299, 0.587, 0.114], "float32"))[..., None]
        batch = batch.astype("uint8")
    order = np.random.default_rng(seed).permutation(len(batch))
    count = max(1, int(round(len(batch) * held_out)))
    return ImageArrays(batch[order[count:]], batch[order[:count]], str(root), skipped)
