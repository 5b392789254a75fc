"""The model specs, as data: one `register(...)` per model, one module per family.

A family's module (`zoo.architectures.vgg`, `.dcgan`, ...) holds its builders and its
Keras classes at module level, so it imports Keras. The specs are registered here
instead, with each builder named by reference (`"zoo.architectures.dcgan:dcgan"`, a
`zoo.registry.Builder`) and imported on the first build: reading the registry —
`zoo list`, `zoo info`, `zoo --help` — imports no family module and so no Keras.

Adding a model: its builder (and any layer classes) in its family's module, and one
`register(ModelSpec(...))` below.
"""

from zoo.registry import ModelSpec, register

_IMAGENET = dict(task="image-classification", input_size=(224, 224), labels="imagenet", num_classes=1000)

# ------------------------------------------------------------------- image classifiers
for _depth, _params in ((16, 138_357_544), (19, 143_667_240)):
    register(ModelSpec(
        name=f"vgg{_depth}", family="vgg", builder=f"zoo.architectures.vgg:vgg{_depth}", **_IMAGENET,
        preprocessing="caffe", num_params=_params,
        description=f"VGG{_depth}: {_depth} weight layers of 3x3 convolutions, ImageNet-1k.",
        feature_layer="block5_pool", paper="https://arxiv.org/abs/1409.1556",
    ))

for _depth, _params in ((50, 25_636_712), (101, 44_707_176), (152, 60_419_944)):
    register(ModelSpec(
        name=f"resnet{_depth}", family="resnet", builder=f"zoo.architectures.resnet:resnet{_depth}", **_IMAGENET,
        preprocessing="caffe", num_params=_params,
        description=f"ResNet-{_depth} v1: residual bottleneck blocks, ImageNet-1k.",
        feature_layer="conv5_block3_out", paper="https://arxiv.org/abs/1512.03385",
    ))

register(ModelSpec(
    name="inception_v3", family="inception", builder="zoo.architectures.inception:inception_v3",
    **{**_IMAGENET, "input_size": (299, 299)}, preprocessing="tf", num_params=23_851_784,
    description="Inception v3: factorised inception modules at 299 px, ImageNet-1k.",
    feature_layer="mixed10", paper="https://arxiv.org/abs/1512.00567",
))

register(ModelSpec(
    name="alexnet", family="alexnet", builder="zoo.architectures.alexnet:alexnet", **_IMAGENET,
    preprocessing="torch", num_params=61_100_840,
    description="AlexNet, single-stream (torchvision layout), 224 px.",
    default_weights=None, feature_layer="pool5", paper="https://papers.nips.cc/paper/4824",
))

register(ModelSpec(
    name="lenet5", family="lenet", task="image-classification", builder="zoo.architectures.lenet:lenet5",
    input_size=(28, 28), preprocessing="digits", labels="digits", num_classes=10, num_params=61_706,
    description="LeNet-5 for 28x28 handwritten digits (ReLU, average pooling).",
    default_weights="digits", feature_layer="f6", paper="http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf",
))

# ------------------------------------------------------------------------ other tasks
register(ModelSpec(
    name="char_lstm", family="char_lstm", task="text-generation", builder="zoo.architectures.char_lstm:char_lstm",
    num_params=718_849,
    description="Character-level LSTM text generator (embedding 64, LSTM 384, next-character logits).",
    default_weights=None, paper="https://arxiv.org/abs/1308.0850",
))

register(ModelSpec(
    name="conv_autoencoder", family="autoencoder", task="autoencoder",
    builder="zoo.architectures.autoencoder:autoencoder", input_size=(28, 28), channels=1, num_params=278_369,
    description="Convolutional autoencoder (2 stride-2 convs, code 32); denoising with --noise.",
    default_weights=None, paper="https://dl.acm.org/doi/10.1145/1390156.1390294",
))
register(ModelSpec(
    name="conv_vae", family="autoencoder", task="autoencoder",
    builder="zoo.architectures.autoencoder:variational_autoencoder", input_size=(28, 28), channels=1,
    num_params=378_753,
    description="Convolutional variational autoencoder (code 32, Gaussian posterior, Bernoulli pixels).",
    default_weights=None, paper="https://arxiv.org/abs/1312.6114",
))

register(ModelSpec(
    name="dcgan", family="dcgan", task="gan", builder="zoo.architectures.dcgan:dcgan",
    # Generator 784,641 (the latent projection alone 627,200) + discriminator 138,561.
    num_params=923_202,
    description="DCGAN: transposed-convolution generator and convolutional discriminator (28x28 grayscale).",
    default_weights=None, paper="https://arxiv.org/abs/1511.06434",
))

register(ModelSpec(
    name="style_vgg19", family="style_transfer", task="style-transfer",
    builder="zoo.architectures.style_transfer:style_features",
    input_size=None,  # any size: the image being painted sets it
    preprocessing="caffe",
    # VGG19's convolutions up to and including block5_conv2 (13 of its 16), with biases.
    num_params=15_304_768,
    description="Neural style transfer: VGG19 up to block5_conv2 (Gram style, content); uses vgg19's weights.",
    default_weights=None,  # vgg19's weights; `zoo.style` loads them
    feature_layer="block5_conv2", paper="https://arxiv.org/abs/1508.06576",
))

del _depth, _params
