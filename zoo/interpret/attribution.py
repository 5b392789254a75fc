"""Where an image classifier looked: Grad-CAM, Grad-CAM++, gradients, SmoothGrad and
integrated gradients, for any Keras image model on any backend.

Every method is one or more gradients of the class's score (before the softmax) and a
formula from its paper, computed with NumPy on what the gradient returns:

- `gradcam` (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391): the last
  convolutional block's activations `A` weighted by the spatial mean of `dS/dA`,
  summed over channels, ReLU.
- `gradcam++` (Chattopadhay et al., 2018, https://arxiv.org/abs/1710.11063): per-pixel
  weights `g² / (2g² + ΣA·g³)` on the positive gradients instead of the plain mean.
- `saliency` (Simonyan et al., 2013, https://arxiv.org/abs/1312.6034): `max_c |dS/dx|`.
- `smoothgrad` (Smilkov et al., 2017, https://arxiv.org/abs/1706.03825): the gradient
  averaged over `samples` copies of the image with Gaussian noise (σ = `noise` × 255).
- `integrated-gradients` (Sundararajan et al., 2017, https://arxiv.org/abs/1703.01365):
  `(x - x₀) × mean_α dS/dx(x₀ + α(x - x₀))` from a black image `x₀`, `steps` points
  (midpoint rule), summed over channels; the positive part (evidence for the class).

Gradients are taken with the backend's own machinery (`tf.GradientTape`, `jax.grad`,
`torch.autograd`): Keras 3 has no backend-agnostic gradient. The rest is Keras ops.
"""

from __future__ import annotations

import contextlib

import numpy as np

from zoo.errors import OptionError
from zoo.interpret import graph

METHODS = ("gradcam", "gradcam++", "saliency", "smoothgrad", "integrated-gradients")
CAM_METHODS = ("gradcam", "gradcam++")
ALIASES = {"grad-cam": "gradcam", "gradcampp": "gradcam++", "grad-cam++": "gradcam++", "gradients": "saliency",
           "vanilla": "saliency", "ig": "integrated-gradients", "integrated_gradients": "integrated-gradients"}


def check_method(method):
    name = ALIASES.get(str(method).lower(), str(method).lower())
    if name not in METHODS:
        raise OptionError(f"`method` must be one of {', '.join(METHODS)}. Received: method={method!r}")
    return name


# ----------------------------------------------------------------------- the gradient
def value_and_gradient(fn, x):
    """`(aux, d value / dx)` for `fn(x) -> (value, aux)`, with the backend's autodiff."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value, aux = fn(x)
        return aux, tape.gradient(value, x)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        (_, aux), grad = jax.value_and_grad(fn, has_aux=True)(jnp.asarray(x))
        return aux, grad
    if backend == "torch":
        import torch

        x = torch.as_tensor(np.asarray(x)).to(keras.backend.get_device() or "cpu").requires_grad_(True)
        value, aux = fn(x)
        (grad,) = torch.autograd.grad(value, x)
        return aux, grad
    raise OptionError(f"Attribution needs gradients, which the {backend!r} backend does not give. "
                     "Use KERAS_BACKEND=tensorflow, jax or torch.")


def numpy(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


# ------------------------------------------------------------------ the forward pass
class Forward:
    """Runs `model` on float pixels `(N, H, W, 3)` (0-255), optionally tapping a layer.

    The class scores are logits when the model ends in a softmax (taken off for the
    pass), so one class's gradient is not mixed with every other class's.
    """

    def __init__(self, model):
        self.model = model
        self.integer_input = any(t in graph.input_dtype(model) for t in ("int", "bool"))
        self.pixel_layer = graph.pixel_layer(model) if self.integer_input else None

    def layer_output(self, pixels, layer):
        """`layer`'s output for float pixels, computing nothing after it."""
        record = []
        try:
            self(pixels, layer=layer, record=record, stop=True, logits=False)
        except graph.Stop:
            pass
        return record[-1]

    def __call__(self, pixels, layer=None, add=None, logits=True, record=None, stop=False):
        """`(scores, activation)`: scores `(N, classes)` float32; the tapped layer's
        output (or None)."""
        from keras import ops

        pixels = ops.cast(pixels, "float32")
        record = [] if record is None else record
        with contextlib.ExitStack() as stack:
            if self.integer_input:
                # The model's own input would round the pixels to integers and cut the
                # gradient: it gets zeros, and its first layer gets the float pixels.
                feed = ops.zeros(ops.shape(pixels), dtype=graph.input_dtype(self.model))
                stack.enter_context(graph.tapped(self.pixel_layer, replace_input=pixels))
            else:
                feed = pixels
            if layer is not None:
                stack.enter_context(graph.tapped(layer, add_to_output=add, record=record, stop=stop))
            if logits:
                stack.enter_context(graph.without_softmax(self.model))
            outputs = self.model(feed, training=False)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        activation = record[-1] if record else None
        return ops.cast(outputs, "float32"), activation

    def probabilities(self, pixels, batch_size=32):
        """Class probabilities (the model's own output) as NumPy, in batches."""
        chunks = [numpy(self(pixels[i:i + batch_size], logits=False)[0]) for i in range(0, len(pixels), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), "float32")


def _class_score(scores, class_ids):
    """Sum over the batch of each row's class score: its gradient is each image's own."""
    from keras import ops

    if isinstance(class_ids, (list, tuple, np.ndarray)):
        class_ids = np.asarray(class_ids, "int32")
    mask = ops.one_hot(ops.cast(class_ids, "int32"), ops.shape(scores)[-1])
    return ops.sum(scores * mask)


# ---------------------------------------------------------------------------- methods
def layer_gradient_tensors(forward, pixels, class_ids, layer):
    """`(A, dS/dA)` as backend tensors `(N, h, w, K)` (also inside a `tf.function`)."""
    from keras import ops

    try:  # the layer's output shape from the graph; a layer never called in one is run once
        symbolic = layer.output
        shape, dtype = (ops.shape(pixels)[0], *symbolic.shape[1:]), symbolic.dtype
        if None in shape[1:]:
            raise ValueError(shape)
    except (AttributeError, ValueError):
        activation = forward.layer_output(pixels, layer)
        shape, dtype = ops.shape(activation), activation.dtype
    zeros = ops.zeros(shape, dtype=dtype)

    def score(added):
        scores, tapped = forward(pixels, layer=layer, add=added)
        return _class_score(scores, class_ids), tapped

    return value_and_gradient(score, zeros)


def layer_gradients(forward, pixels, class_ids, layer):
    """`(A, dS/dA)` as NumPy float32 `(N, h, w, K)` for the tapped `layer`."""
    tapped, grads = layer_gradient_tensors(forward, pixels, class_ids, layer)
    return numpy(tapped).astype("float32"), numpy(grads).astype("float32")


def gradcam_from(activations, grads, xp=np):
    """Selvaraju et al., eq. 1-2: α_k = mean_ij dS/dA_ij^k, map = ReLU(Σ_k α_k A^k).
    `xp`: NumPy, or `keras.ops` for tensors (the exported `explain` signature)."""
    weights = xp.mean(grads, axis=(1, 2))
    return xp.maximum(xp.einsum("nhwk,nk->nhw", activations, weights), 0.0)


def gradcam_plus_plus_from(activations, grads):
    """Chattopadhay et al., eq. 19 with the exponential score: α_ij^k = g² / (2g² +
    Σ_ab A_ab^k g³), w_k = Σ_ij α_ij^k ReLU(g_ij), map = ReLU(Σ_k w_k A^k)."""
    g2 = grads ** 2
    g3 = g2 * grads
    denominator = 2.0 * g2 + activations.sum(axis=(1, 2), keepdims=True) * g3
    alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=denominator != 0)
    weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(1, 2))
    return np.maximum(np.einsum("nhwk,nk->nhw", activations, weights), 0.0)


def input_gradients(forward, pixels, class_ids):
    """dS/dx as NumPy `(N, H, W, 3)`."""

    def score(x):
        scores, _ = forward(x)
        return _class_score(scores, class_ids), scores

    _, grads = value_and_gradient(score, np.asarray(pixels, "float32"))
    return numpy(grads).astype("float32")


def _repeated(forward, images, class_id, make_inputs, count, batch_size):
    """Mean gradient over `count` inputs made from one image, in batches."""
    total = np.zeros(images.shape, "float32")
    done = 0
    while done < count:
        n = min(batch_size, count - done)
        batch = make_inputs(done, n)
        total += input_gradients(forward, batch, [class_id] * n).sum(axis=0)
        done += n
    return total / count


def attribute(model, pixels, class_ids, method="gradcam", layer=None, samples=25, noise=0.15, steps=32,
              batch_size=16, seed=0):
    """Raw (not normalised) maps for `pixels` `(N, H, W, 3)`, 0-255 floats.

    Returns `(N, h, w)` float32: the layer's resolution for the CAM methods, the image's
    for the gradient methods.
    """
    method = check_method(method)
    forward = Forward(model)
    pixels = np.asarray(pixels, "float32")
    class_ids = np.asarray(class_ids, "int64")
    maps = []
    if method in CAM_METHODS:
        layer = graph.find_layer(model, layer) if layer is not None else graph.last_conv_layer(model)
        combine = gradcam_from if method == "gradcam" else gradcam_plus_plus_from
        for start in range(0, len(pixels), batch_size):
            activations, grads = layer_gradients(forward, pixels[start:start + batch_size],
                                                 class_ids[start:start + batch_size], layer)
            maps.append(combine(activations, grads))
        return np.concatenate(maps).astype("float32")
    if method == "saliency":
        for start in range(0, len(pixels), batch_size):
            grads = input_gradients(forward, pixels[start:start + batch_size], class_ids[start:start + batch_size])
            maps.append(np.abs(grads).max(axis=-1))
        return np.concatenate(maps).astype("float32")
    rng = np.random.default_rng(seed)
    for image, class_id in zip(pixels, class_ids):
        if method == "smoothgrad":
            sigma = noise * 255.0

            def noisy(_, n, image=image):
                return image[None] + rng.normal(0.0, sigma, (n, *image.shape)).astype("float32")

            grads = _repeated(forward, image, int(class_id), noisy, samples, batch_size)
            maps.append(np.abs(grads).max(axis=-1))
        else:
            baseline = np.zeros_like(image)
            alphas = (np.arange(steps, dtype="float32") + 0.5) / steps

            def path(done, n, image=image):
                a = alphas[done:done + n, None, None, None]
                return baseline[None] + a * (image - baseline)[None]

            grads = _repeated(forward, image, int(class_id), path, steps, batch_size)
            maps.append(np.maximum(((image - baseline) * grads).sum(axis=-1), 0.0))
    return np.stack(maps).astype("float32")


def normalise(maps):
    """Each map scaled to [0, 1] by its maximum (an all-zero map stays zero)."""
    maps = np.asarray(maps, "float32")
    peak = maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0, "float32")
    scale = np.where(peak > 0, peak, 1.0).astype("float32")
    return maps / scale[:, None, None]


def resize_maps(maps, size):
    """Maps `(N, h, w)` resized (bilinear) to `size` `(H, W)`."""
    from PIL import Image

    height, width = size
    if maps.shape[1:] == (height, width):
        return np.asarray(maps, "float32")
    return np.stack([np.asarray(Image.fromarray(np.asarray(m, "float32"), mode="F").resize(
        (width, height), Image.BILINEAR)) for m in maps]).astype("float32")
