"""What a layer's filters respond to, and what they saw in one image: filter pictures
(activation maximisation) and activation maps, for any Keras image model on any backend.

    >>> from zoo.interpret import filters
    >>> model = zoo.create("lenet5")
    >>> pictures = filters.filter_pictures(model, "c3", n=16)  # uint8 (16, 28, 28, 3)
    >>> filters.filter_grid(pictures, "c3.png")
    >>> maps = filters.activation_maps(model, image, "c1")  # float32 (28, 28, 6)
    >>> filters.activation_grid(maps, "c1_maps.png")

A filter picture is an image that drives one filter's mean activation as high as it
will go, found by gradient ascent on the pixels (Erhan et al., 2009; Simonyan et al.,
2013, https://arxiv.org/abs/1312.6034; keras-io's "Visualizing what convnets learn").
Plain ascent finds high-frequency noise that excites the filter without looking like
anything; the regularisation follows Olah et al., 2017, "Feature Visualization",
https://distill.pub/2017/feature-visualization/, keeping only what is cheap on a CPU:

- start from gray plus a little noise (a neutral image: whatever appears, the filter
  asked for);
- each step the image is shifted by a few random pixels (jitter, "transformation
  robustness"): a pattern that only works at one exact pixel offset is noise, and
  shifting averages it away;
- the gradient is preconditioned: reweighted in the Fourier domain by 1/frequency
  (Olah et al.'s decorrelated Fourier parameterisation, applied to the step rather than
  by re-parameterising the image, which needs no FFT inside the backend's autodiff).
  Low frequencies then move first, as with octaves (optimising small, then upscaling),
  which zoo cannot use here: most zoo models take one fixed input size;
- the step's mean over the whole image (all colours) is taken out, so the overall
  brightness stays at the start's: brightening everything raises the mean of any filter
  whose weights sum positive, says nothing about its pattern, and once the 1/f weights
  favour it, swamps the pattern (LeNet's first layer gave flat gray squares). Colour
  casts stay free: a filter for blue may paint the picture blue;
- for a layer with an activation (a ReLU convolution, or a ReLU layer), the score is a
  leaky ReLU's mean: the activation plus 5 % of the pre-activation. Post-ReLU alone, a
  filter negative everywhere on the gray start has no gradient, and its picture would
  stay gray;
- normalised steps (each image's step has the same RMS size in pixels, whatever the
  layer's scale), a small decay of the image towards gray (Yosinski et al., 2015,
  https://arxiv.org/abs/1506.06579: pixels that do not help fade out) and clipping to
  0..255, the only pixels a uint8 model ever sees.

The filters of one batch are optimised together: one image per filter, and the score
is the sum of each image's own filter mean, so each image gets its own filter's
gradient from one forward and backward pass. The forward pass stops right after the
layer (`attribution.Forward.layer_output`), so shallow layers of a deep model are cheap.

The layer is found and read by tapping it while the whole model runs (see
`zoo.interpret.graph`), never with a `keras.Model(model.inputs, layer.output)`
sub-model, so it works on nested models (a base inside a fine-tuned model), Sequential
models and every backend with gradients (TensorFlow, JAX, torch).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import numpy as np

from zoo.interpret import attribution, graph

STEPS = 64
LEARNING_RATE = 4.0  # RMS pixel change per step, in 0..255 units
JITTER = 0.06  # the largest random shift per step, as a fraction of the image side
DECAY = 0.005  # pull towards gray per step
NOISE = 8.0  # the starting noise's standard deviation, in pixels
# The start: the ImageNet mean luminance, in gray. The mean (per colour) is what
# caffe-mode models (VGG, ResNet) subtract, so this is near their "nothing"; and it is
# below 0.5, where LeNet's digits preprocessing inverts the image (a start at 127.5
# would sit on that edge and flip back and forth).
GRAY = 115.0
DEFAULT_SIZE = 128  # for models that take any input size
LABEL_HEIGHT = 11  # pixels above each grid cell for its index


# ---------------------------------------------------------------------------- checks
def _check_positive(name, value, integer=True, allow_zero=False):
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "integer" if integer else "number"
        raise ValueError(f"`{name}` must be a {'non-negative' if allow_zero else 'positive'} {kind}. "
                         f"Received: {name}={value!r}")


def input_size(model):
    """The model's `(height, width)`, or None where it takes any size."""
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def _image_size(model, size):
    fixed = input_size(model)
    if size is None:
        return fixed or (DEFAULT_SIZE, DEFAULT_SIZE)
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"`size` must be an int or (height, width). Received: size={size!r}")
    if fixed is not None and size != fixed:
        raise ValueError(
            f"{model.name} takes {fixed[0]}x{fixed[1]} images only, so its filter pictures are that size. "
            f"For {size[0]}x{size[1]} pictures build the model without its classifier, e.g. "
            f"zoo.create(name, include_top=False, input_shape=({size[0]}, {size[1]}, 3)): the convolutional "
            f"weights are the same. Received: size={size!r}")
    return size


def _spatial_layer(model, layer, probe_size):
    """The layer object, checked to give `(N, h, w, C)`; and its channel count."""
    found = graph.find_layer(model, layer)
    rank = graph.output_rank(found)
    channels = found.output.shape[-1] if rank == 4 else None
    if rank is None or (rank == 4 and channels is None):
        # A Sequential model never called, a layer used twice: run it once to see.
        probe = np.full((1, *probe_size, 3), GRAY, "float32")
        out = attribution.Forward(model).layer_output(probe, found)
        rank, channels = len(out.shape), out.shape[-1]
    if rank != 4:
        spatial = graph.spatial_layer_names(model)
        raise ValueError(
            f"Layer {found.name!r} of {model.name} has a {rank}-D output, not a (batch, height, width, "
            f"channels) feature map, so it has no filters to picture. Its 4-D layers: "
            f"{', '.join(spatial) or 'none'}. Received: layer={layer!r}")
    return found, int(channels)


# ------------------------------------------------------------------ the objective
LEAK = 0.05  # the pre-activation's share of the score (see `_ascend`)

@contextlib.contextmanager
def _split_activation(layer):
    """While inside, `layer` outputs its pre-activation (a Conv2D's input to its own
    `activation`, or what an `Activation`/`ReLU` layer receives); yields the function
    that turns it into the layer's real output.

    Post-ReLU, a filter negative everywhere on the gray start has a zero gradient and
    its picture would stay gray; with both in hand the score can be the activation plus
    a little of the pre-activation (a leaky ReLU), which always has a gradient.
    """
    import keras

    activation = getattr(layer, "activation", None)
    if graph.activation_name(layer) == "softmax":
        # Not monotonic in one channel: raising a channel's input is not raising its output.
        yield None
    elif graph.is_activation_layer(layer):
        real = layer.call
        with graph.replaced_call(layer, graph.passes_through):
            yield real
    elif callable(activation) and activation is not keras.activations.linear:
        with graph.replaced_activation(layer, keras.activations.linear) as original:
            yield original
    else:
        yield None


# ----------------------------------------------------------------- the optimisation
def _spectral_weights(height, width, power=1.0):
    """1/f weights for `rfft2` coefficients of an `(height, width)` image, mean 1.

    Olah et al. scale the image's Fourier coefficients by 1/f so that each frequency's
    share of a step is like natural images' (whose spectra fall off as 1/f); the zero
    frequency gets the lowest nonzero frequency's weight, not infinity.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequency = np.sqrt(fx ** 2 + fy ** 2)
    weights = 1.0 / np.maximum(frequency, 1.0 / max(height, width)) ** power
    return (weights / weights.mean()).astype("float32")


def _precondition(grads, weights):
    spectrum = np.fft.rfft2(grads, axes=(1, 2)) * weights[None, :, :, None]
    return np.fft.irfft2(spectrum, s=grads.shape[1:3], axes=(1, 2)).astype("float32")


def _ascend(forward, layer, filter_ids, channels, size, steps, learning_rate, jitter, decay, noise, rng,
            leak=LEAK):
    """Gradient ascent for one batch: one image per filter id. Returns float pixels."""
    from keras import ops

    count = len(filter_ids)
    height, width = size
    images = (GRAY + rng.normal(0.0, noise, (count, height, width, 3))).astype("float32")
    mask = ops.convert_to_tensor(np.eye(channels, dtype="float32")[np.asarray(filter_ids)])
    weights = _spectral_weights(height, width)
    shift = max(0, int(round(jitter * min(height, width))))

    def score(x):
        with _split_activation(layer) as activate:
            before = ops.cast(forward.layer_output(x, layer), "float32")
        if activate is None:
            means = ops.mean(before, axis=(1, 2))
        else:
            means = ops.mean(ops.cast(activate(before), "float32"), axis=(1, 2))
            # A leaky ReLU's mean: a little of the pre-activation lifts the whole map,
            # not only where the filter already fires. A filter silent everywhere has
            # no activation gradient, and lifting its mean pre-activation can silence
            # the layers below instead (weights summing negative): it gets its best
            # position raised until it fires somewhere.
            means = ops.where(means > 0, means + leak * ops.mean(before, axis=(1, 2)),
                              leak * ops.max(before, axis=(1, 2)))
        # Each image's own filter: its gradient is that filter's, as if run alone.
        return ops.sum(means * mask), means

    for _ in range(steps):
        dy, dx = (rng.integers(-shift, shift + 1, 2) if shift else (0, 0))
        shifted = np.roll(images, (dy, dx), axis=(1, 2))
        _, grads = attribution.value_and_gradient(score, shifted)
        grads = np.roll(attribution.numpy(grads).astype("float32"), (-dy, -dx), axis=(1, 2))
        grads = _precondition(grads, weights)
        grads -= grads.mean(axis=(1, 2, 3), keepdims=True)  # brightness stays put (module notes)
        rms = np.sqrt(np.mean(grads ** 2, axis=(1, 2, 3), keepdims=True))
        images += learning_rate * grads / np.maximum(rms, 1e-12)
        images = GRAY + (images - GRAY) * (1.0 - decay)
        np.clip(images, 0.0, 255.0, out=images)
    return images


def filter_pictures(model, layer, n=64, filters=None, size=None, steps=STEPS, learning_rate=LEARNING_RATE,
                    jitter=JITTER, decay=DECAY, noise=NOISE, batch_size=16, seed=0, verbose=False):
    """Pictures of what each filter of `layer` responds to, by activation maximisation.

    Each picture is an image (in 0..255 pixels, as the model takes them) found by
    gradient ascent to maximise the mean activation of one filter, with the
    regularisation of Olah et al., 2017 (https://distill.pub/2017/feature-visualization/)
    that keeps it readable: a gray start, random jitter every step, 1/f (Fourier)
    preconditioned and normalised steps, decay towards gray (see the module's notes).
    For a layer with its own activation (e.g. a ReLU convolution) the score also holds a
    little of the pre-activation, so a filter silent on the gray start still gets a
    gradient.

    Args:
        model: keras.Model. An image model: uint8 (or float) RGB input, 0..255 pixels.
            Functional, Sequential, or with a base model nested inside.
        layer: str or keras.layers.Layer. A layer with a `(N, h, w, C)` output, at any
            depth of nesting.
        n: int. Picture the first `n` filters (all of them when the layer has fewer).
            Defaults to 64.
        filters: list of int or None. These filter indices instead of the first `n`.
        size: int, `(height, width)` or None. The pictures' size; defaults to the
            model's input size (128 for models that take any size). A model with a fixed
            input size takes only that size.
        steps: int. Gradient steps per picture. Defaults to 64.
        learning_rate: float. The RMS pixel change of one step (0..255 units).
        jitter: float. The largest random shift per step, as a fraction of the side.
        decay: float. The fraction of each pixel's distance from gray removed per step.
        noise: float. Standard deviation of the starting noise around gray, in pixels.
        batch_size: int. Filters optimised together (one image each).
        seed: int. Seed of the starting noise and the jitter.
        verbose: bool. A line on stderr per batch.

    Returns:
        uint8 NumPy array `(len(filters), height, width, 3)`, in the order of `filters`.

    Raises:
        ValueError: for an unknown layer (naming it), a layer without a 4-D output, a
            filter index out of range, or a size the model does not take.
    """
    for name, value in (("n", n), ("batch_size", batch_size)):
        _check_positive(name, value)
    _check_positive("steps", steps, allow_zero=True)
    for name, value in (("learning_rate", learning_rate), ("jitter", jitter), ("decay", decay), ("noise", noise)):
        _check_positive(name, value, integer=False, allow_zero=True)
    if decay >= 1:
        raise ValueError(f"`decay` must be below 1. Received: decay={decay!r}")
    size = _image_size(model, size)
    found, channels = _spatial_layer(model, layer, size)
    if filters is None:
        filter_ids = list(range(min(int(n), channels)))
    else:
        filter_ids = [int(f) for f in np.atleast_1d(np.asarray(filters))]
        bad = [f for f in filter_ids if not 0 <= f < channels]
        if bad or not filter_ids:
            raise ValueError(f"`filters` must be indices in 0..{channels - 1} ({found.name} has {channels} filters). "
                             f"Received: filters={filters!r}")
    forward = attribution.Forward(model)
    rng = np.random.default_rng(seed)
    pictures = []
    started = time.perf_counter()
    for start in range(0, len(filter_ids), batch_size):
        batch = filter_ids[start:start + batch_size]
        images = _ascend(forward, found, batch, channels, size, steps, learning_rate, jitter, decay, noise, rng)
        pictures.append(np.round(images).astype("uint8"))
        if verbose:
            done = start + len(batch)
            print(f"{found.name}: filters {done}/{len(filter_ids)} pictured "
                  f"({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)
    return np.concatenate(pictures)


def filter_activations(model, layer, pictures, batch_size=16):
    """The mean activation of every filter of `layer` for each picture: float32
    `(len(pictures), C)`. For `filter_pictures`' output, picture i should drive filter
    `filters[i]` harder than the other pictures do (the check the tests make)."""
    found = graph.find_layer(model, layer)
    forward = attribution.Forward(model)
    pictures = np.asarray(pictures, "float32")
    rows = [attribution.numpy(forward.layer_output(pictures[i:i + batch_size], found)).astype("float32")
            .mean(axis=(1, 2)) for i in range(0, len(pictures), batch_size)]
    return np.concatenate(rows)


# -------------------------------------------------------------------- activations
def _read_image(image, size):
    from PIL import Image

    if isinstance(image, (str, Path)):
        from zoo.data.pillow import load_rgb

        image = load_rgb(image)  # any mode, EXIF rotation, the pixel limit: as everywhere in zoo
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"`image` must be one RGB image (height, width, 3). Received: shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if size is not None and array.shape[:2] != tuple(size):
        pil = Image.fromarray(np.clip(array, 0, 255).astype("uint8"))
        array = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
    return array.astype("float32")


def activation_maps(model, image, layer, n=None):
    """One image's activations at `layer`: each channel's feature map, as Zeiler &
    Fergus, 2014 (https://arxiv.org/abs/1311.2901) look at them.

    The image is resized (bilinear) to the model's input size when the model has one.
    Nothing is built: the model runs as it is and stops after the layer (any nesting,
    Sequential, any backend).

    Args:
        model: keras.Model. An image model taking 0..255 RGB pixels.
        image: array `(H, W, 3)` (uint8 or float, 0..255; grayscale `(H, W)` is
            repeated), or the path of an image file.
        layer: str or keras.layers.Layer. A layer with a `(N, h, w, C)` output.
        n: int or None. Keep the first `n` channels (in the layer's order); all when
            None.

    Returns:
        float32 NumPy array `(h, w, C)`: channel `c` is the layer's channel `c`.

    Raises:
        ValueError: for an unknown layer, or one without a 4-D output.
    """
    if n is not None:
        _check_positive("n", n)
    size = input_size(model)
    pixels = _read_image(image, size)
    found, _ = _spatial_layer(model, layer, size or pixels.shape[:2])
    out = attribution.numpy(attribution.Forward(model).layer_output(pixels[None], found))
    maps = np.asarray(out, "float32")[0]
    return maps if n is None else maps[..., :n]


def most_active(maps, n=None):
    """Channel indices of `maps` `(h, w, C)`, highest mean activation first (ties in
    index order), the first `n` of them."""
    means = np.asarray(maps, "float32").reshape(-1, np.shape(maps)[-1]).mean(axis=0)
    order = np.argsort(-means, kind="stable")
    return order if n is None else order[:n]


# ----------------------------------------------------------------------- the grids
def _cell_scale(height, width, cell):
    """Nearest-neighbour enlargement so the smaller side reaches `cell` pixels (a 28-px
    picture or a 7-px map stays readable), never shrinking."""
    return max(1, int(np.ceil(cell / max(1, min(height, width)))))


def _labelled(images, labels, scale):
    """Each uint8 image enlarged `scale` times under a white strip with its label."""
    from PIL import Image, ImageDraw

    cells = []
    for image, label in zip(images, labels):
        picture = Image.fromarray(np.asarray(image, "uint8"))
        if scale != 1:
            picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
        cell = Image.new("RGB", (picture.width, picture.height + LABEL_HEIGHT), "white")
        cell.paste(picture, (0, LABEL_HEIGHT))
        ImageDraw.Draw(cell).text((1, 0), str(label), fill=(0, 0, 0))
        cells.append(np.asarray(cell))
    return np.stack(cells)


def grid_shape(count, height, width, columns=None, cell=64, pad=2):
    """The `(height, width)` in pixels of the PNG `filter_grid`/`activation_grid` write
    for `count` pictures of `height` x `width`."""
    scale = _cell_scale(height, width, cell)
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    return (rows * (height * scale + LABEL_HEIGHT + pad) + pad, columns * (width * scale + pad) + pad)


def filter_grid(pictures, path, filters=None, columns=None, cell=64):
    """Write filter pictures as one PNG grid, each labelled with its filter index.

    Args:
        pictures: uint8 array `(N, H, W, 3)` from `filter_pictures`.
        path: str or Path. The PNG, written atomically.
        filters: list of int or None. The labels: the pictures' filter indices
            (defaults to 0..N-1, what `filter_pictures` gives without `filters`).
        columns: int or None. Defaults to a square-ish grid.
        cell: int. Small pictures are enlarged (nearest) to at least this many pixels.

    Returns:
        The `Path` written; its size is `grid_shape(N, H, W, columns, cell)`.
    """
    from zoo import plots

    pictures = np.asarray(pictures)
    if pictures.ndim != 4 or len(pictures) == 0:
        raise ValueError(f"`pictures` must be a non-empty (N, H, W, 3) array. Received: shape {pictures.shape}")
    labels = list(range(len(pictures))) if filters is None else [int(f) for f in filters]
    if len(labels) != len(pictures):
        raise ValueError(f"`filters` must give one index per picture ({len(pictures)}). Received: {len(labels)}")
    scale = _cell_scale(pictures.shape[1], pictures.shape[2], cell)
    return plots.save_image(plots.tile(_labelled(pictures, labels, scale), columns=columns), path)


def colorize(maps, colormap="viridis"):
    """Each channel of `maps` `(h, w, C)` scaled to its own 0..1 range and coloured:
    uint8 `(C, h, w, 3)`. A constant (e.g. dead) channel is the colormap's bottom."""
    import matplotlib

    maps = np.moveaxis(np.asarray(maps, "float32"), -1, 0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    unit = np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)
    rgba = matplotlib.colormaps[colormap](unit)
    return np.round(rgba[..., :3] * 255).astype("uint8")


def activation_grid(maps, path, n=64, order="activity", columns=None, cell=64, colormap="viridis"):
    """Write one image's activation maps as one PNG grid, each labelled with its channel.

    Args:
        maps: float array `(h, w, C)` from `activation_maps`.
        path: str or Path. The PNG, written atomically.
        n: int or None. Show this many channels (all when None). Defaults to 64.
        order: `"activity"` (the most active channels first: highest mean activation,
            see `most_active`) or `"index"` (the layer's channel order).
        columns: int or None. Defaults to a square-ish grid.
        cell: int. Small maps are enlarged (nearest) to at least this many pixels.
        colormap: str. A matplotlib colormap; each channel is scaled to its own range.

    Returns:
        The `Path` written; its size is `grid_shape(shown, h, w, columns, cell)`.
    """
    from zoo import plots

    maps = np.asarray(maps, "float32")
    if maps.ndim != 3:
        raise ValueError(f"`maps` must be one image's (h, w, C) activations. Received: shape {maps.shape}")
    if order not in ("activity", "index"):
        raise ValueError(f"`order` must be 'activity' or 'index'. Received: order={order!r}")
    if n is not None:
        _check_positive("n", n)
    channels = most_active(maps, n) if order == "activity" else np.arange(maps.shape[-1])[:n]
    images = colorize(maps[..., channels], colormap)
    scale = _cell_scale(maps.shape[0], maps.shape[1], cell)
    return plots.save_image(plots.tile(_labelled(images, channels, scale), columns=columns), path)
