"""Issue 24: LiteRT (TFLite) and ONNX files beside the SavedModel, checked against the
Keras model they came from, on real digits (scikit-learn's) and the session's
fine-tuned run; run with the LiteRT interpreter and onnxruntime, nothing of zoo's.
"""

import json
import os

import numpy as np
import pytest

from helpers import forked_zoo

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import zoo  # noqa: E402
from zoo.errors import ZooError  # noqa: E402
from zoo.serving import portable  # noqa: E402

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def lenet(tmp_path_factory, digits):
    """LeNet-5 with its shipped weights, exported once in every format (`digits`:
    conftest's split of scikit-learn's digits, x_train, x_test, y_train, y_test)."""
    base = tmp_path_factory.mktemp("models")
    x_train = digits[0]
    paths = {}
    paths["float32"], paths["onnx"] = zoo.export("lenet5", base, "lenet5", format="litert,onnx")
    for quantize in ("float16", "int8"):
        paths[quantize] = zoo.export("lenet5", base, "lenet5", format="litert", quantize=quantize,
                                     representative=x_train[:200])
    return zoo.create("lenet5"), paths


def _interpreter_output(path, images):
    """The file run by its own runtime, without zoo: the LiteRT interpreter or onnxruntime."""
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: images})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_litert_and_onnx_give_the_keras_models_probabilities(lenet, digits):
    model, paths = lenet
    images = digits[1][:8]  # 8 held-out real digits
    expected = np.asarray(model.predict_on_batch(images))
    for key in ("float32", "onnx"):
        got = _interpreter_output(paths[key], images)
        assert got.shape == expected.shape and got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-4, (key, np.abs(got - expected).max())
        assert np.array_equal(got.argmax(1), expected.argmax(1))
    folder = paths["float32"].parent
    assert (folder / "labels.txt").read_text().splitlines() == [str(d) for d in range(10)]
    assert sorted(p.name for p in folder.iterdir()) == [
        "labels.txt", "lenet5.float16.tflite", "lenet5.int8.tflite", "lenet5.onnx", "lenet5.tflite"]
    import onnx

    labels = {p.key: p.value for p in onnx.load(str(paths["onnx"])).metadata_props}["labels"]
    assert labels.splitlines() == [str(d) for d in range(10)]


def test_quantised_files_are_smaller_and_as_accurate_on_held_out_digits(lenet, digits):
    model, paths = lenet
    _, x_test, _, y_test = digits
    accuracy = {"keras": float(np.mean(np.asarray(model.predict_on_batch(x_test)).argmax(1) == y_test))}
    for key in ("float32", "float16", "int8"):
        accuracy[key] = float(np.mean(portable.runner(paths[key]).run(x_test).argmax(1) == y_test))
    size = {key: paths[key].stat().st_size for key in ("float32", "float16", "int8")}
    print(accuracy, size)
    assert accuracy["float32"] == accuracy["keras"]
    assert accuracy["float16"] >= accuracy["keras"] - 0.002 and size["float16"] <= 0.55 * size["float32"]
    assert accuracy["int8"] >= accuracy["keras"] - 0.01 and size["int8"] <= 0.3 * size["float32"]


def test_an_existing_file_is_kept_unless_overwrite(lenet, tmp_path):
    path = tmp_path / "lenet5" / "lenet5.onnx"
    path.parent.mkdir()
    path.write_bytes(b"mine")
    with pytest.raises(zoo.errors.OptionError, match="--overwrite"):
        zoo.export("lenet5", tmp_path, "lenet5", format="onnx")
    assert path.read_bytes() == b"mine"
    assert zoo.export("lenet5", tmp_path, "lenet5", format="onnx", overwrite=True) == path
    assert path.stat().st_size > 100_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["labels.txt", "lenet5.onnx"]  # no temporaries


def _odd_model(op):
    """An image classifier with a layer whose op LiteRT has no kernel for."""
    import keras
    import tensorflow as tf

    class Odd(keras.layers.Layer):
        def call(self, x):
            return op(tf, x)

    inputs = keras.Input((8, 8, 3), dtype="uint8")
    x = Odd(name="odd_layer")(keras.ops.cast(inputs, "float32") / 255.0)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x), name="odd_model")


def test_a_layer_the_converter_cannot_take_is_named_and_nothing_is_written(tmp_path):
    model = _odd_model(lambda tf, x: tf.math.betainc(x + 1.0, x + 1.0, 0.5 + 0 * x))
    with pytest.raises(ZooError) as refused:
        zoo.export(model, tmp_path, "odd", format="litert")
    message = str(refused.value)
    assert "\n" not in message and "tf.Betainc" in message and "odd_layer" in message and "LiteRT" in message
    assert list((tmp_path / "odd").iterdir()) == []  # nothing half-written, no labels either


@pytest.mark.parametrize("fmt", ["litert", "onnx", "savedmodel,onnx"])
def test_zoo_export_of_a_keras_file_neither_converter_takes_is_one_line_and_writes_nothing(tmp_path, fmt):
    """A classifier that resizes with Lanczos inside (Keras' own Resizing layer): its
    ScaleAndTranslate op has no LiteRT kernel and no ONNX equivalent."""
    import keras

    inputs = keras.Input((8, 8, 3), dtype="uint8")
    x = keras.layers.Resizing(16, 16, interpolation="lanczos3", name="sharp_resize")(keras.ops.cast(inputs, "float32"))
    x = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, x, name="sharp").save(tmp_path / "sharp.keras")
    done = forked_zoo.run(["export", tmp_path / "sharp.keras", "--name", "sharp", "--out", tmp_path / "models",
                           "--format", fmt])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "tf.ScaleAndTranslate" in line and "sharp_resize" in line, line
    assert ("ONNX" if "onnx" in fmt else "LiteRT") in line
    written = sorted(p.name for p in (tmp_path / "models" / "sharp").iterdir())
    assert written == (["1"] if fmt.startswith("savedmodel") else []), written  # the SavedModel went first


def test_other_options_are_refused_in_one_line(tmp_path):
    with pytest.raises(zoo.errors.OptionError, match="choose from savedmodel, litert, onnx"):
        zoo.export("lenet5", tmp_path, "x", format="coreml")
    with pytest.raises(ValueError, match="quantize"):
        zoo.export("lenet5", tmp_path, "x", format="onnx", quantize="int8")
    with pytest.raises(zoo.errors.OptionError, match="int8 calibrates on images.*autoencoder.*float16") as refused:
        zoo.export(_autoencoder_run(tmp_path), tmp_path, "x", format="litert", quantize="int8")
    assert "\n" not in str(refused.value) and not (tmp_path / "x").exists()


# ---------------------------------------------------------------- the other kinds of model
# Small untrained models of each kind, as their runs hold them: parity does not need a
# trained model (the shared trained runs are checked in the large tier below).
def _autoencoder_run(tmp_path):
    from zoo.tasks.autoencoder import AutoencoderRun

    model = zoo.create("conv_autoencoder", latent_dim=8, filters=(8, 16))
    return AutoencoderRun(path=tmp_path, model=model, config={"kind": "autoencoder"})


def _gan_run(tmp_path):
    from zoo.tasks.dcgan import DCGANRun

    gan = zoo.create("dcgan", latent_dim=8, image_size=28, channels=1, width=8, seed=0)
    return DCGANRun(path=tmp_path, model=gan.sampler(), config={"kind": "gan", "latent_dim": 8})


def _text_run(tmp_path, vocabulary):
    from zoo.tasks.char_lstm import CharLSTMRun

    model = zoo.create("char_lstm", vocabulary_size=len(vocabulary), units=32, num_layers=2, embedding_dim=8)
    return CharLSTMRun(path=tmp_path, model=model, config={"kind": "text-generation"}, vocabulary=vocabulary)


def _outputs(path, **inputs):
    """An exported file run by its own runtime, without zoo: named inputs → named outputs."""
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_signature_runner()(**inputs)


def _autoencoder_parity(run, tmp_path, images):
    expected = run.reconstruct(images)
    for path in zoo.export(run, tmp_path, "ae", format="litert,onnx"):
        got = _outputs(path, images=images)["reconstructions"]
        assert got.dtype == np.uint8 and got.shape == expected.shape
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1, path  # one pixel step


def _gan_parity(run, tmp_path):
    expected = run.sample(8, seed=3)
    for path in zoo.export(run, tmp_path, "gan", format="litert,onnx"):
        got = _outputs(path, latents=run.latents(8, seed=3))["images"]
        assert got.dtype == np.uint8 and got.shape == expected.shape
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1, path


def _greedy_text(path, prompt, length):
    """The README's loop ("Run it elsewhere"): feed the prompt one character at a time,
    then the most likely next character, `length` times, with the file's runtime."""
    vocabulary = json.loads(path.with_name("vocabulary.json").read_text(encoding="utf-8"))
    states, text = np.zeros((1, _state_size(path)), "float32"), prompt
    for i in range(len(prompt) + length - 1):
        token = vocabulary.index(prompt[i] if i < len(prompt) else text[-1])
        out = _outputs(path, token_ids=np.array([token], "int32"), states=states)
        states = out["new_states"]
        if i >= len(prompt) - 1:
            text += vocabulary[int(out["logits"][0].argmax())]
    return text


def _state_size(path):
    """S, as the file declares it: ONNX's input shape (and its metadata), LiteRT's signature."""
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path))
        (states,) = [i for i in proto.graph.input if i.name == "states"]
        size = states.type.tensor_type.shape.dim[1].dim_value
        assert {p.key: p.value for p in proto.metadata_props}["state_size"] == str(size)
        return size
    from ai_edge_litert.interpreter import Interpreter

    return int(Interpreter(model_path=str(path)).get_signature_runner().get_input_details()["states"]["shape"][1])


def _text_parity(run, tmp_path, prompt, length=30):
    expected = run.generate(prompt, temperature=0.0, length=length)
    for path in zoo.export(run, tmp_path, "text", format="litert,onnx"):
        assert _greedy_text(path, prompt, length) == expected, path


def test_an_autoencoder_a_gan_generator_and_a_char_lstm_step_run_like_keras(tmp_path, digits):
    images = digits[1][:8, :, :, :1]  # 8 held-out real digits, one channel as the autoencoder takes them
    _autoencoder_parity(_autoencoder_run(tmp_path), tmp_path, images)
    _gan_parity(_gan_run(tmp_path), tmp_path)
    _text_parity(_text_run(tmp_path, list("\n abcdefghijklmnopqrstuvwxyz.,")), tmp_path, "the cat ")
    assert json.loads((tmp_path / "text" / "vocabulary.json").read_text())[:3] == ["\n", " ", "a"]
    assert not (tmp_path / "ae" / "labels.txt").exists()  # labels belong to classifiers


@pytest.mark.large
def test_the_shared_trained_runs_export_and_run_like_keras(vae_run, gan_run, text_generation_run, tmp_path, digits):
    _autoencoder_parity(zoo.load_run(vae_run.path), tmp_path / "vae", digits[1][:8, :, :, :1])
    _gan_parity(zoo.load_run(gan_run.path), tmp_path / "gan")
    _text_parity(zoo.load_run(text_generation_run.path), tmp_path / "text", "The ", length=60)


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"not a model at all " * 1000], ids=["empty", "zeros", "text"])
def test_a_damaged_exported_file_is_one_error_not_a_crash(tmp_path, suffix, content):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(content)
    with pytest.raises(ZooError, match="model" + suffix.replace(".", r"\.")) as refused:
        portable.predict_file(path, [np.zeros((28, 28, 3), "uint8")])
    assert "\n" not in str(refused.value)


def test_a_truncated_litert_file_is_refused(lenet, tmp_path):
    _, paths = lenet
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(paths["float32"].read_bytes()[:5000])
    with pytest.raises(ZooError, match="cut.tflite"):
        portable.predict_file(cut, [np.zeros((28, 28, 3), "uint8")])


# ------------------------------------------------------------------ a fine-tuned run
@pytest.mark.large
def test_a_fine_tuned_run_exports_and_zoo_predict_runs_each_file_like_the_run(classifier_run, tmp_path):

    config = json.loads((classifier_run / "run.json").read_text())
    photos = sorted(p for p in (classifier_run.parent / "photos").rglob("*.png"))[:8]
    assert photos and config["data_dir"]
    done = forked_zoo.run(["export", classifier_run, "--name", "digits", "--out", tmp_path / "models", "--format",
                           "savedmodel,litert,onnx"])
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    int8 = forked_zoo.run(["export", classifier_run, "--name", "digits", "--out", tmp_path / "models", "--format",
                           "litert", "--quantize", "int8"])  # calibrated on the run's own training images
    assert int8.returncode == 0, int8.stderr
    folder = tmp_path / "models" / "digits"
    assert (folder / "1" / "saved_model.pb").is_file()
    assert (folder / "labels.txt").read_text().splitlines() == json.loads((classifier_run / "classes.json").read_text())

    expected = forked_zoo.run(["predict", classifier_run, *photos, "--json", "--top", "2"])
    assert expected.returncode == 0, expected.stderr
    expected = json.loads(expected.stdout)
    for name in ("digits.tflite", "digits.onnx", "digits.int8.tflite"):
        got = forked_zoo.run(["predict", folder / name, *photos, "--json", "--top", "2"])
        assert got.returncode == 0, (name, got.stderr)
        rows = json.loads(got.stdout)
        assert [r["image"] for r in rows] == [r["image"] for r in expected]
        # Float files: the run's answers; int8: within a quantisation step of them (a
        # run this short is near 50/50 on some images, where int8 may swap the two).
        tolerance = 0.02 if "int8" in name else 1e-4
        for row, want in zip(rows, expected):
            scores = {p["label"]: p["probability"] for p in row["predictions"]}
            wanted = {p["label"]: p["probability"] for p in want["predictions"]}
            assert scores.keys() == wanted.keys()
            assert max(abs(scores[k] - wanted[k]) for k in scores) <= tolerance, (name, row, want)
            if "int8" not in name:
                assert row["predictions"][0]["label"] == want["predictions"][0]["label"]


@pytest.mark.large
def test_zoo_export_refuses_an_existing_file_and_a_bad_format_in_one_line(classifier_run, tmp_path):
    out = tmp_path / "models"
    first = forked_zoo.run(["export", classifier_run, "--name", "d", "--out", out, "--format", "onnx"])
    assert first.returncode == 0, first.stderr
    again = forked_zoo.run(["export", classifier_run, "--name", "d", "--out", out, "--format", "onnx"])
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert "--overwrite" in again.stderr and "Traceback" not in again.stderr
    bad = forked_zoo.run(["export", classifier_run, "--name", "d", "--out", out, "--format", "coreml"])
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    missing = forked_zoo.run(["predict", tmp_path / "none.tflite", tmp_path / "x.png"])
    assert missing.returncode == 1 and "none.tflite" in missing.stderr and "Traceback" not in missing.stderr
