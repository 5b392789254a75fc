"""The checks every kind of training passes (keras-hub's `run_task_test`): build, train,
interrupt and resume from the checkpoint, `.keras` save and load, export round trip and
one served request. A new kind adds its data and example inputs to `KIND_CASES`."""

import json
import urllib.request

import keras
import numpy as np
import pytest
from PIL import Image

import zoo
from zoo import runs, tasks
from zoo.data.digits import load_digits_28


def digits_folder(root):
    x, y = load_digits_28()
    for c in (0, 1, 7):
        folder = root / f"digit_{c}"
        folder.mkdir(parents=True)
        for i, image in enumerate(x[y == c][:24]):
            Image.fromarray(image).save(folder / f"{i}.png")
    return root, x[y == 7][30:32]


def text_file(root):
    import pydoc_data.topics

    root.mkdir(parents=True)
    path = root / "topics.txt"
    # A slice of real English (the language reference): enough for two tiny epochs.
    path.write_text("".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[:60_000],
                    encoding="utf-8")
    return path, np.array([[10, 20, 30, 40, 5]], dtype="int32")


def digits_arrays(root):
    x, _ = load_digits_28()
    return "digits", x[:3, ..., :1]


def generation_request(run, examples):
    prompt = "".join(run.vocabulary[i] for i in examples[0])
    return [{"prompt": prompt, "temperature": 0.0, "length": 20, "seed": 0}], run.generate(prompt, 0.0, 20)


def reconstruction_request(run, examples):
    expected = np.asarray(run.model.predict(examples, verbose=0))
    return examples[:1].astype("float32").tolist(), np.round(expected[0] * 255).astype("uint8").tolist()


def segmentation_folder(root):
    from tests.helpers import segmentation_set

    images, masks = segmentation_set.make_set(24, seed=0)
    segmentation_set.write_folder(root, images, masks)
    # At LeNet-5's 28 px, the encoder's input, as the run resizes them.
    return root, np.stack([np.asarray(Image.fromarray(image).resize((28, 28), Image.BILINEAR)) for image in images[:2]])


def segmentation_request(run, examples):
    expected = np.argmax(np.asarray(run.model.predict(examples[:1], verbose=0)), axis=-1)
    return examples[:1].tolist(), expected[0].tolist()


def latent_vectors(root):
    return "digits", np.random.default_rng(0).standard_normal((3, 8)).astype("float32")


def sampling_request(run, examples):
    return examples[:1].tolist(), np.asarray(run.model.predict(examples[:1], verbose=0))[0].tolist()


KIND_CASES = {
    # kind: (make data -> (data, example inputs of model.keras), options for a tiny run,
    #        serving request: (run, examples) -> (REST instances, the expected first prediction) or
    #        None for an image classifier's (the examples' probabilities))
    "image-classification": (digits_folder, dict(model="lenet5", epochs=1, freeze_epochs=1, lr=1e-2, batch_size=16),
                             None),
    "image-segmentation": (segmentation_folder, dict(model="lenet5", weights="none", epochs=2, batch_size=8),
                           segmentation_request),
    "text-generation": (text_file, dict(epochs=2, units=16, seq_len=32, batch_size=16), generation_request),
    "autoencoder": (digits_arrays, dict(epochs=2, latent_dim=8, batch_size=64), reconstruction_request),
    "gan": (latent_vectors, dict(epochs=2, latent_dim=8, width=8, batch_size=64), sampling_request),
}


class InterruptAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt  # after zoo's own callbacks: the checkpoint holds epoch 1


def test_every_kind_has_a_case():
    # Every task that writes a run directory; style transfer writes an image (tests/test_style.py).
    assert set(KIND_CASES) == {name for name, task in tasks.MANIFEST.items() if task.writes_run}
    assert set(zoo.kinds()) == set(tasks.KINDS)


def spy_on_the_task_path(monkeypatch):
    """`calls`: the names of `zoo.tasks.base.start_run`, `zoo.training.fit` and
    `zoo.tasks.base.finish_run` in the order a task called them, wherever it looks them
    up (its module's globals, or the module it imports them from when it runs)."""
    import sys

    from zoo import training
    from zoo.tasks import base

    for task in tasks.MANIFEST.values():
        task.load()  # every task module (and what it imports) before the names are replaced

    calls = []
    for owner, name in ((base, "start_run"), (training, "fit"), (base, "finish_run")):
        original = getattr(owner, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
        for module in [m for m in list(sys.modules.values()) if getattr(m, "__name__", "").startswith("zoo.")]:
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, spy)
    return calls


def run_task_test(kind, tmp_path, monkeypatch):
    make_data, options, request = KIND_CASES[kind]
    data, examples = make_data(tmp_path / "data")
    out = tmp_path / "run"
    calls = spy_on_the_task_path(monkeypatch)

    # Train, interrupted after the first epoch: an unfinished run with a checkpoint.
    with pytest.raises(KeyboardInterrupt):
        zoo.train(kind, data, out=out, verbose=0, callbacks=[InterruptAfterFirstEpoch()], **options)
    assert runs.status(out) == "unfinished"
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epochs_done"] == 1
    # Every task walks the one path: start_run, then the one fit (once, or once per phase).
    assert calls[0] == "start_run" and set(calls[1:]) == {"fit"} and "finish_run" not in calls, calls
    calls.clear()
    # ... and resumed to the end, through the same path, ending in finish_run.
    run = zoo.train(kind, data, out=out, resume=True, verbose=0, **options)
    assert calls[0] == "start_run" and calls[-1] == "finish_run" and set(calls[1:-1]) == {"fit"}, calls
    assert run.kind == kind and type(run) is type(zoo.load_run(out))
    assert [h["epoch"] for h in run.metrics["history"]] == list(range(1, len(run.metrics["history"]) + 1))
    assert not (out / "checkpoints").exists()

    # .keras save and load give the same outputs.
    expected = np.asarray(run.model.predict(examples, verbose=0))
    runs.save_model(run.model, tmp_path / "copy.keras")
    copy = keras.saving.load_model(tmp_path / "copy.keras", compile=False)
    np.testing.assert_allclose(np.asarray(copy.predict(examples, verbose=0)), expected, atol=1e-6)

    # Export round trip and one served request.
    version_dir = zoo.export(out, tmp_path / "models", kind)
    if request is None:
        import tensorflow as tf

        served = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        outputs = served(tf.constant(examples.astype("float32")))
        np.testing.assert_allclose(np.asarray(outputs["probabilities"]), expected, atol=1e-4)
        instances, answer = examples[:1].astype("float32").tolist(), expected[0]
    else:
        instances, answer = request(run, examples)

    from zoo.serving.server import ModelServer

    with ModelServer(tmp_path / "models", port=0, grpc_port=None) as server:
        body = json.dumps({"instances": instances}).encode()
        http_request = urllib.request.Request(f"{server.rest_url}/v1/models/{kind}:predict", data=body,
                                              headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(http_request, timeout=60) as response:
            reply = json.loads(response.read())
    prediction = reply["predictions"][0]
    if isinstance(prediction, dict):
        prediction = prediction["probabilities"] if "probabilities" in prediction else prediction["masks"]
    if isinstance(answer, str):
        assert prediction == answer
    else:
        # uint8 images may differ by one step where float rounding lands on .5
        np.testing.assert_allclose(prediction, answer, atol=1e-4 if request is None else 1)


@pytest.mark.parametrize("kind", sorted(KIND_CASES))
def test_task(kind, tmp_path, monkeypatch):
    run_task_test(kind, tmp_path, monkeypatch)


# kind: the session fixture (tests/helpers/trained_runs.py) holding that kind's shared run,
# killed with SIGKILL as its epoch 2 started and resumed through the CLI; the other
# tests of the kind (generate, sample, export, serve) read the same finished run.
KILL_CASES = {"text-generation": "text_generation_run", "autoencoder": "vae_run",
              "image-segmentation": "segmentation_run"}


@pytest.mark.large
@pytest.mark.parametrize("kind", sorted(KILL_CASES))
def test_kill_9_during_an_epoch_and_resume_from_the_last_finished_one(kind, request):
    killed = request.getfixturevalue(KILL_CASES[kind])
    out, epochs, done, resumed = killed.path, killed.epochs, killed.epochs_done, killed.resumed
    assert 1 <= done < epochs and killed.status_when_killed == "unfinished", killed.killed_output[-3000:]
    assert runs.read_config(out)["kind"] == kind

    assert resumed.returncode == 0, resumed.stderr
    headers = [line for line in resumed.stdout.splitlines() if line.startswith("Epoch ")]
    assert headers[0] == f"Epoch {done + 1}/{epochs}", resumed.stdout
    run = zoo.load_run(out)
    assert [h["epoch"] for h in run.metrics["history"]] == list(range(1, epochs + 1))
    assert not (out / "checkpoints").exists()
