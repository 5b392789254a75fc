"""VGG16 and VGG19 (Simonyan & Zisserman, 2014), https://arxiv.org/abs/1409.1556."""

import functools

from zoo.architectures._applications import keras_application
from zoo.preprocessing import preprocess_input as _preprocess
from zoo.registry import ModelSpec, register

preprocess_input = functools.partial(_preprocess, mode="caffe")

for _name, _depth, _params in (("vgg16", 16, 138_357_544), ("vgg19", 19, 143_667_240)):
    register(
        ModelSpec(
            name=_name,
            family="vgg",
            task="image-classification",
            builder=keras_application(f"VGG{_depth}"),
            input_size=(224, 224),
            preprocessing="caffe",
            labels="imagenet",
            num_classes=1000,
            num_params=_params,
            description=f"VGG{_depth}: {_depth} weight layers of 3x3 convolutions, ImageNet-1k.",
            feature_layer="block5_pool",
            paper="https://arxiv.org/abs/1409.1556",
        )
    )
