"""AlexNet (Krizhevsky et al., 2012), https://papers.nips.cc/paper/4824.

Variant: single-stream AlexNet as in Krizhevsky's "One weird trick" (2014,
https://arxiv.org/abs/1404.5997) and torchvision: the two GPU streams of the 2012 paper
are merged into one, with 64/192/384/256/256 filters and no local response
normalisation.
- Input: 224x224 RGB uint8; preprocessing scales to [0, 1] and applies the ImageNet
  mean/std ("torch" mode). 2-pixel zero padding before the 11x11 stride-4 convolution
  gives the paper's 55x55 first feature map.
- Head: dropout 0.5, dense 4096, dropout 0.5, dense 4096, dense 1000 softmax.
- 61,100,840 parameters (equal to torchvision's alexnet).
No pretrained weights are published for this Keras model yet.
"""

import functools

from zoo.architectures.preprocessing import preprocess_input as _preprocess

preprocess_input = functools.partial(_preprocess, mode="torch")


def alexnet(inputs, include_top=True, classes=1000):
    from keras import layers

    x = layers.ZeroPadding2D(2, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 11, strides=4, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(192, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dropout(0.5, name="drop6")(x)
        x = layers.Dense(4096, activation="relu", name="fc6")(x)
        x = layers.Dropout(0.5, name="drop7")(x)
        x = layers.Dense(4096, activation="relu", name="fc7")(x)
        # float32 even under mixed precision, so the probabilities are exact and sum to one.
        x = layers.Dense(classes, activation="softmax", dtype="float32", name="predictions")(x)
    return x
