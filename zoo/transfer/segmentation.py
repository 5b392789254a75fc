"""A U-Net decoder on any image model: the segmentation head of `replace_head`.

The encoder is the base itself; the decoder is fed by its feature pyramid, the last
layer of each stage at strides 2, 4, 8, 16 and 32 (as many as the base has: ConvNeXt
starts at stride 4), found from the layers' output sizes, so every registry family
that is a Keras functional model gets one without a table of layer names. From the
deepest stage up, each step resizes to the next skip's size (bilinear: Inception's
valid-padded stages are 17, 35, 71, ... pixels, not halves), concatenates the skip and
runs two 3x3 convolutions with BatchNorm and ReLU (Ronneberger et al., 2015; the widths
of segmentation_models' decoder, 256 down to 16, each no wider than the skip it joins,
so a small encoder gets a decoder of its size); a last step reaches the input's size, and a 1x1 convolution gives a float32 softmax over the classes per pixel.

Every decoder layer is named `head_*`, so the transfer policy treats it as the head:
frozen encoder first, then the two-phase fine-tune with discriminative rates.
"""

from __future__ import annotations

import math

STRIDES = (2, 4, 8, 16, 32)
DECODER_FILTERS = (256, 128, 64, 32, 16)


def feature_pyramid(base, strides=STRIDES, top=None):
    """The base's stage outputs, shallow to deep: `[(stride, layer name, tensor)]`.

    For each stride, the last layer (in graph order) whose 4-D output is within a
    factor of 1.5 of the input's size divided by it. `top` (a tensor of the base)
    bounds the search: layers after it (a classifier) are left out; it defaults to
    the base's output.

    Raises:
        ValueError: the base has no 4-D layers of a fixed size (a hub layer, a model
            with a variable input size), or fewer than two stages.
    """
    import keras

    shape = tuple(base.inputs[0].shape) if len(base.inputs) == 1 else ()
    height, width = shape[1:3] if len(shape) == 4 else (None, None)
    if not height or not width:
        raise ValueError(f"A segmentation head needs a base with a fixed input size. Received: {base.name} takes "
                         f"{tuple(base.inputs[0].shape)}")
    top = base.outputs[0] if top is None else top
    candidates = []  # (layer index, stride, name, tensor)
    for index, layer in enumerate(base.layers):
        try:
            output = layer.output
        except (AttributeError, ValueError):  # a layer used twice has no single output
            continue
        if isinstance(output, (list, tuple)):
            continue
        if isinstance(layer, keras.layers.ZeroPadding2D):  # a stage's output padded, not a stage
            continue
        if len(output.shape) == 4 and output.shape[1]:
            candidates.append((index, height / output.shape[1], layer.name, output))
        if output is top:
            break
    found = []
    for stride in strides:
        near = [c for c in candidates if abs(math.log2(c[1] / stride)) <= math.log2(1.5)]
        if near:
            index, real, name, tensor = max(near, key=lambda c: c[0])
            if not found or index > found[-1][0]:
                found.append((index, real, name, tensor))
    if len(found) < 2:
        raise ValueError(f"{base.name} does not expose the stages a U-Net decoder needs (4-D layers at strides "
                         f"{', '.join(map(str, strides))} of its {height}x{width} input); found "
                         f"{[(round(s, 1), n) for _, s, n, _ in found]}")
    return [(stride, name, tensor) for _, stride, name, tensor in found]


def unet_head(base, num_classes, decoder_filters=DECODER_FILTERS, name=None, top=None):
    """`base` with a U-Net decoder over its `feature_pyramid`: a model from the base's
    input to a softmax over `num_classes` per pixel, `(N, H, W, num_classes)`."""
    import keras
    from keras import layers

    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2 for segmentation (the background is a class). "
                         f"Received: num_classes={num_classes!r}")
    pyramid = feature_pyramid(base, top=top)
    height, width = (int(d) for d in base.inputs[0].shape[1:3])
    x = pyramid[-1][2]
    targets = [(int(tensor.shape[1]), int(tensor.shape[2]), tensor) for _, _, tensor in reversed(pyramid[:-1])]
    targets.append((height, width, None))  # the last step reaches the input's own size
    filters = None
    for step, (h, w, skip) in enumerate(targets, start=1):
        widest = decoder_filters[min(step - 1, len(decoder_filters) - 1)]
        # No wider than the skip it joins (or the step before, for the last): a small
        # encoder gets a decoder of its own size, a ResNet the usual 256 ... 16.
        filters = min(widest, max(16, int(skip.shape[-1]) if skip is not None else filters or widest))
        x = layers.Resizing(h, w, interpolation="bilinear", name=f"head_up{step}")(x)
        if skip is not None:
            x = layers.Concatenate(name=f"head_skip{step}")([x, skip])
        for conv in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"head_decoder{step}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"head_decoder{step}_bn{conv}")(x)
            x = layers.ReLU(name=f"head_decoder{step}_relu{conv}")(x)
    logits = layers.Conv2D(num_classes, 1, name="head_logits")(x)
    # float32 softmax even under mixed precision, so each pixel's probabilities sum to 1.
    outputs = layers.Activation("softmax", dtype="float32", name="head_segmentation")(logits)
    inputs = base.inputs[0] if len(base.inputs) == 1 else base.inputs
    return keras.Model(inputs, outputs, name=name or base.name)
