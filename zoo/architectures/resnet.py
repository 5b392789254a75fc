"""ResNet50/101/152 v1 (He et al., 2015), https://arxiv.org/abs/1512.03385.

Specs: `zoo.architectures` (`resnet50`, `resnet101`, `resnet152`)."""

import functools

from zoo.architectures.applications import keras_application
from zoo.architectures.preprocessing import preprocess_input as _preprocess

preprocess_input = functools.partial(_preprocess, mode="caffe")

resnet50 = keras_application("ResNet50")
resnet101 = keras_application("ResNet101")
resnet152 = keras_application("ResNet152")
