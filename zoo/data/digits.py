"""Real handwritten digits (scikit-learn's 1,797 8x8 scans) as 28x28 RGB images, split
the one way every recipe, test and benchmark splits them.

    images, labels = load_digits_28()
    x_train, x_test, y_train, y_test = train_test_split_digits(images, labels)

The weights zoo ships are trained on them by `zoo.tasks.shipped_weights`.
"""

from __future__ import annotations

import numpy as np

HELD_OUT = 0.2
SPLIT_SEED = 0


def load_digits_28(size=28):
    """scikit-learn's digits upsampled to `size`x`size`, as uint8 RGB (white ink on black).

    Returns:
        `(images, labels)`: uint8 `(1797, size, size, 3)` and int `(1797,)`.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    scaled = (digits.images * (255.0 / 16.0)).round().astype("uint8")
    big = np.stack(
        [np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in scaled]
    )
    return np.repeat(big[..., None], 3, axis=-1), digits.target.astype("int64")


def train_test_split_digits(images, labels, held_out=HELD_OUT, seed=SPLIT_SEED):
    """A stratified split that every recipe and test uses, so held-out means held out."""
    from sklearn.model_selection import train_test_split

    return train_test_split(images, labels, test_size=held_out, random_state=seed, stratify=labels)


def shifted_copies(images, labels, pixels=2):
    """The images plus copies moved `pixels` up, down, left and right (5x the data).

    1,437 training digits are few for a CNN: without these shifts LeNet-5 overfits to
    ~96-97 % held-out; with them it reaches ~99 %.
    """
    moved = [images] + [
        np.roll(images, shift, axis=axis)
        for axis in (1, 2) for shift in (-pixels, pixels)
    ]
    return np.concatenate(moved), np.concatenate([labels] * len(moved))
