"""EfficientNet B0-B7 (Tan & Le, 2019), https://arxiv.org/abs/1905.11946: compound-scaled
MBConv networks, 224-600 px. Keras' builders normalise inside (Rescaling, Normalization),
so the model takes pixels 0-255 as they are ("raw").

Specs: `zoo.architectures` (`efficientnet_b0` ... `efficientnet_b7`)."""

from zoo.architectures.applications import define

CONSTRUCTORS = ('EfficientNetB0', 'EfficientNetB1', 'EfficientNetB2', 'EfficientNetB3', 'EfficientNetB4', 'EfficientNetB5', 'EfficientNetB6', 'EfficientNetB7')
define(globals(), CONSTRUCTORS, 'raw')
