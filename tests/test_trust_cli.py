"""Issue 22: what a newcomer's mistakes and a user's own files meet at the command line.

Each refusal is one line on stderr naming the problem, exit 1, no traceback, and no
file of the user's written over. The commands run in-process (`zoo.cli.main`): a
traceback would escape `main` and fail the test.
"""

import json

import numpy as np
import pytest
from PIL import Image

from zoo.cli import main


def refused(capsys, *argv):
    """`zoo ARGV` refused in one line: that line."""
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    content, painting = tmp_path / "photo.png", tmp_path / "painting.png"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype="uint8")).save(content)  # 32x43 at --size 43
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype="uint8")).save(painting)
    return content, painting


def tiny_style(content, painting, *more):
    return ["style", str(content), str(painting), "--weights", "none", "--size", "43", "--steps", "2", *more]


# ----------------------------------------------------------------------- item 7: style
def test_style_refuses_an_existing_out_and_keeps_it(capsys, photos, tmp_path):
    content, painting = photos
    out = tmp_path / "mine.png"
    out.write_bytes(b"the user's own picture")
    err = refused(capsys, *tiny_style(content, painting, "--out", str(out)))
    assert "mine.png exists: pass --overwrite" in err
    assert out.read_bytes() == b"the user's own picture"


@pytest.mark.large  # paints (VGG19 with random weights, two steps)
def test_style_overwrite_replaces_out(photos, tmp_path):
    content, painting = photos
    out = tmp_path / "mine.png"
    out.write_bytes(b"the user's own picture")
    assert main(tiny_style(content, painting, "--out", str(out), "--overwrite")) == 0
    assert Image.open(out).size == (64, 48)


@pytest.mark.parametrize("which", ["content", "style"])
def test_style_never_writes_over_its_inputs(capsys, photos, which):
    content, painting = photos
    target = content if which == "content" else painting
    before = target.read_bytes()
    for more in ([], ["--overwrite"]):
        err = refused(capsys, *tiny_style(content, painting, "--out", str(target), *more))
        assert "is an input" in err and target.name in err
    assert target.read_bytes() == before


def test_style_save_every_refuses_to_write_over_neighbours(capsys, photos, tmp_path):
    content, painting = photos
    neighbour = tmp_path / "mine-step0002.png"
    neighbour.write_bytes(b"kept")
    err = refused(capsys, *tiny_style(content, painting, "--out", str(tmp_path / "mine.png"), "--save-every", "1"))
    assert "mine-step0002.png exists" in err
    assert neighbour.read_bytes() == b"kept" and not (tmp_path / "mine.png").exists()
    assert not (tmp_path / "mine-step0001.png").exists()  # refused before any step ran
    # A step image that is an input is refused even with --overwrite.
    shutil_copy = content.with_name("mine-step0001.png")
    shutil_copy.write_bytes(content.read_bytes())
    err = refused(capsys, *tiny_style(shutil_copy, painting, "--out", str(tmp_path / "mine.png"),
                                      "--save-every", "1", "--overwrite"))
    assert "is an input" in err


# ----------------------------------------------------------------- item 10: one line each
def test_style_bad_sizes_and_steps_are_one_line(capsys, photos, tmp_path):
    content, painting = photos
    thin = tmp_path / "thin.png"
    Image.fromarray(np.zeros((1, 2000, 3), "uint8")).save(thin)
    out = str(tmp_path / "out.png")
    assert "shorter side at least 32 pixels; the content image 2000x1" in refused(
        capsys, "style", str(thin), str(painting), "--out", out, "--weights", "none")
    assert "--steps must be a whole number > 0 (given: 0)" in refused(
        capsys, "style", str(content), str(painting), "--out", out, "--weights", "none", "--steps", "0")
    assert "--size must be a whole number > 0 (given: -5)" in refused(
        capsys, "style", str(content), str(painting), "--out", out, "--weights", "none", "--size", "-5")
    assert not (tmp_path / "out.png").exists()


def test_explain_refuses_a_dense_layer_and_a_file_as_out(capsys, tmp_path):
    from pathlib import Path

    digit = str(Path(__file__).resolve().parents[1] / "examples" / "digit-7.png")
    err = refused(capsys, "explain", "--model", "lenet5", digit, "--layer", "f6", "--out", str(tmp_path / "x"))
    assert "f6 has no spatial output" in err and "c3" in err
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    err = refused(capsys, "explain", "--model", "lenet5", digit, "--out", str(existing))
    assert "notes.txt is a file" in err
    assert existing.read_text() == "mine"


# ------------------------------------------------- item 9: a refused run leaves nothing
def test_a_text_of_one_character_is_refused_and_leaves_no_run(capsys, tmp_path):
    text = tmp_path / "one.txt"
    text.write_text("a" * 5000)
    err = refused(capsys, "train", "text-generation", "--text", str(text), "--out", str(tmp_path / "run"),
                  "--epochs", "1")
    assert "one.txt holds 1 distinct character ('a'): a text generator needs at least 2" in err
    assert not (tmp_path / "run").exists()
    # A folder that was there keeps the user's own files, and loses what the run wrote.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    refused(capsys, "train", "text-generation", "--text", str(text), "--out", str(tmp_path / "mine"), "--epochs", "1")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    # The next try needs no --overwrite.
    text.write_text("ab" * 3000)
    err = refused(capsys, "train", "text-generation", "--text", str(text), "--out", str(tmp_path / "run"),
                  "--epochs", "1", "--seq-len", "0")
    assert "--seq-len must be a positive integer" in err and not (tmp_path / "run").exists()


def test_a_refused_classifier_run_leaves_no_run(capsys, tmp_path):
    photos = tmp_path / "photos" / "only"
    photos.mkdir(parents=True)
    Image.fromarray(np.zeros((28, 28, 3), "uint8")).save(photos / "a.png")
    refused(capsys, "finetune", str(tmp_path / "photos"), "--model", "lenet5", "--epochs", "1",
            "--out", str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_refusal_of_the_run_directory_leaves_it_alone(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"kind": "text-generation"}')  # an unfinished run
    text = tmp_path / "t.txt"
    text.write_text("ab" * 3000)
    err = refused(capsys, "train", "text-generation", "--text", str(text), "--out", str(run), "--epochs", "1")
    assert "holds an unfinished run" in err
    assert (run / "run.json").read_text() == '{"kind": "text-generation"}'


# ------------------------------------- item 8: --resume of a run of another kind
@pytest.mark.parametrize("recorded, command, expected", [
    # An honest run of another task: say which command resumes it.
    ({"kind": "image-classification", "data_dir": "photos", "model": "lenet5", "epochs": 1},
     ["text-generation", "--text", "TEXT"], "holds a image-classification run, not a text-generation one"),
    # A classifier's run.json with its kind edited: the settings a text run records are missing.
    ({"kind": "text-generation", "data_dir": "photos", "model": "lenet5", "epochs": 1},
     ["text-generation", "--text", "TEXT"], "says text-generation but lacks text"),
    ({"kind": 7}, ["text-generation", "--text", "TEXT"], "names no task (kind=7)"),
])
def test_resume_refuses_a_run_of_another_kind(capsys, tmp_path, recorded, command, expected):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(recorded))
    text = tmp_path / "t.txt"
    text.write_text("ab" * 3000)
    command = [str(text) if part == "TEXT" else part for part in command]
    assert expected in refused(capsys, "train", *command, "--out", str(run), "--resume", "--epochs", "1")
    assert json.loads((run / "run.json").read_text()) == recorded  # left as it was


# --------------------------------------- item 14: a finished run holds no optimizer state
def test_run_weight_files_hold_no_optimizer_state(tmp_path):
    import keras

    from zoo import runs

    model = keras.Sequential([keras.Input((200,)), keras.layers.Dense(1000), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss="mse")  # Adam: two slots per weight
    model.fit(np.zeros((4, 200)), np.zeros((4, 10)), verbose=0)
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    weights = runs.save_weights(model, tmp_path / "last.weights.h5")
    saved = runs.save_model(model, tmp_path / "model.keras")
    assert weights.stat().st_size <= 1.1 * weight_bytes
    assert saved.stat().st_size <= 1.1 * weight_bytes
    twin = keras.Sequential([keras.Input((200,)), keras.layers.Dense(1000), keras.layers.Dense(10)])
    twin.load_weights(weights)
    assert all(np.array_equal(a, b) for a, b in zip(twin.get_weights(), model.get_weights()))


# ------------------------------------ item 13: refusals that need no model come at once
REFUSALS_BEFORE_TENSORFLOW = [
    (["classify", "nonexist.png", "--model", "lenet5"], "nonexist.png: no such file or folder"),
    (["classify", "DIGIT", "--model", "alexnet"], "alexnet has no pretrained weights"),
    (["classify", "DIGIT", "--model", "lenet6"], "Did you mean lenet5"),
    (["predict", "--url", "http://127.0.0.1:9", "--model", "m", "nonexist.png"], "nonexist.png: no such file"),
    (["predict", "NORUN", "DIGIT"], "no such file or folder (the run directory)"),
    (["explain", "--model", "lenet5", "DIGIT", "--out", "FILE"], "is a file: --out names the folder"),
    (["generate", "NORUN"], "no such file or folder"),
    (["finetune", "NODIR", "--model", "lenet5", "--epochs", "1", "--out", "RUN"], "no such file or folder (DATA_DIR)"),
    (["finetune", "TMP", "--model", "lenet5", "--epochs", "1", "--out", "FILE"], "is a file. Give another --out"),
    (["train", "text-generation", "--text", "NODIR", "--out", "RUN"], "no such file or folder (--text)"),
    (["style", "DIGIT", "DIGIT", "--out", "FILE"], "exists: pass --overwrite"),
]


def test_refusals_that_need_no_model_come_before_tensorflow(tmp_path):
    """Each refusal in well under a second, with neither Keras nor TensorFlow imported
    (measured in a fresh interpreter: importing them alone takes seconds)."""
    import subprocess
    import sys
    from pathlib import Path

    digit = str(Path(__file__).resolve().parents[1] / "examples" / "digit-7.png")
    (tmp_path / "file.txt").write_text("mine")
    names = {"DIGIT": digit, "NORUN": str(tmp_path / "norun"), "NODIR": str(tmp_path / "nodir"),
             "FILE": str(tmp_path / "file.txt"), "RUN": str(tmp_path / "run"), "TMP": str(tmp_path)}
    cases = [([names.get(a, a) for a in argv], expected) for argv, expected in REFUSALS_BEFORE_TENSORFLOW]
    script = f"""
import contextlib, io, json, sys, time
from zoo.cli import main
out = []
for argv, expected in {cases!r}:
    err = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    out.append([argv, code, err.getvalue(), time.perf_counter() - started])
print(json.dumps({{"results": out, "heavy": [m for m in ("keras", "tensorflow") if m in sys.modules]}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["heavy"] == []
    for (argv, code, err, seconds), (_, expected) in zip(report["results"], cases):
        assert code == 1 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert seconds < 1.0, (argv, seconds)


# ------------------------------------------- item 17: one spelling, the CLI's words
def test_weights_none_is_one_spelling_everywhere(capsys):
    from pathlib import Path

    from zoo import models

    assert models.weights_choice("none") is None and models.weights_choice("None") is None
    assert models.weights_choice(None) is None and models.weights_choice("imagenet") == "imagenet"
    digit = str(Path(__file__).resolve().parents[1] / "examples" / "digit-7.png")
    assert main(["classify", digit, "--model", "lenet5", "--weights", "none", "--top", "1"]) == 0
    assert "digit-7.png" in capsys.readouterr().out


def test_cli_errors_speak_the_cli(capsys):
    err = refused(capsys, "classify", "x.png", "--model", "lenet6")
    assert "--model must be a registered model" in err and "`zoo list` shows them all" in err
    assert "Received" not in err and "zoo.list_models()" not in err and "name=" not in err
    from zoo.cli import cli_words

    assert cli_words("`save_every` needs `out`. Received: save_every=3") == "--save-every needs --out (given: 3)"
    assert cli_words("`class_` must name a class. Received: class_='dog'") == "--class must name a class (given: 'dog')"


# -------------------------------------- item 21: an empty folder is named, exit 1
@pytest.mark.parametrize("alone", [True, False])
def test_a_folder_without_images_is_named(capsys, tmp_path, alone):
    from pathlib import Path

    empty, other = tmp_path / "empty", tmp_path / "notes"
    empty.mkdir()
    other.mkdir()
    (other / "readme.txt").write_text("no image here")
    digit = str(Path(__file__).resolve().parents[1] / "examples" / "digit-7.png")
    argv = ["classify", str(empty), str(other), *([] if alone else [digit]), "--model", "lenet5"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert f"{empty}: no images in this folder" in err and f"{other}: no images in this folder" in err
    assert "Traceback" not in err
    assert ("digit-7.png" in out) is (not alone)


# ------------------------------------- item 18: what --epochs counts, said in --help
def test_finetune_help_says_what_epochs_counts(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "after the --freeze-epochs (the run trains their sum: --epochs 3 is 4 epochs" in help_text


def png_claiming(path, width, height):
    """A 1x1 PNG whose header claims `width` x `height` (its CRC fixed): Pillow reads
    the claim when it opens the file, before any pixel."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_a_pixel_bomb_is_one_line_without_pillows_warning(capsys, tmp_path):
    import warnings

    from PIL import Image as PILImage

    bomb = png_claiming(tmp_path / "bomb.png", 10_000, 9_500)  # over Pillow's 89 Mpx warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["classify", str(bomb), "--model", "lenet5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"ERROR {bomb}: claims 10000x9500 = 95,000,000 pixels, more than the limit of 50,000,000 "
                   "(set ZOO_MAX_IMAGE_PIXELS to allow more)")
    assert not [w for w in caught if issubclass(w.category, PILImage.DecompressionBombWarning)]
