"""Inception v3 (Szegedy et al., 2015), https://arxiv.org/abs/1512.00567."""

import functools

from zoo.architectures._applications import keras_application
from zoo.preprocessing import preprocess_input as _preprocess
from zoo.registry import ModelSpec, register

preprocess_input = functools.partial(_preprocess, mode="tf")

register(
    ModelSpec(
        name="inception_v3",
        family="inception",
        task="image-classification",
        builder=keras_application("InceptionV3"),
        input_size=(299, 299),
        preprocessing="tf",
        labels="imagenet",
        num_classes=1000,
        num_params=23_851_784,
        description="Inception v3: factorised inception modules at 299 px, ImageNet-1k.",
        feature_layer="mixed10",
        paper="https://arxiv.org/abs/1512.00567",
    )
)
