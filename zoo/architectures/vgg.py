"""VGG16 and VGG19 (Simonyan & Zisserman, 2014), https://arxiv.org/abs/1409.1556.

Specs: `zoo.architectures` (`vgg16`, `vgg19`)."""

import functools

from zoo.architectures.applications import keras_application
from zoo.architectures.preprocessing import preprocess_input as _preprocess

preprocess_input = functools.partial(_preprocess, mode="caffe")

vgg16 = keras_application("VGG16")
vgg19 = keras_application("VGG19")
