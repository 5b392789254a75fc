"""One module per architecture family; importing a module registers its models."""

from zoo.architectures import alexnet, autoencoder, char_lstm, dcgan, inception, lenet, resnet, style_transfer, vgg  # noqa: F401
