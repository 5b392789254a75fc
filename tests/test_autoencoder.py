"""Autoencoders on real images (scikit-learn's handwritten digits, scikit-image's
photos): denoising measured in PSNR, the VAE's held-out ELBO, the encoder as a feature
extractor, and the exports served."""

import json
import urllib.request

import numpy as np
import pytest

from helpers import forked_zoo
from PIL import Image

import zoo
from zoo.tasks.autoencoder import add_noise


pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "denoise"
    return zoo.train("autoencoder", "digits", out=out, noise=0.3, epochs=6, lr=3e-3, verbose=0)


@pytest.fixture(scope="module")
def vae(vae_run):
    """The session's VAE on digits (5 epochs, an 8-number code, input noise 0.2; killed in
    epoch 2 and resumed: tests/helpers/trained_runs.py)."""
    return zoo.load_run(vae_run.path)


@pytest.fixture(scope="module")
def held_out():
    from zoo.data import image_arrays

    return image_arrays("digits").val  # the split LeNet-5's weights and every digits recipe hold out


def test_denoising_gains_6_db_on_held_out_digits(denoiser, held_out):
    from skimage.metrics import peak_signal_noise_ratio

    # scikit-image's PSNR, image by image, on held-out digits with Gaussian noise (std 0.3).
    noisy = add_noise(held_out, 0.3, seed=7)
    denoised = denoiser.reconstruct(noisy)
    before = np.mean([peak_signal_noise_ratio(c, n, data_range=255) for c, n in zip(held_out, noisy)])
    after = np.mean([peak_signal_noise_ratio(c, d, data_range=255) for c, d in zip(held_out, denoised)])
    print(f"held-out PSNR: noisy {before:.2f} dB, denoised {after:.2f} dB")
    assert after >= before + 6.0
    assert denoiser.metrics["psnr_gain_db"] >= 6.0
    for name in ("denoising.png", "reconstructions.png", "curves.png", "model.keras"):
        assert (denoiser.path / name).is_file(), name
    assert denoised.dtype == np.uint8 and denoised.shape == held_out.shape


def test_vae_reports_a_held_out_elbo_that_improves_and_draws_samples(vae):
    elbo = vae.metrics["val_elbo"]
    assert len(elbo) == 5 and elbo[-1] > elbo[0]
    assert vae.metrics["best_val_elbo"] == pytest.approx(max(elbo))
    history = vae.metrics["history"][-1]
    # The loss is the negative ELBO: reconstruction + KL.
    assert history["val_loss"] == pytest.approx(history["val_reconstruction"] + history["val_kl"], rel=1e-3)
    with Image.open(vae.path / "samples.png") as grid:
        assert grid.size == (2 * (8 * 30 + 2),) * 2  # 8x8 digits of 28 px, 2-px gaps, doubled
    assert (vae.path / "interpolation.png").is_file()
    samples = vae.sample(16, seed=3)
    assert samples.shape == (16, 28, 28, 1) and samples.dtype == np.uint8
    np.testing.assert_array_equal(samples, vae.sample(16, seed=3))


def test_a_plain_autoencoder_refuses_to_sample(denoiser):
    from zoo.errors import ZooError

    with pytest.raises(ZooError, match="variational"):
        denoiser.sample(4)


def test_the_encoder_is_a_feature_extractor_for_transfer(denoiser):
    from zoo.data.digits import load_digits_28, train_test_split_digits
    from zoo.transfer import fine_tune, replace_head

    x, x_val, y, y_val = train_test_split_digits(*load_digits_28())
    model = replace_head(denoiser.encoder, 10)
    assert model.get_layer("features").output.shape[-1] == 32  # the head sits on the code itself
    fine_tune(model, (x[..., :1], y), (x_val[..., :1], y_val), epochs=0, freeze_epochs=8, base_lr=1e-2, verbose=0)
    accuracy = np.mean(np.argmax(model.predict(x_val[..., :1], verbose=0), axis=-1) == y_val)
    print(f"held-out accuracy of a linear head on the denoiser's 32-number codes: {accuracy:.3f}")
    assert accuracy >= 0.8


def test_exports_reconstruct_encode_and_decode_over_rest_and_grpc(denoiser, vae, held_out, tmp_path):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from zoo.serving.server import ModelServer

    zoo.export(denoiser.path, tmp_path / "models", "denoiser")
    version = zoo.export(vae.path, tmp_path / "models", "vae")
    show = forked_zoo.python_run(["-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", version, "--all"], timeout=120, check=True).stdout
    for signature in ("serving_default", "encode", "decode"):
        assert f"signature_def['{signature}']" in show
    assert "outputs['reconstructions']" in show and "DT_UINT8" in show

    noisy = add_noise(held_out[:4], 0.3)
    expected = denoiser.reconstruct(noisy)
    codes = np.random.default_rng(0).standard_normal((3, 8)).astype("float32")
    with ModelServer(tmp_path / "models", port=0, grpc_port=0) as server:
        body = json.dumps({"instances": noisy.astype("float32").tolist()}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{server.rest_url}/v1/models/denoiser:predict",
                                                           data=body), timeout=60) as response:
            served = np.array(json.loads(response.read())["predictions"])
        assert np.abs(served - expected.astype(int)).max() <= 1

        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_target))
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = "vae", "decode"
        request.inputs["codes"].CopyFrom(tf.make_tensor_proto(codes))
        images = tf.make_ndarray(stub.Predict(request, timeout=60).outputs["images"])
        assert images.dtype == np.uint8 and images.shape == (3, 28, 28, 1)
        assert np.abs(images.astype(int) - vae.decode(codes).astype(int)).max() <= 1


def test_a_folder_of_photos_trains_from_the_command_line_and_bad_files_are_listed(tmp_path):
    from skimage import data

    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = Image.fromarray(getattr(data, name)())
        for i in range(3):  # three crops each: twelve photos
            w, h = image.size
            image.crop((i * w // 6, 0, w // 2 + i * w // 6, h)).save(folder / f"{name}{i}.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "run"
    result = forked_zoo.run(["train", "autoencoder", "--data", tmp_path / "photos", "--image-size", "32", "--epochs", "1",
                             "--latent-dim", "16", "--out", out], timeout=300)
    assert result.returncode == 0, result.stderr
    assert "broken.jpg" in result.stderr and "broken.jpg" in (out / "skipped.txt").read_text()
    config = json.loads((out / "run.json").read_text())
    assert config["image_shape"] == [32, 32, 3] and config["num_train"] + config["num_val"] == 12
    run = zoo.load_run(out)
    assert run.reconstruct(np.zeros((2, 32, 32, 3), "uint8")).shape == (2, 32, 32, 3)
