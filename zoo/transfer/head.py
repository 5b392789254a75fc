"""A new head on any image model, with or without its original top: a classifier, or
a U-Net decoder for segmentation (`zoo.transfer.segmentation`)."""

TASKS = ("classification", "segmentation")


def feature_tensor(base, feature_layer=None):
    """The base's features: before its classifier if it has one, else its output.

    `feature_layer` names the layer to cut at (the factory passes the registry spec's
    `feature_layer` for a model built with its top); other models are cut before a final
    Dense layer, or used whole when their output is still a feature map.
    """
    layer_names = {layer.name for layer in base.layers}
    if feature_layer is not None and feature_layer in layer_names:
        return base.get_layer(feature_layer).output
    last = base.layers[-1]
    if len(base.outputs[0].shape) == 2 and last.__class__.__name__ == "Dense":
        return last.input
    return base.outputs[0]


def replace_head(base, num_classes, dropout=0.2, hidden=None, name=None, feature_layer=None,
                 task="classification", decoder_filters=None):
    """Put a new head on `base`: for classification, pooling, optional hidden dense,
    dropout and dense; for segmentation, a U-Net decoder fed by the base's stages
    (`zoo.transfer.segmentation.unet_head`), a softmax per pixel.

    Works on registry models built with or without `include_top`: an existing
    classifier is cut off first.

        model = replace_head(base, task="segmentation", num_classes=6)   # (N, H, W, 6)

    Args:
        base: keras.Model. An image model (uint8 input).
        num_classes: int. Classes of the new head (>= 2).
        dropout: float. Dropout before the last dense layer. Defaults to `0.2`.
        hidden: int or None. Units of a hidden ReLU layer. Defaults to `None`.
        name: str or None. Name of the new model. Defaults to the base's name.
        feature_layer: str or None. The layer whose output the head goes on. Defaults
            to cutting before a final Dense layer.
        task: `"classification"` or `"segmentation"`. Defaults to `"classification"`.
        decoder_filters: tuple of int or None. Segmentation: the decoder's widths, from
            the deepest step up. Defaults to `(256, 128, 64, 32, 16)`.

    Returns:
        keras.Model with the same inputs and a softmax over `num_classes` (per pixel
        for segmentation).
    """
    import keras
    from keras import layers

    if task not in TASKS:
        raise ValueError(f"`task` must be one of {', '.join(TASKS)}. Received: task={task!r}")
    if task == "segmentation":
        from zoo.transfer.segmentation import DECODER_FILTERS, unet_head

        return unet_head(base, num_classes, decoder_filters=tuple(decoder_filters or DECODER_FILTERS), name=name,
                         top=feature_tensor(base, feature_layer))
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
    x = feature_tensor(base, feature_layer)
    if len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"Cannot put a head on features of shape {x.shape} from {base.name}.")
    if hidden:
        x = layers.Dense(hidden, activation="relu", name="head_hidden")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    # float32 softmax even under mixed precision, so probabilities sum to 1. The kernel
    # starts at zero (BiT's head, Kolesnikov et al. 2019): every class starts at 1/n
    # instead of at confident random logits on large features, so a short frozen phase
    # already trains (benchmarks/README.md, "Fine-tune").
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", kernel_initializer="zeros",
                           name="head_predictions")(x)
    inputs = base.inputs[0] if len(base.inputs) == 1 else base.inputs
    return keras.Model(inputs, outputs, name=name or base.name)
