"""LeNet-5 (LeCun et al., 1998), http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf.

Variant: the common modern reading of LeNet-5 for 28x28 digits (MNIST layout).
- Input: 28x28 RGB uint8; the in-graph preprocessing turns it into one grayscale channel
  in [0, 1], light ink on a dark ground (images with a light background are inverted).
- C1: 6 filters 5x5, "same" padding (the 32x32 border of the paper), ReLU;
  S2: 2x2 average pooling; C3: 16 filters 5x5, ReLU, full connection table (the
  paper's sparse C3 table is dropped); S4: 2x2 average pooling;
  C5/F6: dense 120 and 84, ReLU; output: dense 10, softmax (not the RBF units).
- Single stream, 61,706 parameters.

Shipped weights `digits`: trained on scikit-learn's 8x8 handwritten digits upsampled to
28x28 (`python -m zoo.tasks.shipped_weights lenet5`, see weights/README.md).
"""

import functools

from zoo.architectures.preprocessing import preprocess_input as _preprocess

preprocess_input = functools.partial(_preprocess, mode="digits")


def lenet5(inputs, include_top=True, classes=10):
    from keras import layers

    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="c1")(inputs)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation="relu", name="c3")(x)
    x = layers.AveragePooling2D(2, name="s4")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="relu", name="c5")(x)
    x = layers.Dense(84, activation="relu", name="f6")(x)
    if include_top:
        # float32 even under mixed precision, so the probabilities are exact and sum to one.
        x = layers.Dense(classes, activation="softmax", dtype="float32", name="predictions")(x)
    return x
