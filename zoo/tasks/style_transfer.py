"""The style-transfer task: neural style transfer (Gatys et al., 2015), https://arxiv.org/abs/1508.06576.

    zoo style tubingen.jpg starry_night.jpg --out tubingen_starry.png
    zoo train style-transfer tubingen.jpg starry_night.jpg --out tubingen_starry.png   # the same

    >>> import zoo
    >>> result = zoo.style("tubingen.jpg", "starry_night.jpg", out="tubingen_starry.png")
    >>> result.image.shape, result.history["style"][-1]

The picture is the only thing trained: a Keras model whose one trainable weight is the
image (float RGB, 0–255, clipped after every step) minimises the style loss (Gram
matrices of `block1_conv1 … block5_conv1`), the content loss (`block5_conv2`) and the
total variation of the image, through zoo's one fit path — so it gets Keras' progress
bar, XLA compilation and every Keras backend. What makes a step cheap: the style
image's Gram matrices and the content image's features are computed once, before the
run, and each step runs only the image being painted through VGG19, and only up to
`block5_conv2`, the deepest layer a loss reads (keras-io's recipe runs content, style
and painted image as a batch of three through all of VGG19 every step).

The defaults are the TensorFlow tutorial's recipe (tensorflow.org/tutorials/generative/
style_transfer: style weight 1e-2, content 1e4, total variation 30; Adam 0.02, beta_1
0.99, epsilon 0.1; 1,000 steps at 512 px), rewritten for pixels in 0–255 instead of
0–1: the losses read the same VGG activations, so their weights carry over; the total
variation is taken of the image in 0–1 as the tutorial does; the rate and epsilon are
scaled by 255 (Adam's step is in pixel units), which makes the run step for step the
tutorial's, times 255.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras

from zoo import tasks
from zoo.architectures.style_transfer import LOSSES
from zoo.errors import OptionError

KIND = "style-transfer"
MODEL_TASK = "style-transfer"
_TASK = tasks.MANIFEST[KIND]
DESCRIPTION = _TASK.description
OPTIONS = _TASK.options  # zoo.tasks.MANIFEST: the CLI reads them without importing this module
# The recipe's numbers are the options' defaults (the CLI shows them without importing this module).
STEPS = _TASK.defaults["steps"]  # 1000
SIZE = _TASK.defaults["size"]  # 512
STYLE_WEIGHT = _TASK.defaults["style_weight"]  # 1e-2
CONTENT_WEIGHT = _TASK.defaults["content_weight"]  # 1e4
TV_WEIGHT = _TASK.defaults["tv_weight"]  # 30
LEARNING_RATE = 0.02 * 255  # the tutorial's Adam rate for 0–1 images, in 0–255 pixels
BETA_1 = 0.99
MIN_SIDE = 32  # VGG19's five 2x2 poolings
EPSILON = 0.1 / 255  # Adam's epsilon is in gradient units, which are 255 times smaller here


@dataclasses.dataclass
class StyleResult:
    """What `zoo.style` made.

    Attributes:
        image: uint8 array `(H, W, 3)`: the painted image at the content image's size.
        history: dict of lists, one value per step: `"style"`, `"content"`, `"tv"` and
            `"total"` losses of the image that step started from (the first values are
            those of the content image itself).
        path: str or None. Where the image was written.
        intermediates: list of str. The images written every `save_every` steps.
    """

    image: "numpy.ndarray"
    history: dict
    path: str | None = None
    intermediates: list = dataclasses.field(default_factory=list)


def _check_positive(name, value, integer=False, allow_zero=False):
    import numpy as np

    kind = "a whole number" if integer else "a number"
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) if integer else (
        isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value))
    if not ok or value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise OptionError(f"`{name}` must be {kind} {rule}. Received: {name}={value!r}")


def _check_outputs(out, save_every, steps, inputs, overwrite):
    """`out` and its step images may not replace an input, nor an existing file unless
    `overwrite`: checked before any work."""
    from zoo import io

    if out is None:
        return
    planned = [Path(out)]
    if save_every:
        planned += [step_path(out, step) for step in range(save_every, steps + 1, save_every)]
    io.refuse_overwrite(planned, inputs, overwrite)


def _read(image, name):
    """A path or an array as a uint8 `(H, W, 3)` array."""
    import numpy as np

    from zoo.data.pillow import load_rgb, to_rgb

    if isinstance(image, (str, os.PathLike)):
        return load_rgb(image)
    try:
        from PIL import Image

        if isinstance(image, Image.Image):
            return np.asarray(to_rgb(image), dtype="uint8")
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise OptionError(f"`{name}` must be an image file or an (H, W, 3) RGB array. "
                         f"Received: {name} with shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype("uint8")
    return array


def _resize(array, height, width):
    import numpy as np

    from PIL import Image

    if array.shape[:2] == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), Image.LANCZOS), dtype="uint8")


def _fit_side(array, size):
    """`array` resized so that its longer side is `size`, keeping its aspect ratio."""
    height, width = array.shape[:2]
    scale = size / max(height, width)
    return _resize(array, max(1, round(height * scale)), max(1, round(width * scale)))


def step_path(out, step):
    """Where the image after `step` steps goes: `OUT-step0100.png` beside `OUT.png`."""
    out = Path(out)
    return out.with_name(f"{out.stem}-step{step:04d}{out.suffix or '.png'}")


def _save(path, array):
    from PIL import Image

    from zoo import io

    path = Path(path)
    with io.atomic_path(path) as tmp:
        # The format comes from the user's name (.png, .jpg); the temporary keeps it.
        Image.fromarray(array).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    return str(path)


# ------------------------------------------------------------------------ the callback
class Record(keras.callbacks.Callback):
    """Each step's losses into `history`; every `save_every` steps, the image (as
    `step_path(out, step)`, at `original_size`, its path appended to `intermediates`)."""

    def __init__(self, history, out, save_every, original_size, intermediates):
        super().__init__()
        self.history = history
        self.out = out
        self.save_every = save_every
        self.original_size = original_size
        self.intermediates = intermediates

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        for name in LOSSES:
            if f"{name}_loss" in logs:
                self.history[name].append(float(logs[f"{name}_loss"]))
        step = batch + 1
        if self.save_every and step % self.save_every == 0:
            sync = getattr(self.model, "jax_state_sync", None)
            if sync is not None:  # the JAX trainer keeps the state apart between syncs
                sync()
            self.intermediates.append(_save(step_path(self.out, step), _to_uint8(self.model.image, self.original_size)))


def _to_uint8(variable, size):
    import numpy as np

    from keras import ops

    array = np.clip(np.round(ops.convert_to_numpy(variable)[0]), 0, 255).astype("uint8")
    return _resize(array, *size)


# ------------------------------------------------------------------------------ style
def style(
    content,
    style,
    out=None,
    weights="default",
    steps=STEPS,
    size=SIZE,
    style_weight=STYLE_WEIGHT,
    content_weight=CONTENT_WEIGHT,
    tv_weight=TV_WEIGHT,
    learning_rate=LEARNING_RATE,
    save_every=None,
    overwrite=False,
    verbose="auto",
    jit_compile="auto",
    callbacks=(),
):
    """Paint `content` in the style of `style` (Gatys et al., 2015).

    Optimises an image, starting from the content image, so that its VGG19 Gram
    matrices at `block1_conv1 … block5_conv1` match the style image's, its
    `block5_conv2` activations stay close to the content image's, and its total
    variation stays low. Paper: https://arxiv.org/abs/1508.06576.

    Args:
        content: str, path, PIL image or uint8 `(H, W, 3)` array. The picture to repaint.
        style: the same kinds. The picture whose style to take.
        out: str, path or None. Where to write the result (PNG or JPEG by its suffix).
            Defaults to `None` (not written).
        weights: VGG19's weights: `"default"` (the `imagenet` variant from the weights
            store; without network, a missing file raises the store's message on how
            to import it), a variant name, the path of a VGG19 weights file, or `None`
            for random weights (for tests and benchmarks). Defaults to `"default"`.
        steps: int. Optimisation steps. Defaults to `1000`.
        size: int. The longer side, in pixels, the image is painted at; the result is
            resized back to the content image's size. Defaults to `512`.
        style_weight: float. Weight of the style loss. Defaults to `1e-2`.
        content_weight: float. Weight of the content loss. Defaults to `1e4`.
        tv_weight: float. Weight of the total-variation loss. Defaults to `30`.
        learning_rate: float. Adam's rate, in pixel units (0–255). Defaults to `5.1`.
        save_every: int or None. Also write the image every this many steps, as
            `OUT-step0100.png` beside `out`. Defaults to `None`.
        overwrite: bool. Replace `out` and the step images if they exist; without
            it an existing one is refused before any work. An input (`content`,
            `style`) is never written over. Defaults to `False`.
        verbose: `"auto"`, 0, 1 or 2. Keras' progress output; `"auto"` is the live bar
            on a terminal, one line otherwise. Defaults to `"auto"`.
        jit_compile: `"auto"`, True or False. XLA compilation of the step, as
            `keras.Model.compile` takes it. Defaults to `"auto"`.
        callbacks: more Keras callbacks for the run.

    Returns:
        `StyleResult`: `image` (uint8, the content image's size), the per-step loss
        `history`, the `path` written and the `intermediates`.

    Example:
    ```python
    result = zoo.style("tubingen.jpg", "starry_night.jpg", out="tubingen_starry.png", steps=500)
    print(result.history["style"][0], result.history["style"][-1])
    ```
    """
    import numpy as np

    from zoo import models
    from zoo.architectures.style_transfer import CONTENT_LAYER, STYLE_LAYERS, StyleTransfer, style_features
    from zoo.training import Defaults, Settings, Tracking, fit

    _check_positive("steps", steps, integer=True)
    _check_positive("size", size, integer=True)
    for name, value in (("style_weight", style_weight), ("content_weight", content_weight),
                        ("tv_weight", tv_weight)):
        _check_positive(name, value, allow_zero=True)
    _check_positive("learning_rate", learning_rate)
    if save_every is not None:
        _check_positive("save_every", save_every, integer=True)
        if out is None:
            raise OptionError(f"`save_every` needs `out`: the images are written beside it. "
                             f"Received: save_every={save_every!r}, out=None")

    _check_outputs(out, save_every, int(steps), (content, style), overwrite)
    content_image = _read(content, "content")
    style_image = _read(style, "style")
    original_size = content_image.shape[:2]
    painted = _fit_side(content_image, int(size)).astype("float32")
    height, width = painted.shape[:2]
    # The style image at the same scale: the Gram matrices are averages over positions,
    # so its own aspect ratio and size are kept.
    style_pixels = _fit_side(style_image, int(size)).astype("float32")
    # VGG19 halves the image five times (block5_pool included): a shorter side under 32
    # pixels leaves nothing to pool.
    for name, original, fitted in (("content", content_image, painted), ("style", style_image, style_pixels)):
        if min(fitted.shape[:2]) < MIN_SIDE:
            raise OptionError(
                f"`size` must leave each image's shorter side at least {MIN_SIDE} pixels; the {name} image "
                f"{original.shape[1]}x{original.shape[0]} at size={size} gives {fitted.shape[1]}x{fitted.shape[0]}")

    # The weights store's own error (with `zoo weights import ...`) passes through as is.
    base = models.create("vgg19", weights=weights, include_top=False, input_shape=(height, width, 3))
    features = style_features(base)
    style_outputs = features(style_pixels[None])
    style_targets = {layer: _gram_numpy(style_outputs[layer]) for layer in STYLE_LAYERS}
    content_target = keras.ops.convert_to_numpy(features(painted[None])[CONTENT_LAYER])

    model = StyleTransfer(features, painted, style_targets, content_target, CONTENT_LAYER,
                          style_weight, content_weight, tv_weight, name="style_transfer")
    optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate), beta_1=BETA_1, epsilon=EPSILON)
    history = {name: [] for name in LOSSES}
    intermediates = []
    # One "batch" per step: the data is a placeholder, the image is the model's weight.
    fit(
        model, np.zeros((int(steps), 1), "float32"), epochs=1, batch_size=1, shuffle=False,
        defaults=Defaults.own_loss(optimizer=optimizer), settings=Settings(jit_compile=jit_compile),
        tracking=Tracking.off(),
        callbacks=[Record(history, out, save_every, original_size, intermediates), *callbacks],
        verbose=verbose,
    )
    image = _to_uint8(model.image, original_size)
    path = _save(out, image) if out is not None else None
    return StyleResult(image=image, history=history, path=path, intermediates=intermediates)


def _gram_numpy(features):
    import numpy as np

    from keras import ops

    features = ops.convert_to_numpy(features).astype("float64")
    _, height, width, _ = features.shape
    return (np.einsum("bijc,bijd->bcd", features, features) / (height * width)).astype("float32")


# --------------------------------------------------------------------------- the task
_style = style  # train's argument `style` (the picture) hides the function's name


def train(content=None, style=None, out=None, weights="default", steps=STEPS, size=SIZE, style_weight=STYLE_WEIGHT,
          content_weight=CONTENT_WEIGHT, tv_weight=TV_WEIGHT, save_every=None, **options):
    """`zoo train style-transfer CONTENT STYLE --out OUT.png`: `zoo.style` as a task.

    The same work as `style(...)` (one implementation, two doors: `zoo style` and
    `zoo train style-transfer`); `weights` may also be the string `"none"` (random
    weights), as the command line gives it. Other keyword arguments go to `style`
    (`learning_rate`, `verbose`, `jit_compile`, `callbacks`).

    Returns:
        `StyleResult`.
    """
    if content is None or style is None:
        raise OptionError("The style-transfer task needs a content image and a style image. "
                          f"Received: content={content!r}, style={style!r}")
    return _style(content, style, out=out, weights=weights, steps=steps, size=size, style_weight=style_weight,
                  content_weight=content_weight, tv_weight=tv_weight, save_every=save_every, **options)


def signatures(source, top_k=5, classes=None):
    """The export's signatures (`zoo.tasks`' contract). Style transfer writes no run (its
    result is an image), so there is only a bare model to export: `serving_default` on
    its own input and output. `top_k` and `classes` (a classifier's) play no part."""
    from zoo.tasks.export import model_signatures

    return model_signatures(source)
