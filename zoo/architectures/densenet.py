"""DenseNet-121, -169, -201 (Huang et al., 2017), https://arxiv.org/abs/1608.06993: every layer
fed the feature maps of all before it in its block; ImageNet mean/std ("torch").

Specs: `zoo.architectures` (`densenet121`, `densenet169`, `densenet201`)."""

from zoo.architectures.applications import define

CONSTRUCTORS = ('DenseNet121', 'DenseNet169', 'DenseNet201')
define(globals(), CONSTRUCTORS, 'torch')
