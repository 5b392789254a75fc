"""Data pipelines: image folders and TFDS datasets as uint8 RGB tf.data batches.

    train, val, classes = zoo.data.image_folder("photos/", image_size=224, augment=True)
    train, val, classes = zoo.data.tfds("tf_flowers", split=["train[:80%]", "train[80%:]"],
                                        image_size=224)

Batches are `(uint8 images (batch, height, width, 3), int32 labels (batch,))`: models
from `zoo.create` normalise in their first layer.
"""

# Nothing here imports TensorFlow, Keras or TFDS at import time; the functions do.
# `tfds` is bound to the function here, before anything can import the `zoo.data.tfds`
# module under the same attribute name.
from zoo.data.arrays import ImageArrays, image_arrays
from zoo.data.augment import default_augmentation, mix_batches
from zoo.data.tfds import TFDSData, tfds
from zoo.data.text import TextCorpus, text_corpus
from zoo.data.images import (
    FileCheck,
    ImageFolder,
    ImageFolderReport,
    Skipped,
    check_files,
    check_image,
    from_files,
    image_folder,
    scan_folder,
)

__all__ = [
    "image_folder",
    "image_arrays",
    "text_corpus",
    "TextCorpus",
    "ImageArrays",
    "tfds",
    "from_files",
    "scan_folder",
    "check_image",
    "check_files",
    "default_augmentation",
    "mix_batches",
    "ImageFolder",
    "ImageFolderReport",
    "Skipped",
    "FileCheck",
    "TFDSData",
]
