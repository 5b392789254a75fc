"""ConvNeXt Tiny, Small, Base, Large, XLarge (Liu et al., 2022), https://arxiv.org/abs/2201.03545:
a ResNet modernised towards a vision transformer (7x7 depthwise convolutions, LayerNorm,
GELU). Keras' builders normalise inside ("raw").

Specs: `zoo.architectures` (`convnext_tiny` ... `convnext_xlarge`)."""

from zoo.architectures.applications import define

CONSTRUCTORS = ('ConvNeXtTiny', 'ConvNeXtSmall', 'ConvNeXtBase', 'ConvNeXtLarge', 'ConvNeXtXLarge')
define(globals(), CONSTRUCTORS, 'raw')
