"""ResNet50/101/152 v1 (He et al., 2015), https://arxiv.org/abs/1512.03385."""

import functools

from zoo.architectures._applications import keras_application
from zoo.preprocessing import preprocess_input as _preprocess
from zoo.registry import ModelSpec, register

preprocess_input = functools.partial(_preprocess, mode="caffe")

for _depth, _params in ((50, 25_636_712), (101, 44_707_176), (152, 60_419_944)):
    register(
        ModelSpec(
            name=f"resnet{_depth}",
            family="resnet",
            task="image-classification",
            builder=keras_application(f"ResNet{_depth}"),
            input_size=(224, 224),
            preprocessing="caffe",
            labels="imagenet",
            num_classes=1000,
            num_params=_params,
            description=f"ResNet-{_depth} v1: residual bottleneck blocks, ImageNet-1k.",
            feature_layer="conv5_block3_out",
            paper="https://arxiv.org/abs/1512.03385",
        )
    )
