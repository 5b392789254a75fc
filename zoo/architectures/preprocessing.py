"""Input preprocessing as a Keras layer, so a model takes raw uint8 RGB images.

Putting normalisation inside the graph means a saved or exported model carries it:
clients send pixels, never "the right mean and std". `preprocess_input` gives the same
arithmetic for users who want it outside a model (it matches keras.applications').

The layer is registered with Keras as `zoo>Preprocess` when this module is imported
(the architecture families and `zoo.runs.load_model` import it).
"""

import keras
import numpy as np
from keras import ops

# Per-channel statistics the published ImageNet weights were trained with.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

MODES = {
    "caffe": "RGB to BGR, then subtract the ImageNet BGR mean (VGG, ResNet v1)",
    "tf": "scale to [-1, 1] (Inception)",
    "torch": "scale to [0, 1], then ImageNet mean/std (AlexNet)",
    "unit": "scale to [0, 1]",
    "digits": "grayscale in [0, 1], inverted when the background is light (LeNet)",
    "raw": "pixels as float 0-255: the model normalises inside (EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3)",
}


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(
            f"`mode` must be one of {sorted(MODES)}. Received: mode={mode!r}"
        )


def _apply(x, mode, xp):
    """The one definition of each mode, for both numpy (`xp=np`) and keras.ops."""
    if mode == "caffe":
        x = x[..., ::-1] - xp.asarray(CAFFE_BGR_MEAN, dtype="float32")
    elif mode == "tf":
        x = x / 127.5 - 1.0
    elif mode == "torch":
        x = (x / 255.0 - xp.asarray(TORCH_MEAN, dtype="float32")) / xp.asarray(
            TORCH_STD, dtype="float32"
        )
    elif mode == "unit":
        x = x / 255.0
    elif mode == "digits":
        gray = xp.mean(x, axis=-1, keepdims=True) / 255.0
        # Training digits are light ink on a dark ground (MNIST's convention); a
        # photo or scan of a digit on paper is the opposite, so flip those.
        background = xp.mean(gray, axis=(1, 2, 3), keepdims=True)
        x = xp.where(background > 0.5, 1.0 - gray, gray)
    return x


def preprocess_input(x, mode):
    """Preprocess a batch of RGB images (0–255, channels last) with numpy.

    Args:
        x: array-like of shape `(N, H, W, 3)` (or `(H, W, 3)`), values in 0–255.
        mode: str. One of `zoo.architectures.preprocessing.MODES`.

    Returns:
        float32 numpy array, as the model's first layer would see it.
    """
    _check_mode(mode)
    x = np.asarray(x, dtype="float32")
    single = x.ndim == 3
    if single:
        x = x[None]
    out = _apply(x, mode, np).astype("float32")
    return out[0] if single else out


class _KerasOps:
    """keras.ops under the names `_apply` uses (numpy's, `asarray` aside)."""

    asarray = staticmethod(lambda value, dtype: ops.convert_to_tensor(value, dtype=dtype))
    mean = staticmethod(ops.mean)
    where = staticmethod(ops.where)


@keras.saving.register_keras_serializable(package="zoo")
class Preprocess(keras.layers.Layer):
    """Casts uint8 (or float) RGB pixels to float32 and normalises them for a model.

    Args:
        mode: str. One of `zoo.architectures.preprocessing.MODES`.
    """

    def __init__(self, mode, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        _check_mode(mode)
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        return _apply(x, self.mode, _KerasOps)

    def compute_output_shape(self, input_shape):
        if self.mode == "digits":
            return (*input_shape[:-1], 1)
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
