"""One module per architecture family; importing a module registers its models."""

from zoo.architectures import alexnet, inception, lenet, resnet, style_transfer, vgg  # noqa: F401
