"""VGG19 features for neural style transfer (Gatys et al., 2015), https://arxiv.org/abs/1508.06576.

Style transfer trains no network of its own: it optimises an image against the
activations of an ImageNet VGG19. The "model" registered here is that feature
extractor — VGG19's convolutions up to `block5_conv2` (the deepest layer the losses
read; the rest of VGG19 would be computed for nothing), taking a float RGB image in
0–255 (the image being optimised is a float variable, not uint8 pixels) with the
caffe preprocessing in the graph, and returning the activations of the style layers
(`block1_conv1 … block5_conv1`) and the content layer (`block5_conv2`) by name.

It has no weights of its own: it reuses vgg19's (`zoo.style` builds it on
`zoo.create("vgg19", include_top=False)`), so the weights store's VGG19 files serve both.

`StyleTransfer` is the model `zoo.style` trains: the painted image as its one trainable
weight, and the losses (registered with Keras as `zoo>StyleTransfer`, with its metric
`zoo>LastValue` and constraint `zoo>PixelRange`). The spec is in `zoo.architectures`.
"""

import keras
from keras import ops

from zoo.architectures.preprocessing import Preprocess
from zoo.registry import lookup

STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
CONTENT_LAYER = "block5_conv2"
LOSSES = ("style", "content", "tv", "total")


def _vgg19_stack():
    """VGG19 without its head, random weights, on float input (the registry's builder)."""
    spec = lookup("vgg19")
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    features = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    return keras.Model(inputs, spec.builder(features, include_top=False), name="vgg19")


def style_features(base=None, style_layers=STYLE_LAYERS, content_layer=CONTENT_LAYER):
    """Build the style-transfer feature extractor on a VGG19.

    The returned model shares `base`'s layers (and so its weights); it takes images of
    any size.

    Args:
        base: `keras.Model` or None. A VGG19 whose layers are named as keras.applications
            names them, e.g. `zoo.create("vgg19", include_top=False, input_shape=...)`
            (its uint8 input and preprocessing layer are replaced by a float input).
            None builds VGG19 with random weights. Defaults to `None`.
        style_layers: tuple of str. Layers whose Gram matrices make the style loss.
            Defaults to `block1_conv1 … block5_conv1`.
        content_layer: str. The layer the content loss compares. Defaults to
            `"block5_conv2"`.

    Returns:
        A `keras.Model` named `"style_vgg19"`: float32 RGB `(None, None, None, 3)` in
        0–255 in, a dict `{layer name: activations}` of the style and content layers out.

    Example:
    ```python
    features = style_features()
    outputs = features(np.zeros((1, 64, 96, 3), "float32"))
    outputs["block5_conv2"].shape   # (1, 4, 6, 512)
    ```
    """
    wanted = [*dict.fromkeys([*style_layers, content_layer])]
    vgg = _vgg19_stack() if base is None else base
    names = [layer.name for layer in vgg.layers]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ValueError(
            f"`base` must be a VGG19 with layers named as keras.applications names them; it has no "
            f"{', '.join(missing)}. Received: base={getattr(vgg, 'name', vgg)!r}"
        )
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    x = Preprocess(lookup("vgg19").preprocessing, name="preprocess")(inputs)
    outputs = {}
    # VGG is a plain chain: re-applying its layers in order to the new input rebuilds it
    # on float pixels of any size, sharing the weights, and stops at the deepest layer
    # the losses need.
    for layer in vgg.layers:
        if isinstance(layer, (keras.layers.InputLayer, Preprocess)):
            continue
        x = layer(x)
        if layer.name in wanted:
            outputs[layer.name] = x
            if len(outputs) == len(wanted):
                break
    return keras.Model(inputs, outputs, name="style_vgg19")


# ------------------------------------------------------------------- the painted image
@keras.saving.register_keras_serializable(package="zoo")
class LastValue(keras.metrics.Metric):
    """The value of the latest step (a `Mean` would average the whole run)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value")

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)

    def reset_state(self):
        self.value.assign(0.0)


@keras.saving.register_keras_serializable(package="zoo")
class PixelRange(keras.constraints.Constraint):
    """Keeps the image a valid picture: applied by the optimizer after each step."""

    def __call__(self, w):
        return ops.clip(w, 0.0, 255.0)


def gram(features):
    """Gatys' Gram matrix, averaged over positions so layers of every size weigh alike."""
    shape = ops.shape(features)
    locations = ops.cast(shape[1] * shape[2], features.dtype)
    return ops.einsum("bijc,bijd->bcd", features, features) / locations


def total_variation(image):
    """Of the image in 0–1, summed as tf.image.total_variation sums it."""
    image = image / 255.0
    down = ops.abs(image[:, 1:, :, :] - image[:, :-1, :, :])
    right = ops.abs(image[:, :, 1:, :] - image[:, :, :-1, :])
    return ops.sum(down) + ops.sum(right)


@keras.saving.register_keras_serializable(package="zoo")
class StyleTransfer(keras.Model):
    """The painted image as the model's one trainable weight, and its loss.

    Args:
        features: keras.Model. `style_features(...)`'s extractor (frozen here).
        content: float array `(H, W, 3)`, 0–255. The starting image.
        style_targets: dict `{layer: Gram matrix}` of the style image.
        content_target: array. The content image's activations at the content layer.
        content_layer: str. Which of `features`' outputs the content loss reads.
        style_weight, content_weight, tv_weight: float. The losses' weights.
    """

    def __init__(self, features, content, style_targets, content_target, content_layer,
                 style_weight, content_weight, tv_weight, **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.features.trainable = False
        self.style_layers = list(style_targets)
        self.content_layer = content_layer
        self.style_weight = float(style_weight)
        self.content_weight = float(content_weight)
        self.tv_weight = float(tv_weight)
        height, width = content.shape[:2]
        self.image = self.add_weight(
            shape=(1, height, width, 3), initializer=keras.initializers.Constant(content[None]),
            constraint=PixelRange(), name="image")
        # Targets as non-trainable weights: state the compiled step reads, not
        # constants copied into its graph.
        self.style_targets = [
            self.add_weight(shape=target.shape, initializer=keras.initializers.Constant(target),
                            trainable=False, name=f"gram_{layer}")
            for layer, target in style_targets.items()]
        self.content_target = self.add_weight(
            shape=content_target.shape, initializer=keras.initializers.Constant(content_target),
            trainable=False, name="content_target")
        self.trackers = {name: LastValue(f"{name}_loss") for name in LOSSES}
        self.built = True

    def call(self, inputs=None, training=False):
        return ops.convert_to_tensor(self.image)

    def losses_of(self, image):
        """`{"style", "content", "tv", "total"}` losses of `image` (1, H, W, 3)."""
        outputs = self.features(image, training=False)
        style = sum(ops.mean(ops.square(gram(outputs[layer]) - target))
                    for layer, target in zip(self.style_layers, self.style_targets))
        style = style * (self.style_weight / len(self.style_layers))
        content = self.content_weight * ops.mean(ops.square(outputs[self.content_layer] - self.content_target))
        tv = self.tv_weight * total_variation(image)
        return {"style": style, "content": content, "tv": tv, "total": style + content + tv}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses = self.losses_of(self.image if y_pred is None else y_pred)
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return losses["total"]
