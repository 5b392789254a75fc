"""Inception-ResNet v2 (Szegedy et al., 2017), https://arxiv.org/abs/1602.07261: inception
modules with residual connections, 299 px, inputs scaled to [-1, 1] ("tf").

Specs: `zoo.architectures` (`inception_resnet_v2`)."""

from zoo.architectures.applications import define

CONSTRUCTORS = ('InceptionResNetV2',)
define(globals(), CONSTRUCTORS, 'tf')
