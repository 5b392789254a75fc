"""One trained run per kind, trained once per test session and read by every test that
needs a finished run of that kind, instead of each file training its own.

tests/conftest.py exposes the fixtures; pytest builds one only when a test that asks for
it runs, so the fast tier never trains these (every test that uses them is `large`).
Each run is trained the way its strictest reader needs, with `kill -9` in epoch 2 and
`--resume` on the way, so that the kill tests check the interruption and the other tests
check that the resumed run learned, generates, samples and serves like any run.

A shared run is read only: tests that export it write under their own `tmp_path`, and a
test that needs to change a run trains its own. Under pytest-xdist (CI's large tier) a
run is built once for the whole session, not once per worker: the first worker that
needs it builds it under a lock in the workers' common temporary directory, and the
others wait for it and read it (`built_once`).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from helpers import forked_zoo
from helpers.processes import kill_zoo_when

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


@dataclass(frozen=True)
class KilledAndResumed:
    """A `zoo train` run killed with SIGKILL as epoch 2 started, then resumed to its end."""

    path: Path  # the finished run directory
    epochs: int  # the run's epochs
    state: dict  # `checkpoints/state.json` when it was killed
    status_when_killed: str  # `zoo.runs.status` of the directory then
    killed_output: str  # what the first process printed up to the kill
    resumed: subprocess.CompletedProcess  # the `--resume` process (stdout, stderr, returncode)

    @property
    def epochs_done(self):  # the epochs finished when it was killed
        return self.state["epochs_done"]

    def to_json(self):
        fields = asdict(self)
        fields["path"] = str(self.path)
        fields["resumed"] = {"args": [str(a) for a in self.resumed.args], "returncode": self.resumed.returncode,
                             "stdout": self.resumed.stdout, "stderr": self.resumed.stderr}
        return fields

    @classmethod
    def from_json(cls, fields):
        return cls(**{**fields, "path": Path(fields["path"]),
                      "resumed": subprocess.CompletedProcess(**fields["resumed"])})


def built_once(build):
    """A session fixture `build(tmp_path_factory, ...)` that builds its run once per test
    session, also when pytest-xdist runs the session on several workers: the workers
    share the parent of their base temporary directories, the first to need the run
    builds it there under an exclusive lock, and the rest wait on the lock and read the
    result (a `KilledAndResumed`'s fields, or a path) from a JSON file beside it."""

    @functools.wraps(build)
    def fixture(tmp_path_factory, **kwargs):
        if "PYTEST_XDIST_WORKER" not in os.environ:
            return build(tmp_path_factory, **kwargs)
        shared = tmp_path_factory.getbasetemp().parent / "built-once" / build.__name__
        shared.mkdir(parents=True, exist_ok=True)
        result_file = shared / "result.json"
        with open(shared / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, whoever built
            if not result_file.exists():
                result = build(_SharedFactory(shared), **kwargs)
                saved = result.to_json() if isinstance(result, KilledAndResumed) else {"path": str(result)}
                result_file.write_text(json.dumps(saved))
        saved = json.loads(result_file.read_text())
        return KilledAndResumed.from_json(saved) if "resumed" in saved else Path(saved["path"])

    return fixture


class _SharedFactory:
    """`tmp_path_factory.mktemp` inside the workers' common directory."""

    def __init__(self, root):
        self.root = root

    def mktemp(self, name):
        path = self.root / name
        path.mkdir()
        return path


def kill_in_epoch_2_and_resume(kind, options, epochs, out):
    command = ["train", kind, *map(str, options), "--epochs", str(epochs), "--out", str(out), "--no-tensorboard"]
    killed_output = kill_zoo_when(command, lambda line: line.startswith("Epoch 2/"), env=ENV, timeout=600)
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    from zoo import runs  # here, not at import: conftest imports this module in every session

    status = runs.status(out)
    resumed = forked_zoo.run([*command, "--resume"], env=ENV, timeout=900)
    return KilledAndResumed(out, epochs, state, status, killed_output, resumed)


@pytest.fixture(scope="session")
def topics_text(tmp_path_factory):
    """Real English: the standard library's `pydoc_data.topics` (~465 KB) as a UTF-8 file."""
    import pydoc_data.topics

    text = "".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
    path = tmp_path_factory.mktemp("text") / "topics.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
@built_once
def text_generation_run(tmp_path_factory, topics_text):
    """The char-LSTM on all of `topics_text`: 3 epochs, 128 units, lr 8e-3, no dropout
    (held out: 2.75, 2.37, 2.21 bits/char by epoch, against test_char_lstm.py's bound of
    2.5; 256 units at 4e-3 cost three times as much for little more), killed in epoch 2
    and resumed (test_tasks.py's kill test). Read by test_char_lstm.py's quality,
    generate, `zoo generate` and export/serve tests."""
    out = tmp_path_factory.mktemp("runs") / "topics"
    return kill_in_epoch_2_and_resume(
        "text-generation", ["--text", topics_text, "--units", 128, "--lr", "8e-3", "--batch-size", 32,
                            "--dropout", 0.0], 3, out)


@pytest.fixture(scope="session")
@built_once
def vae_run(tmp_path_factory):
    """A variational autoencoder on scikit-learn's digits: 5 epochs, an 8-number code,
    input noise 0.2, killed in epoch 2 and resumed (test_tasks.py's kill test). Read by
    test_autoencoder.py's ELBO, sampling and export/serve tests."""
    out = tmp_path_factory.mktemp("runs") / "vae"
    return kill_in_epoch_2_and_resume(
        "autoencoder", ["--data", "digits", "--variational", "--latent-dim", 8, "--noise", 0.2], 5, out)


# The GAN's shared run: a tiny network in small batches, so that an epoch (180 steps of
# 8 of the 1,437 training digits) lasts long enough to be killed in the middle of it.
GAN_OPTIONS = ["--data", "digits", "--width", 8, "--latent-dim", 8, "--batch-size", 8]
GAN_EPOCHS = 3


@pytest.fixture(scope="session")
@built_once
def gan_run(tmp_path_factory):
    """DCGAN on scikit-learn's digits with `GAN_OPTIONS` for `GAN_EPOCHS` epochs, killed in
    epoch 2 and resumed (under the task's old name, `dcgan`). Read by test_dcgan.py's
    kill, `zoo sample` and export/serve tests."""
    out = tmp_path_factory.mktemp("dcgan") / "run"
    return kill_in_epoch_2_and_resume("dcgan", GAN_OPTIONS, GAN_EPOCHS, out)


@pytest.fixture(scope="session")
@built_once
def segmentation_run(tmp_path_factory):
    """`zoo train segmenter` of a U-Net on LeNet-5 (from scratch, 28 px) over 60 pasted-
    object photos (tests/helpers/segmentation_set.py) in batches of 2, so that an epoch
    lasts long enough to be killed in: 3 epochs, killed in epoch 2 and resumed
    (test_tasks.py's kill test)."""
    from tests.helpers import segmentation_set

    root = tmp_path_factory.mktemp("segmentation")
    images, masks = segmentation_set.make_set(60, seed=0)
    data = segmentation_set.write_folder(root / "data", images, masks)
    return kill_in_epoch_2_and_resume("segmenter", ["--data", data, "--model", "lenet5", "--weights", "none",
                                                    "--batch-size", 2], 3, root / "run")


@pytest.fixture(scope="session")
@built_once
def classifier_run(tmp_path_factory, digits):
    """`zoo finetune` of LeNet-5 on a folder of real 1s and 7s: one frozen epoch, one more."""
    from helpers.digit_folders import write_folder

    root = tmp_path_factory.mktemp("classifier_run")
    x_train, _, y_train, _ = digits
    photos = write_folder(root / "photos", x_train, y_train, classes=(1, 7), per_class=20)
    out = root / "run"
    done = forked_zoo.run(["finetune", photos, "--model", "lenet5", "--epochs", "1", "--out", out, "--no-tensorboard"],
                          env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "finetune.out").write_text(done.stdout)  # what the user saw, for the tests of the console
    return out
