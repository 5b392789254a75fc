"""EfficientNetV2 B0-B3, S, M, L (Tan & Le, 2021), https://arxiv.org/abs/2104.00298: fused-MBConv
stages, trained with progressive resizing. Keras' builders rescale inside ("raw").

Specs: `zoo.architectures` (`efficientnet_v2_b0` ... `efficientnet_v2_l`)."""

from zoo.architectures.applications import define

CONSTRUCTORS = ('EfficientNetV2B0', 'EfficientNetV2B1', 'EfficientNetV2B2', 'EfficientNetV2B3', 'EfficientNetV2S', 'EfficientNetV2M', 'EfficientNetV2L')
define(globals(), CONSTRUCTORS, 'raw')
