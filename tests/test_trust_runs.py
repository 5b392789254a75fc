"""Issue 22, item 8: a damaged run directory gets one line, never a traceback.

The runs are the session's shared ones, copied before they are damaged. Each command
runs through `zoo.cli.main`, so what is checked is what a user would see: its exit
status and stderr.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from zoo.cli import main

pytestmark = pytest.mark.large  # reads trained runs (session fixtures)

ROOT = Path(__file__).resolve().parents[1]
DIGIT = str(ROOT / "examples" / "digit-7.png")


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def zoo(capsys):
    """`zoo ARGS` run in-process (a traceback would escape `main` and fail the test)."""
    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Done(code, out, err)
    return run


def one_line_refusal(done, *expected):
    err = done.stderr.strip()
    assert done.returncode == 1, (done.stdout, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


def copy_of(run, tmp_path):
    return Path(shutil.copytree(run, tmp_path / "run"))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["run.json", "classes.json"])
def test_a_damaged_file_the_command_needs_is_named_in_one_line(zoo, classifier_run, tmp_path, name):
    run = copy_of(classifier_run, tmp_path)
    truncate(run / name)
    one_line_refusal(zoo("predict", run, DIGIT), f"{run / name} is damaged: not JSON")
    one_line_refusal(zoo("export", run, "--out", tmp_path / "models"), f"{run / name} is damaged")


def test_a_damaged_metrics_file_costs_the_scores_not_the_run(zoo, classifier_run, tmp_path):
    run = copy_of(classifier_run, tmp_path)
    truncate(run / "metrics.json")
    predicted = zoo("predict", run, DIGIT)
    assert predicted.returncode == 0, predicted.stderr
    assert "metrics.json is damaged" in predicted.stderr and "Traceback" not in predicted.stderr
    assert "digit_7" in predicted.stdout
    exported = zoo("export", run, "--out", tmp_path / "models")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "models" / "run" / "1" / "saved_model.pb").is_file()


def test_damaged_text_generation_files(zoo, text_generation_run, tmp_path):
    run = copy_of(text_generation_run.path, tmp_path)
    (run / "vocabulary.json").write_bytes(b"\xff\xfe not text")
    one_line_refusal(zoo("generate", run, "--length", "5"), "vocabulary.json is damaged: not UTF-8")
    (run / "vocabulary.json").write_text('{"a": 1}')
    one_line_refusal(zoo("generate", run, "--length", "5"), "vocabulary.json is damaged: it holds a JSON dict")
    shutil.copy(text_generation_run.path / "vocabulary.json", run / "vocabulary.json")
    truncate(run / "metrics.json")
    generated = zoo("generate", run, "--length", "5")
    assert generated.returncode == 0 and "metrics.json is damaged" in generated.stderr, generated.stderr


def test_a_run_whose_kind_was_edited_is_named_by_every_command(zoo, classifier_run, tmp_path):
    run = copy_of(classifier_run, tmp_path)
    config = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**config, "kind": "text-generation"}))
    said = "is not a text-generation run, as its run.json says"
    one_line_refusal(zoo("generate", run, "--length", "5"), said)
    one_line_refusal(zoo("predict", run, DIGIT), said)
    one_line_refusal(zoo("export", run, "--out", tmp_path / "models"), said)
    one_line_refusal(zoo("explain", run, DIGIT, "--out", tmp_path / "explain"), said)
    (run / "run.json").write_text(json.dumps({**config, "kind": "gan"}))
    one_line_refusal(zoo("sample", run, "--out", tmp_path / "s.png"), "is not a gan run")
    (run / "run.json").write_text(json.dumps({**config, "kind": ["not", "a", "name"]}))
    one_line_refusal(zoo("predict", run, DIGIT), "names no task zoo knows")


def test_the_run_says_how_many_epochs_it_trains(classifier_run):
    """Item 18: --epochs counts the epochs after the frozen phase; the run says the total."""
    said = (classifier_run.parent / "finetune.out").read_text()
    assert "2 epochs: 1 training the new head on the frozen base (--freeze-epochs), then 1 fine-tuning" in said
    assert "Epoch 2/2" in said and "Epoch 3/" not in said
