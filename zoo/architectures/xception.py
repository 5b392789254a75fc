"""Xception (Chollet, 2017), https://arxiv.org/abs/1610.02357: depthwise-separable
convolutions throughout, 299 px, inputs scaled to [-1, 1] ("tf").

Specs: `zoo.architectures` (`xception`)."""

from zoo.architectures.applications import define

CONSTRUCTORS = ('Xception',)
define(globals(), CONSTRUCTORS, 'tf')
