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
"""

from zoo.registry import ModelSpec, lookup, register

STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
CONTENT_LAYER = "block5_conv2"
# VGG19's convolutions up to and including block5_conv2 (13 of its 16), with biases.
NUM_PARAMS = 15_304_768


def _vgg19_stack():
    """VGG19 without its head, random weights, on float input (the registry's builder)."""
    import keras

    from zoo.preprocessing import Preprocess

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
    import keras

    from zoo.preprocessing import Preprocess

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


register(
    ModelSpec(
        name="style_vgg19",
        family="style_transfer",
        task="style-transfer",
        builder=style_features,
        input_size=None,  # any size: the image being painted sets it
        preprocessing="caffe",
        num_params=NUM_PARAMS,
        description="Neural style transfer: VGG19 up to block5_conv2 (Gram style, content); uses vgg19's weights.",
        default_weights=None,  # vgg19's weights; `zoo.style` loads them
        feature_layer=CONTENT_LAYER,
        paper="https://arxiv.org/abs/1508.06576",
    )
)
