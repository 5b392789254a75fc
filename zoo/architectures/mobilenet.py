"""MobileNetV2 (Sandler et al., 2018), https://arxiv.org/abs/1801.04381, inverted residuals,
inputs scaled to [-1, 1] ("tf"); MobileNetV3 Small and Large (Howard et al., 2019),
https://arxiv.org/abs/1905.02244, whose Keras builders rescale inside.

Specs: `zoo.architectures` (`mobilenet_v2`, `mobilenet_v3_small`, `mobilenet_v3_large`).
`preprocess_input` is MobileNetV2's; MobileNetV3 takes pixels as they are."""

from zoo.architectures.applications import define

CONSTRUCTORS = ('MobileNetV2', 'MobileNetV3Small', 'MobileNetV3Large')
define(globals(), CONSTRUCTORS, 'tf')
