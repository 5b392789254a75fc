"""NASNet Mobile (224 px) and Large (331 px) (Zoph et al., 2018), https://arxiv.org/abs/1707.07012:
cells found by architecture search; inputs scaled to [-1, 1] ("tf").

Specs: `zoo.architectures` (`nasnet_mobile`, `nasnet_large`)."""

from zoo.architectures.applications import define

CONSTRUCTORS = ('NASNetMobile', 'NASNetLarge')
define(globals(), CONSTRUCTORS, 'tf')
