"""TF Hub modules as Keras 3 layers (`zoo.transfer.hub_layer`), on SavedModels the test
writes: a hub-style `tf.Module` (trainable and non-trainable variables,
`__call__(x, training)` with a dropout that depends on `training`, a regularisation
loss) and a Keras export. No network."""

import os

import numpy as np
import pytest

from helpers import forked_zoo  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from zoo.errors import OptionError, ZooError  # noqa: E402
from zoo.transfer import hub_layer  # noqa: E402

pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)


REGULARISATION = 0.01


class HubStyleModule(tf.Module):
    """What a reusable TF2 hub SavedModel holds (tfhub.dev's "reusable SavedModel" API)."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([4, 8], seed=[1, 2]), name="kernel")
        self.bias = tf.Variable(tf.zeros([8]), name="bias")
        self.scale = tf.Variable(tf.fill([8], 1.5), trainable=False, name="scale")  # like BN statistics
        self.regularization_losses = [
            tf.function(lambda: REGULARISATION * tf.reduce_sum(self.kernel ** 2), input_signature=[])]

    @tf.function
    def __call__(self, x, training=False):
        hidden = tf.matmul(x, self.kernel) + self.bias
        if training:
            hidden = tf.nn.dropout(hidden, rate=0.5)
        return tf.nn.relu(hidden) * self.scale


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hub") / "feature_vector"
    module = HubStyleModule()
    for training in (True, False):
        module.__call__.get_concrete_function(tf.TensorSpec([None, 4], tf.float32), training=training)
    tf.saved_model.save(module, str(path))
    return path


@pytest.fixture(scope="module")
def keras_export_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("hub") / "keras_export"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu")])
    model.export(str(path), verbose=False)
    return path


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((128, 4), dtype=np.float32)
    return x, (x[:, 0] + x[:, 1] > x[:, 2] + x[:, 3]).astype("int64")


def classifier(layer):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))


def train(model, data, epochs=8):
    keras.utils.set_random_seed(1)
    model.compile(keras.optimizers.Adam(0.02), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model.fit(*data, epochs=epochs, batch_size=32, verbose=0).history["loss"]


@pytest.mark.parametrize("source", ["module", "keras export"])
def test_trainable_variables_train_the_others_stay_and_the_loss_falls(source, module_dir, keras_export_dir, data):
    layer = hub_layer(module_dir if source == "module" else keras_export_dir, trainable=True)
    trainable = [v for v in layer.weights if v.trainable]
    frozen = [v for v in layer.weights if not v.trainable]
    assert trainable and (frozen or source == "keras export")
    before = {v.path: v.numpy().copy() for v in layer.weights}
    losses = train(classifier(layer), data)
    assert losses[-1] < losses[0] * 0.8, losses
    assert all(not np.array_equal(before[v.path], v.numpy()) for v in trainable)
    assert all(np.array_equal(before[v.path], v.numpy()) for v in frozen)


def test_not_trainable_keeps_every_variable_bit_identical(module_dir, data):
    layer = hub_layer(module_dir, trainable=False)
    assert layer.weights and not layer.trainable_weights
    before = [v.numpy().copy() for v in layer.weights]
    model = classifier(layer)
    train(model, data, epochs=3)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, layer.weights))
    assert model.layers[-1].kernel.trainable  # the new head trained alone


def test_training_reaches_the_module_and_its_regularisation_loss_is_added(module_dir, data):
    layer = hub_layer(module_dir, trainable=True)
    x = data[0][:8]
    inference = layer(x, training=False).numpy()
    np.testing.assert_array_equal(inference, layer(x).numpy())  # inference: no dropout, deterministic
    dropped = layer(x, training=True).numpy()
    assert (dropped == 0).mean() > (inference == 0).mean() + 0.2  # dropout acted
    assert len(layer.losses) == 1
    kernel = next(v for v in layer.weights if "kernel" in v.name).numpy()
    np.testing.assert_allclose(float(layer.losses[0]), REGULARISATION * (kernel ** 2).sum(), rtol=1e-5)
    # Frozen, the module runs as in inference even while the model trains, and adds no loss.
    frozen = hub_layer(module_dir, trainable=False)
    assert not frozen.losses and frozen(x, training=True).numpy().tolist() == inference.tolist()


def test_saves_loads_exports_and_serves_with_the_same_outputs(module_dir, data, tmp_path):
    from zoo.serving.store import Servable

    model = classifier(hub_layer(module_dir, trainable=True))
    train(model, data, epochs=2)
    expected = model.predict(data[0], verbose=0)
    model.save(tmp_path / "hubbed.keras")
    reloaded = keras.saving.load_model(tmp_path / "hubbed.keras")
    np.testing.assert_allclose(reloaded.predict(data[0], verbose=0), expected, rtol=1e-6)
    # zoo's loader knows the layer in a fresh process (the file names the module's path).
    import subprocess
    import sys

    script = ("import sys, numpy as np; from zoo.runs import load_model_file; "
              "m = load_model_file(sys.argv[1]); np.save(sys.argv[2], m.predict(np.load(sys.argv[3]), verbose=0))")
    np.save(tmp_path / "x.npy", data[0])
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "hubbed.keras"), str(tmp_path / "y.npy"),
                    str(tmp_path / "x.npy")], check=True, timeout=120,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6)
    path = zoo.export(model, tmp_path / "models", "hubbed")
    served = Servable("hubbed", 1, path).predict("serving_default", {"inputs": data[0]})
    np.testing.assert_allclose(served["outputs"], expected, rtol=1e-5, atol=1e-6)


def test_what_cannot_work_is_one_clear_error(tmp_path, module_dir, monkeypatch):
    tf1 = tmp_path / "tf1_module"
    tf1.mkdir()
    (tf1 / "tfhub_module.pb").write_bytes(b"")
    (tf1 / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ZooError, match="TF1 hub module"):
        hub_layer(tf1)

    class Nothing(tf.Module):
        def __init__(self):
            super().__init__()
            self.v = tf.Variable(1.0)

    tf.saved_model.save(Nothing(), str(tmp_path / "nothing"))
    with pytest.raises(ZooError, match="nothing to call"):
        hub_layer(tmp_path / "nothing")
    with pytest.raises(ZooError, match="No SavedModel at"):
        hub_layer(tmp_path / "missing")
    with pytest.raises(ZooError, match="returns one tensor"):
        hub_layer(module_dir, output_key="default")(np.zeros((1, 4), "float32"))
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(OptionError, match="KERAS_BACKEND=tensorflow"):
        hub_layer(module_dir)


class ImageFeatureVector(tf.Module):
    """A hub-style image feature-vector module: float RGB in [0, 1] of any size → [N, 16]."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, 3, 16], seed=[3, 4]) * 0.5, name="kernel")
        self.bias = tf.Variable(tf.zeros([16]), name="bias")
        self.shift = tf.Variable(tf.fill([16], 0.1), trainable=False, name="moving_mean")

    @tf.function
    def __call__(self, images, training=False):
        hidden = tf.nn.relu(tf.nn.conv2d(images, self.kernel, 2, "SAME") + self.bias - self.shift)
        if training:
            hidden = tf.nn.dropout(hidden, rate=0.1)
        return tf.concat([tf.reduce_mean(hidden, axis=[1, 2]), tf.reduce_max(hidden, axis=[1, 2])], axis=-1)


@pytest.fixture(scope="module")
def image_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("hub") / "image_feature_vector"
    module = ImageFeatureVector()
    for training in (True, False):
        module.__call__.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.float32), training=training)
    tf.saved_model.save(module, str(path))
    return path


def test_create_hub_model_is_a_uint8_classifier_with_the_module_as_its_base(image_module):
    model = zoo.create(f"hub:{image_module}", num_classes=3, input_shape=(32, 32, 3))
    assert model.inputs[0].dtype == "uint8" and model.output.shape == (None, 3)
    assert any(layer.name == "hub_module" for layer in model.layers)
    probabilities = model.predict(np.zeros((2, 32, 32, 3), "uint8"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ZooError, match="feature extractor"):
        zoo.create(f"hub:{image_module}")
    with pytest.raises(ZooError, match="carries its own weights"):
        zoo.create(f"hub:{image_module}", num_classes=3, weights="imagenet")


def test_zoo_finetune_with_a_hub_module_runs_exports_and_serves(image_module, tmp_path, digits):
    import json

    from helpers.digit_folders import write_folder
    from zoo.serving.store import Servable

    x_train, x_test, y_train, y_test = digits
    data = write_folder(tmp_path / "data", x_train, y_train, classes=(0, 1), per_class=30)
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = forked_zoo.run(["finetune", data, "--model", f"hub:{image_module}", "--epochs", "2", "--freeze-epochs", "1",
                           "--image-size", "32", "--batch-size", "16", "--lr", "1e-2", "--out", out], env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(h["epoch"], h["phase"]) for h in metrics["history"]] == [(1, 1), (2, 2), (3, 2)]
    assert f"hub:{image_module}" in (out / "run.json").read_text()
    run = zoo.load_run(out)
    path = zoo.export(out, tmp_path / "models", "hubbed")
    from PIL import Image

    image = np.stack([np.asarray(Image.fromarray(x_test[y_test == c][0]).resize((32, 32))) for c in (0, 1)])
    served = Servable("hubbed", 1, path).predict("serving_uint8", {"images": image})
    np.testing.assert_allclose(served["probabilities"], run.model.predict(image, verbose=0), rtol=1e-5, atol=1e-6)
