"""Inception v3 (Szegedy et al., 2015), https://arxiv.org/abs/1512.00567.

Spec: `zoo.architectures` (`inception_v3`)."""

import functools

from zoo.architectures.applications import keras_application
from zoo.architectures.preprocessing import preprocess_input as _preprocess

preprocess_input = functools.partial(_preprocess, mode="tf")

inception_v3 = keras_application("InceptionV3")
