"""Segmentation: a U-Net decoder on registry encoders, the segmentation folder, the
`image-segmentation` task (`zoo train segmenter`), its scores, predictions and export.

The learning test uses real photos with masks known by construction
(tests/helpers/segmentation_set.py: objects cut from scikit-image photos — chelsea's
face, the coffee cup, the astronaut, the rocket, a coin — pasted on others), trains a
U-Net on a small four-stage encoder from scratch, and scores held-out images with the
test's own IoU formula. The shared task checks (interrupt and resume, `.keras`, export
and a served request) are in tests/test_tasks.py's `KIND_CASES`; the kill -9 in the
large tier there.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from helpers import forked_zoo
from test_trust_cli import png_claiming

import zoo  # noqa: E402
from tests.helpers import segmentation_set as objects  # noqa: E402

NUM_CLASSES = len(objects.CLASSES)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`zoo.train("segmenter", ...)` of a U-Net on `tiny_encoder`, from scratch, on 400
    pasted-object photos at 64 px (20 % held out for the best epoch): 10 epochs."""
    objects.register_tiny_encoder()
    images, masks = objects.make_set(400, seed=0)
    data = objects.write_folder(tmp_path_factory.mktemp("objects") / "data", images, masks)
    return zoo.train("segmenter", data, model="tiny_encoder", weights="none", epochs=10, batch_size=16, lr=3e-3,
                     out=tmp_path_factory.mktemp("runs") / "objects", verbose=0)


@pytest.fixture(scope="module")
def held_out():
    """Images neither training nor validation saw (another seed), with their masks."""
    return objects.make_set(120, seed=1)


# ------------------------------------------------------------------------ the model
# The default tier takes the three kinds of stage layout (residual stages at strides 2
# to 32, a stem at stride 4, valid padding); the rest are built with --run_deep.
@pytest.mark.parametrize("name, size, strides", [
    ("resnet50", 64, [2, 4, 8, 16, 32]), ("convnext_tiny", 64, [4, 8, 16, 32]), ("inception_v3", 96, None),
    pytest.param("vgg16", 64, [2, 4, 8, 16, 32], marks=pytest.mark.deep),
    pytest.param("mobilenet_v3_small", 64, [2, 4, 8, 16, 32], marks=pytest.mark.deep),
    pytest.param("efficientnet_b0", 64, [2, 4, 8, 16, 32], marks=pytest.mark.deep)])
def test_every_family_gets_a_unet_on_its_stages(name, size, strides):
    from zoo.transfer import freeze
    from zoo.transfer.freeze import head_layers
    from zoo.transfer.segmentation import feature_pyramid

    model = zoo.create(name, weights=None, task="segmentation", num_classes=5, input_shape=(size, size, 3))
    assert tuple(model.output.shape) == (None, size, size, 5) and model.inputs[0].dtype == "uint8"
    base = zoo.create(name, weights=None, include_top=False, input_shape=(size, size, 3))
    pyramid = feature_pyramid(base)
    found = [round(stride) for stride, _, _ in pyramid]
    if strides is not None:
        assert found == strides, [(s, n) for s, n, _ in pyramid]
    else:  # Inception's valid padding: 47, 21, 9, 4, 1 pixels at 96 px
        assert len(found) >= 4 and found == sorted(found)
    # The decoder is the head: frozen encoder first, as for a classifier.
    freeze(model)
    training = [layer.name for layer in model.layers if layer.trainable_weights]
    assert head_layers(model) and training and all(name.startswith("head_") for name in training), training
    probabilities = model.predict(np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype("uint8"),
                                  verbose=0)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def test_a_model_without_stages_is_refused_in_one_line():
    import keras

    from zoo.transfer import replace_head

    inputs = keras.Input((32,), dtype="float32")
    flat = keras.Model(inputs, keras.layers.Dense(8)(inputs))
    with pytest.raises(ValueError, match="fixed input size|stages"):
        replace_head(flat, task="segmentation", num_classes=3)
    with pytest.raises(ValueError, match="task"):
        replace_head(flat, task="detection", num_classes=3)


def test_the_loss_and_metrics_are_the_formulas_with_pixels_ignored():
    from zoo.training import Defaults

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 8, 8, 4)).astype("float32")
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    truth = rng.integers(0, 4, (3, 8, 8)).astype("uint8")
    truth[:, :2] = 255  # a band ignored
    truth[0] = 255  # an image ignored whole: it must not dilute the mean
    defaults = Defaults.segmenter(4)
    counted = truth != 255
    picked = np.take_along_axis(probabilities, np.where(counted, truth, 0)[..., None].astype(int), -1)[..., 0]
    expected_loss = -np.log(picked[counted]).mean()
    assert abs(float(defaults.loss(truth, probabilities)) - expected_loss) < 1e-5
    accuracy, mean_iou = defaults.metrics
    accuracy.update_state(truth, probabilities)
    predicted = probabilities.argmax(-1)
    assert abs(float(accuracy.result()) - (predicted == truth)[counted].mean()) < 1e-6
    mean_iou.update_state(truth, probabilities)
    assert abs(float(mean_iou.result()) - objects.mean_iou(truth, predicted, 4)) < 1e-5


# ------------------------------------------------------------------------- the data
def test_bad_pairs_are_one_line_each_and_the_rest_are_used(tmp_path):
    from zoo.data.masks import scan_segmentation_folder

    images, masks = objects.make_set(10, seed=3)
    root = objects.write_folder(tmp_path / "data", images, masks)
    Image.fromarray(masks[0]).resize((32, 32)).save(root / "masks" / "0000.png")  # another size
    beyond = masks[1].copy()
    beyond[0, 0] = 9  # codes.txt names 6 classes
    Image.fromarray(beyond).save(root / "masks" / "0001.png")
    (root / "masks" / "0002.png").unlink()  # an image without its mask
    Image.fromarray(images[3]).save(root / "masks" / "0003.png")  # RGB colours, not indices
    (root / "images" / "0004.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a broken image
    (root / "masks" / "stray.png").write_bytes((root / "masks" / "0005.png").read_bytes())  # a mask alone
    report = scan_segmentation_folder(root, validation_split=0.2, seed=0, verbose=False)
    reasons = {str(s.path).split("/")[-2] + "/" + str(s.path).split("/")[-1]: s.reason for s in report.skipped}
    assert set(reasons) == {"images/0000.png", "images/0001.png", "images/0002.png", "images/0003.png",
                            "images/0004.png", "masks/stray.png"}, reasons
    assert "32x32, the image 64x64" in reasons["images/0000.png"]
    assert "class index 9" in reasons["images/0001.png"] and "codes.txt" in reasons["images/0001.png"]
    assert "no mask" in reasons["images/0002.png"]
    assert "RGB" in reasons["images/0003.png"]
    assert all("\n" not in reason for reason in reasons.values())
    assert report.num_train + report.num_val == 5 and report.classes == list(objects.CLASSES)
    # And through the command line: the run trains on the rest and keeps the list.
    out = tmp_path / "run"
    result = forked_zoo.run(["train", "segmenter", "--data", root, "--model", "lenet5", "--weights", "none",
                             "--epochs", "1", "--batch-size", "4", "--out", out, "--no-tensorboard"], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0001.png" in result.stderr and "class index 9" in result.stderr
    assert "0001.png" in (out / "skipped.txt").read_text()
    assert len(json.loads((out / "metrics.json").read_text())["skipped"]) == 6


def test_an_unusable_folder_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    result = forked_zoo.run(["train", "segmenter", "--data", tmp_path, "--model", "lenet5", "--epochs", "1",
                             "--out", tmp_path / "run"], timeout=300)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "masks/" in result.stderr


def test_augmentation_moves_each_mask_with_its_image():
    import tensorflow as tf

    from zoo.data.masks import augment_pair

    images, masks = objects.make_set(6, seed=4, ignore_border=False)
    for index in range(6):
        # The mask drawn into the image itself: wherever the augmented image shows it,
        # the augmented mask must say the same.
        marked = images[index].copy()
        marked[..., 0] = np.where(masks[index] > 0, 255, 0)
        for seed in range(4):
            image, mask = augment_pair(tf.constant(marked), tf.constant(masks[index]), seed=seed)
            drawn = np.asarray(image)[..., 0] > 127
            agree = np.mean(drawn == (np.asarray(mask) > 0))
            assert agree > 0.97, (index, seed, agree)
            assert set(np.unique(np.asarray(mask))) <= set(np.unique(masks[index]))  # indices, never blends


# ---------------------------------------------------------------------- learning
def test_a_unet_learns_the_pasted_objects(run, held_out):
    images, masks = held_out
    predicted = np.stack(run.masks(list(images)))
    per_class = objects.iou_per_class(masks, predicted, NUM_CLASSES)
    mean = objects.mean_iou(masks, predicted, NUM_CLASSES)
    print(f"\nheld-out mean IoU {mean:.3f}; per class "
          + ", ".join(f"{name} {iou:.3f}" for name, iou in zip(objects.CLASSES, per_class)))
    assert mean >= 0.80, per_class
    assert np.all(per_class > 0.5), per_class
    # metrics.json: zoo's scores of the validation images are the test's formula of them.
    metrics = run.metrics
    assert set(metrics["per_class"]) == set(objects.CLASSES)
    assert abs(metrics["mean_iou"] - np.nanmean([c["iou"] for c in metrics["per_class"].values()])) < 1e-9
    assert metrics["monitor"] == "val_mean_iou" and 0 < metrics["pixel_accuracy"] <= 1
    assert all(0 <= c["dice"] <= 1 for c in metrics["per_class"].values())
    from zoo.data.masks import load_pair

    val = [load_pair(image, mask, (64, 64)) for image, mask in zip(*_val_pairs(run))]
    truth = np.stack([m for _, m in val])
    mine = np.stack(run.masks([i for i, _ in val]))
    assert abs(objects.mean_iou(truth, mine, NUM_CLASSES) - metrics["mean_iou"]) < 1e-6


def _val_pairs(run):
    from zoo.data.masks import scan_segmentation_folder

    report = scan_segmentation_folder(run.config["data"], validation_split=0.2, seed=0, verbose=False)
    return [image for image, _ in report.val_pairs], [mask for _, mask in report.val_pairs]


def test_the_run_writes_its_pictures_and_logs(run):
    out = run.path
    for name in ("curves.png", "predictions.png", "model.keras", "metrics.json", "classes.json"):
        assert (out / name).is_file(), name
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    shown = run.metrics["predictions"]
    assert len(shown) == 6 and shown[0]["mean_iou"] <= shown[-1]["mean_iou"]  # the worst first, the best last
    width, height = Image.open(out / "predictions.png").size
    assert width > height > 300


def test_zoo_predict_writes_each_mask_and_its_overlay(run, held_out, tmp_path):
    images, _ = held_out
    paths = []
    for index in range(2):
        paths.append(tmp_path / f"scene{index}.jpg")
        Image.fromarray(images[index]).resize((96, 80)).save(paths[-1], quality=95)  # another size and shape
    result = forked_zoo.run(["predict", run.path, *paths, tmp_path / "missing.jpg", "--out", tmp_path / "masks"],
                            timeout=300)
    assert result.returncode == 1 and "missing.jpg" in result.stderr  # one bad name, the rest done
    for index, path in enumerate(paths):
        mask = Image.open(tmp_path / "masks" / f"scene{index}.mask.png")
        assert mask.mode == "P" and mask.size == (96, 80)
        np.testing.assert_array_equal(np.asarray(mask), run.masks([str(path)])[0])
        overlay = Image.open(tmp_path / "masks" / f"scene{index}.overlay.png")
        assert overlay.size == (96, 80) and overlay.mode == "RGB"
        assert str(path) in result.stdout


# ------------------------------------------------------------------------ serving
def test_export_serves_masks_over_rest_and_grpc_and_refuses_a_pixel_bomb(run, held_out, tmp_path):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from zoo.serving.server import ModelServer

    images, _ = held_out
    expected = np.stack(run.masks(list(images[:3])))
    version = zoo.export(run.path, tmp_path / "models", "scenes")
    metadata = json.loads((version / "assets.extra" / "zoo.json").read_text())
    assert metadata["task"] == "image-segmentation" and metadata["classes"] == list(objects.CLASSES)

    def png(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    def post(server, body):
        request = urllib.request.Request(f"{server.rest_url}/v1/models/scenes:predict", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["predictions"]

    with ModelServer(tmp_path / "models", port=0, grpc_port=0, poll_seconds=0) as server:
        rows = post(server, {"instances": images[:3].tolist()})
        np.testing.assert_array_equal(np.asarray([row["masks"] for row in rows]), expected)
        rows = post(server, {"signature_name": "serving_bytes", "instances": [{"b64": png(i)} for i in images[:3]]})
        np.testing.assert_array_equal(np.asarray([row["masks"] for row in rows]), expected)
        # A 1x1 PNG whose header claims 30000 x 30000 pixels is refused before it is decoded.
        bomb = png_claiming(tmp_path / "bomb.png", 30000, 30000).read_bytes()
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(server, {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(bomb).decode()}]})
        assert refused.value.code == 400 and "pixels" in json.loads(refused.value.read())["error"]

        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_target))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "scenes"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images[:3], dtype=tf.uint8))
        reply = stub.Predict(request, timeout=120)
        np.testing.assert_array_equal(tf.make_ndarray(reply.outputs["masks"]), expected)


@pytest.mark.deep
@pytest.mark.parametrize("name, size", [("vgg19", 64), ("resnet101", 64), ("alexnet", 96), ("lenet5", 28),
                                        ("densenet121", 64), ("xception", 96), ("inception_resnet_v2", 96),
                                        ("nasnet_mobile", 64), ("efficientnet_v2_b0", 64), ("mobilenet_v2", 64)])
def test_the_other_families_get_a_unet_too(name, size):
    model = zoo.create(name, weights=None, task="segmentation", num_classes=3, input_shape=(size, size, 3))
    assert tuple(model.output.shape) == (None, size, size, 3)
    probabilities = model.predict(np.zeros((1, size, size, 3), "uint8"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
