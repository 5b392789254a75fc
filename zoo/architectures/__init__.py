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
        feature_layer="block5_pool", paper="https://arxiv.org/abs/1409.1556", top1=71.3,
    ))

for _depth, _params, _top1 in ((50, 25_636_712, 74.9), (101, 44_707_176, 76.4), (152, 60_419_944, 76.6)):
    register(ModelSpec(
        name=f"resnet{_depth}", family="resnet", builder=f"zoo.architectures.resnet:resnet{_depth}", **_IMAGENET,
        preprocessing="caffe", num_params=_params,
        description=f"ResNet-{_depth} v1: residual bottleneck blocks, ImageNet-1k.",
        feature_layer="conv5_block3_out", paper="https://arxiv.org/abs/1512.03385", top1=_top1,
    ))

register(ModelSpec(
    name="inception_v3", family="inception", builder="zoo.architectures.inception:inception_v3",
    **{**_IMAGENET, "input_size": (299, 299)}, preprocessing="tf", num_params=23_851_784,
    description="Inception v3: factorised inception modules at 299 px, ImageNet-1k.",
    feature_layer="mixed10", paper="https://arxiv.org/abs/1512.00567", top1=77.9,
))

# keras.applications' families, one row per model (one module per family builds them all):
# name, family module, Keras constructor, input side, preprocessing, parameters, feature layer,
# Keras' documented ImageNet top-1 (%), paper, description.
_KERAS_APPLICATIONS = (
    ('efficientnet_b0', 'efficientnet', 'EfficientNetB0', 224, 'raw', 5_330_571, 'top_activation', 77.1,
     'https://arxiv.org/abs/1905.11946', 'EfficientNet-B0: compound-scaled MBConv network.'),
    ('efficientnet_b1', 'efficientnet', 'EfficientNetB1', 240, 'raw', 7_856_239, 'top_activation', 79.1,
     'https://arxiv.org/abs/1905.11946', 'EfficientNet-B1: compound-scaled MBConv network.'),
    ('efficientnet_b2', 'efficientnet', 'EfficientNetB2', 260, 'raw', 9_177_569, 'top_activation', 80.1,
     'https://arxiv.org/abs/1905.11946', 'EfficientNet-B2: compound-scaled MBConv network.'),
    ('efficientnet_b3', 'efficientnet', 'EfficientNetB3', 300, 'raw', 12_320_535, 'top_activation', 81.6,
     'https://arxiv.org/abs/1905.11946', 'EfficientNet-B3: compound-scaled MBConv network.'),
    ('efficientnet_b4', 'efficientnet', 'EfficientNetB4', 380, 'raw', 19_466_823, 'top_activation', 82.9,
     'https://arxiv.org/abs/1905.11946', 'EfficientNet-B4: compound-scaled MBConv network.'),
    ('efficientnet_b5', 'efficientnet', 'EfficientNetB5', 456, 'raw', 30_562_527, 'top_activation', 83.6,
     'https://arxiv.org/abs/1905.11946', 'EfficientNet-B5: compound-scaled MBConv network.'),
    ('efficientnet_b6', 'efficientnet', 'EfficientNetB6', 528, 'raw', 43_265_143, 'top_activation', 84.0,
     'https://arxiv.org/abs/1905.11946', 'EfficientNet-B6: compound-scaled MBConv network.'),
    ('efficientnet_b7', 'efficientnet', 'EfficientNetB7', 600, 'raw', 66_658_687, 'top_activation', 84.3,
     'https://arxiv.org/abs/1905.11946', 'EfficientNet-B7: compound-scaled MBConv network.'),
    ('efficientnet_v2_b0', 'efficientnet_v2', 'EfficientNetV2B0', 224, 'raw', 7_200_312, 'top_activation', 78.7,
     'https://arxiv.org/abs/2104.00298', 'EfficientNetV2-B0: fused-MBConv stages.'),
    ('efficientnet_v2_b1', 'efficientnet_v2', 'EfficientNetV2B1', 240, 'raw', 8_212_124, 'top_activation', 79.8,
     'https://arxiv.org/abs/2104.00298', 'EfficientNetV2-B1: fused-MBConv stages.'),
    ('efficientnet_v2_b2', 'efficientnet_v2', 'EfficientNetV2B2', 260, 'raw', 10_178_374, 'top_activation', 80.5,
     'https://arxiv.org/abs/2104.00298', 'EfficientNetV2-B2: fused-MBConv stages.'),
    ('efficientnet_v2_b3', 'efficientnet_v2', 'EfficientNetV2B3', 300, 'raw', 14_467_622, 'top_activation', 82.0,
     'https://arxiv.org/abs/2104.00298', 'EfficientNetV2-B3: fused-MBConv stages.'),
    ('efficientnet_v2_s', 'efficientnet_v2', 'EfficientNetV2S', 384, 'raw', 21_612_360, 'top_activation', 83.9,
     'https://arxiv.org/abs/2104.00298', 'EfficientNetV2-S: fused-MBConv stages.'),
    ('efficientnet_v2_m', 'efficientnet_v2', 'EfficientNetV2M', 480, 'raw', 54_431_388, 'top_activation', 85.3,
     'https://arxiv.org/abs/2104.00298', 'EfficientNetV2-M: fused-MBConv stages.'),
    ('efficientnet_v2_l', 'efficientnet_v2', 'EfficientNetV2L', 480, 'raw', 119_027_848, 'top_activation', 85.7,
     'https://arxiv.org/abs/2104.00298', 'EfficientNetV2-L: fused-MBConv stages.'),
    ('convnext_tiny', 'convnext', 'ConvNeXtTiny', 224, 'raw', 28_589_128, None, 81.3,
     'https://arxiv.org/abs/2201.03545', 'ConvNeXt-Tiny: a modernised ResNet (7x7 depthwise, LayerNorm).'),
    ('convnext_small', 'convnext', 'ConvNeXtSmall', 224, 'raw', 50_223_688, None, 82.3,
     'https://arxiv.org/abs/2201.03545', 'ConvNeXt-Small: a modernised ResNet (7x7 depthwise, LayerNorm).'),
    ('convnext_base', 'convnext', 'ConvNeXtBase', 224, 'raw', 88_591_464, None, 85.3,
     'https://arxiv.org/abs/2201.03545', 'ConvNeXt-Base: a modernised ResNet (7x7 depthwise, LayerNorm).'),
    ('convnext_large', 'convnext', 'ConvNeXtLarge', 224, 'raw', 197_767_336, None, 86.3,
     'https://arxiv.org/abs/2201.03545', 'ConvNeXt-Large: a modernised ResNet (7x7 depthwise, LayerNorm).'),
    ('convnext_xlarge', 'convnext', 'ConvNeXtXLarge', 224, 'raw', 350_196_968, None, 86.7,
     'https://arxiv.org/abs/2201.03545', 'ConvNeXt-XLarge: a modernised ResNet (7x7 depthwise, LayerNorm).'),
    ('mobilenet_v2', 'mobilenet', 'MobileNetV2', 224, 'tf', 3_538_984, 'out_relu', 71.3,
     'https://arxiv.org/abs/1801.04381', 'MobileNetV2 (width 1.0): inverted residuals, linear bottlenecks.'),
    ('mobilenet_v3_small', 'mobilenet', 'MobileNetV3Small', 224, 'raw', 2_554_968, None, None,
     'https://arxiv.org/abs/1905.02244', 'MobileNetV3-Small: searched blocks, hard-swish, squeeze-excite.'),
    ('mobilenet_v3_large', 'mobilenet', 'MobileNetV3Large', 224, 'raw', 5_507_432, None, None,
     'https://arxiv.org/abs/1905.02244', 'MobileNetV3-Large: searched blocks, hard-swish, squeeze-excite.'),
    ('densenet121', 'densenet', 'DenseNet121', 224, 'torch', 8_062_504, 'relu', 75.0,
     'https://arxiv.org/abs/1608.06993', 'DenseNet-121: densely connected blocks.'),
    ('densenet169', 'densenet', 'DenseNet169', 224, 'torch', 14_307_880, 'relu', 76.2,
     'https://arxiv.org/abs/1608.06993', 'DenseNet-169: densely connected blocks.'),
    ('densenet201', 'densenet', 'DenseNet201', 224, 'torch', 20_242_984, 'relu', 77.3,
     'https://arxiv.org/abs/1608.06993', 'DenseNet-201: densely connected blocks.'),
    ('xception', 'xception', 'Xception', 299, 'tf', 22_910_480, 'block14_sepconv2_act', 79.0,
     'https://arxiv.org/abs/1610.02357', 'Xception: depthwise-separable convolutions throughout.'),
    ('inception_resnet_v2', 'inception_resnet', 'InceptionResNetV2', 299, 'tf', 55_873_736, 'conv_7b_ac', 80.3,
     'https://arxiv.org/abs/1602.07261', 'Inception-ResNet v2: inception modules with residual connections.'),
    ('nasnet_mobile', 'nasnet', 'NASNetMobile', 224, 'tf', 5_326_716, None, 74.4,
     'https://arxiv.org/abs/1707.07012', 'NASNet-Mobile: cells found by architecture search.'),
    ('nasnet_large', 'nasnet', 'NASNetLarge', 331, 'tf', 88_949_818, None, 82.5,
     'https://arxiv.org/abs/1707.07012', 'NASNet-Large: cells found by architecture search.'),
)

for (_name, _family, _constructor, _side, _mode, _params, _feature, _top1, _paper,
     _description) in _KERAS_APPLICATIONS:
    register(ModelSpec(
        name=_name, family=_family, builder=f"zoo.architectures.{_family}:{_constructor}",
        **{**_IMAGENET, "input_size": (_side, _side)}, preprocessing=_mode, num_params=_params,
        description=_description + " ImageNet-1k.", feature_layer=_feature, paper=_paper, top1=_top1,
        # Keras publishes no hash for MobileNetV2's files, and zoo downloads nothing it cannot verify.
        default_weights=None if _name == "mobilenet_v2" else "imagenet",
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

del _depth, _params, _top1, _name, _family, _constructor, _side, _mode, _feature, _paper, _description
