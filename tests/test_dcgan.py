"""The DCGAN kind: it learns real digits (LeNet-5 reads what it draws), a run killed with
kill -9 mid-epoch resumes with both optimizers, `zoo sample` draws a grid, and the
exported generator answers over REST and gRPC with the images the run draws locally.

The full recipe's figures (50 epochs, against the TensorFlow tutorial's DCGAN) are in
benchmarks/README.md; the short run here checks a looser bound.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from helpers import forked_zoo

import zoo
from zoo.errors import OptionError, ZooError
from helpers.trained_runs import GAN_EPOCHS

pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
# The run that is killed is the session's GAN run (tests/helpers/trained_runs.py): a tiny
# network (width 8, 8-number latents) in small batches, so that an epoch (180 steps)
# lasts long enough to be killed in the middle of it.
EPOCHS = GAN_EPOCHS
STEPS_PER_EPOCH = 180  # 1,437 training digits in batches of 8


def zoo_cli(*args, timeout=600):
    return forked_zoo.run(args, env=ENV, timeout=timeout)


# --------------------------------------------------------------------------- quality
def test_a_short_run_on_real_digits_draws_digits_lenet5_reads(tmp_path):
    # The benchmark's recipe in small: width 32 instead of 64, 25 epochs instead of 60.
    # Bound: at least 50 % of 1,000 samples read with confidence >= 0.9 (the benchmark:
    # 80 %), and at least 8 of the 10 digits with >= 3 % of them (the benchmark: all 10).
    started = time.perf_counter()
    run = zoo.train("dcgan", "digits", epochs=25, width=32, out=tmp_path / "run", verbose=0, no_tensorboard=True)
    seconds = time.perf_counter() - started
    scores = run.metrics["digits"]
    print(f"\nshort DCGAN run ({seconds:.0f} s): LeNet-5 confident on {scores['confident']:.1%} of "
          f"{scores['n']} samples; class shares {scores['class_shares']}; Frechet distance "
          f"{scores['frechet_distance']:.1f}")
    assert scores["n"] == 1000
    assert scores["confident"] >= 0.5, scores
    assert scores["classes_at_3_percent"] >= 8, scores
    # A finished run: the generator alone, the per-epoch grids, no checkpoints left.
    assert run.image_shape == (28, 28, 1) and run.latent_dim == 100
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        f"epoch-{e:03d}.png" for e in range(1, 26)]
    assert (tmp_path / "run" / "samples.png").is_file() and not (tmp_path / "run" / "checkpoints").exists()


# -------------------------------------------------------------- kill -9 and --resume
@pytest.fixture(scope="module")
def killed_and_resumed(gan_run):
    """The session's tiny GAN run, killed with SIGKILL as epoch 2 started (epoch 1's
    checkpoint and sample grid are written by then), then resumed through the CLI:
    (run dir, checkpoints/state.json when killed, output up to the kill, the resume)."""
    return gan_run.path, gan_run.state, gan_run.killed_output, gan_run.resumed


def test_a_run_killed_mid_epoch_resumes_with_both_optimizers(killed_and_resumed):
    run, killed_state, first_output, resumed = killed_and_resumed
    assert killed_state["epochs_done"] == 1, first_output[-3000:]
    # One GANOptimizer holding both Adams: its own 2 variables, then each Adam's step
    # count, learning rate and 2 slots per variable of its network.
    saved = killed_state["last_layout"]["optimizers"]
    gan = zoo.create("dcgan", width=8, latent_dim=8)
    d_count, g_count = len(gan.discriminator.trainable_variables), len(gan.generator.trainable_variables)
    assert list(saved) == ["optimizer"] and saved["optimizer"]["count"] == 2 + (2 + 2 * d_count) + (2 + 2 * g_count)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Epoch 2/{EPOCHS}" in resumed.stdout and f"Epoch 1/{EPOCHS}" not in resumed.stdout, resumed.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, EPOCHS + 1))
    # Each optimizer continued from its restored step count: a fresh one would stand at
    # (EPOCHS - 1) epochs' worth of steps.
    assert metrics["optimizer_steps"] == {"d_optimizer": EPOCHS * STEPS_PER_EPOCH,
                                          "g_optimizer": EPOCHS * STEPS_PER_EPOCH}
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"epoch-{e:03d}.png" for e in (1, 2, 3)]
    assert not (run / "checkpoints").exists()
    assert not [p for p in run.rglob("*") if ".tmp" in p.name], "the resumed run holds temporary files"


# ----------------------------------------------------------------------- zoo sample
def test_zoo_sample_writes_a_grid_and_a_seed_draws_the_same_images(killed_and_resumed, tmp_path):
    from PIL import Image

    run = killed_and_resumed[0]
    done = zoo_cli("sample", run, "--n", 16, "--out", tmp_path / "grid.png")
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(tmp_path / "grid.png") in done.stdout
    with Image.open(tmp_path / "grid.png") as grid:
        # 4 x 4 digits of 28 px, 2 px apart and around, drawn twice as large.
        assert grid.format == "PNG" and grid.size == (2 * (4 * 30 + 2),) * 2
    loaded = zoo.load_run(run)
    np.testing.assert_array_equal(loaded.sample(16, seed=3), loaded.sample(16, seed=3))
    assert not np.array_equal(loaded.sample(16, seed=3), loaded.sample(16, seed=4))
    with pytest.raises(OptionError, match="Received: n=0"):
        zoo.sample(run, n=0, out=tmp_path / "none.png")
    refused = zoo_cli("sample", run, "--n", 20000, "--out", tmp_path / "big.png")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr and "(given: 20000)" in refused.stderr


# ------------------------------------------------------------------ export and serve
def test_the_exported_generator_serves_latents_to_uint8_images_over_rest_and_grpc(killed_and_resumed, tmp_path):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from zoo.serving.server import ModelServer

    run = zoo.load_run(killed_and_resumed[0])
    version = zoo.export(run.path, tmp_path / "models", "digits-gan")
    shown = forked_zoo.python_run(["-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", version, "--all"], env=ENV, timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    default = shown.stdout.split("signature_def['serving_default']")[1]
    assert "inputs['latents']" in default and "DT_FLOAT" in default and "(-1, 8)" in default
    assert "outputs['images']" in default and "DT_UINT8" in default and "(-1, 28, 28, 1)" in default

    latents = run.latents(4, seed=5)
    local = run.sample(4, seed=5)
    with ModelServer(tmp_path / "models", port=0, grpc_port=0) as server:
        body = json.dumps({"instances": latents.tolist()}).encode()
        request = urllib.request.Request(f"{server.rest_url}/v1/models/digits-gan:predict", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            rest = np.array(json.loads(response.read())["predictions"])
        message = predict_pb2.PredictRequest()
        message.model_spec.name = "digits-gan"
        message.model_spec.signature_name = "serving_default"
        message.inputs["latents"].CopyFrom(tf.make_tensor_proto(latents))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_target))
        served = tf.make_ndarray(stub.Predict(message, timeout=60).outputs["images"])
    assert served.dtype == np.uint8 and served.shape == local.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(rest, served)
    # The same graph and weights; a pixel whose float lands on .5 may round the other way.
    difference = np.abs(served.astype(int) - local.astype(int))
    assert difference.max() <= 1 and np.mean(difference == 0) >= 0.999


# ------------------------------------------------------------------------------ JAX
JAX_SCRIPT = r"""
import json, sys
import keras, zoo, zoo.data
from zoo.training import Defaults, Tracking, fit


images = zoo.data.image_arrays("digits").train[:256]
def train(epochs, resume):
    gan = zoo.create("dcgan", width=8, latent_dim=8, seed=0)
    result = fit(gan, images, epochs=epochs, batch_size=64,
                 defaults=Defaults.own_loss(compile_args={"optimizer": gan.optimizers()}),
                 tracking=Tracking(run_dir=sys.argv[1], resume=resume, best=False, restore_best=False,
                                   tensorboard=False), verbose=0)
    return gan, result
gan, _ = train(2, False)
resumed, result = train(3, True)
print(json.dumps({"backend": keras.backend.backend(), "tensorflow_imported": "tensorflow" in sys.modules,
                  "steps": [int(resumed.d_optimizer.iterations), int(resumed.g_optimizer.iterations)],
                  "epochs": [h["epoch"] for h in result.history], "losses": result.history[-1]["d_loss"],
                  "dtype": str(resumed.sample(2).dtype)}))
"""


@pytest.mark.skipif(__import__("importlib").util.find_spec("jax") is None, reason="jax is not installed")
def test_the_gan_trains_and_resumes_on_jax_without_tensorflow(tmp_path):
    env = {**ENV, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "run")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax" and report["tensorflow_imported"] is False
    # 4 batches an epoch; the resumed third epoch continued both optimizers from 8 steps.
    assert report["steps"] == [12, 12] and report["epochs"] == [1, 2, 3]
    assert np.isfinite(report["losses"]) and report["dtype"] == "uint8"


# ------------------------------------------------------------------- spec and errors
def test_dcgan_is_registered_as_a_gan_with_its_parameter_count():
    assert zoo.list_models(task="gan") == ["dcgan"]
    gan = zoo.create("dcgan")
    spec = zoo.info("dcgan")
    assert gan.count_params() == spec["num_params"] and spec["paper"] == "https://arxiv.org/abs/1511.06434"
    assert tuple(gan.sampler().outputs[0].shape) == (None, 28, 28, 1) and gan.sampler().outputs[0].dtype == "uint8"
    big = zoo.create("dcgan", image_size=64, channels=3, width=8, latent_dim=16)
    assert big.sample(2).shape == (2, 64, 64, 3) and big.sample(2).dtype == np.uint8
    assert big.discriminator(np.zeros((2, 64, 64, 3), "float32")).shape == (2, 1)


@pytest.mark.parametrize("options, pattern", [
    (dict(image_size=30), "Received: image_size=30"),
    (dict(channels=2), "Received: channels=2"),
    (dict(latent_dim=0), "Received: latent_dim=0"),
])
def test_bad_architecture_options_are_named(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        zoo.create("dcgan", **options)


def test_bad_task_options_are_named_before_anything_trains(tmp_path):
    with pytest.raises(OptionError, match="Received: image_size=30"):
        zoo.train("dcgan", "digits", image_size=30, out=tmp_path / "a", verbose=0)
    with pytest.raises(OptionError, match="early_stopping=3"):
        zoo.train("dcgan", "digits", early_stopping=3, out=tmp_path / "b", verbose=0)
    with pytest.raises(ZooError, match="data"):
        zoo.train("dcgan", out=tmp_path / "c", verbose=0)


def test_the_whole_gan_and_its_generator_save_as_keras_files(tmp_path):
    import keras

    gan = zoo.create("dcgan", width=8, latent_dim=8, seed=3)
    latents = np.random.default_rng(0).standard_normal((2, 8)).astype("float32")
    gan.save(tmp_path / "gan.keras")
    copy = keras.saving.load_model(tmp_path / "gan.keras", compile=False)
    assert type(copy).__name__ == "DCGAN" and copy.get_config()["seed"] == 3 and copy.label_smoothing == 0.1
    np.testing.assert_array_equal(np.asarray(copy(latents)), np.asarray(gan(latents)))
    gan.sampler().save(tmp_path / "generator.keras")
    generator = keras.saving.load_model(tmp_path / "generator.keras", compile=False)
    np.testing.assert_array_equal(np.asarray(generator(latents)), np.asarray(gan.sampler()(latents)))
