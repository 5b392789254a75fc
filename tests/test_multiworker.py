"""`zoo finetune --distribute multiworker`: two worker processes on 127.0.0.1, each with
its own TF_CONFIG, train through Keras' own `fit` under TensorFlow's
MultiWorkerMirroredStrategy. Both end with the same weights, equal to one process
training on the same global batch; a worker that dies stops the other with one clear
line within seconds, not a hang."""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import forked_zoo
from helpers.digit_folders import write_folder
from helpers.processes import free_ports

pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)


ROOT = Path(__file__).resolve().parents[1]
# lenet5 from scratch with a frozen-head phase first: phase 1 trains the head on cached
# features (array data), phase 2 everything on the image dataset, which reshuffles
# every epoch. No head dropout: each replica would draw its own masks.
FINETUNE = ["--model", "lenet5", "--freeze-epochs", "1", "--batch-size", "16", "--head-dropout", "0",
            "--no-tensorboard"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from zoo.data.digits import load_digits_28

    x, y = load_digits_28()
    # 96 training images: whole global batches of 16, 8 per worker.
    return write_folder(tmp_path_factory.mktemp("digits"), x, y, classes=(0, 1, 2), per_class=40)


def start_workers(args, out, log_dir):
    """Both workers of a 2-worker cluster running `zoo finetune ARGS --out OUT`."""
    ports = free_ports(2)
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "3",
               "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(ROOT)}
        stdout = open(log_dir / f"worker{index}.out", "w")
        stderr = open(log_dir / f"worker{index}.err", "w")
        workers.append(forked_zoo.popen(["finetune", *args, "--out", out, "--distribute", "multiworker"],
                                        stdout=stdout, stderr=stderr, env=env, cwd=log_dir))
    return workers


def weights(run_dir):
    from zoo import runs

    return np.concatenate([np.asarray(w).reshape(-1) for w in runs.load_model(run_dir).weights])


def test_two_workers_finetune_to_the_weights_of_one_process(digits, tmp_path):
    import zoo

    out = tmp_path / "run"
    workers = start_workers([str(digits), "--epochs", "2", *FINETUNE], out, tmp_path)
    # Meanwhile, the same run in one process (this one).
    zoo.finetune(digits, model="lenet5", epochs=2, freeze_epochs=1, batch_size=16, head_dropout=0.0,
                 out=tmp_path / "single", no_tensorboard=True, verbose=0)
    for index, worker in enumerate(workers):
        assert worker.wait(timeout=300) == 0, (tmp_path / f"worker{index}.err").read_text()[-3000:]

    # The chief (worker 0) wrote the run it was given; worker 1 its own beside it.
    assert (out / "model.keras").is_file() and (tmp_path / "run.worker-1" / "model.keras").is_file()
    chief, other, single = weights(out), weights(tmp_path / "run.worker-1"), weights(tmp_path / "single")
    assert np.array_equal(chief, other)
    assert np.abs(chief - single).max() < 1e-5, np.abs(chief - single).max()
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["phase"] for h in history] == [1, 2, 2]
    assert history[-1]["loss"] < history[0]["loss"]
    # Each worker logged the loss of the whole global batch, not of its half.
    single_history = json.loads((tmp_path / "single" / "metrics.json").read_text())["history"]
    assert [round(h["loss"], 4) for h in history] == [round(h["loss"], 4) for h in single_history]


def run_both(args, out, log_dir):
    workers = start_workers(args, out, log_dir)
    try:
        return [worker.wait(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()


def test_a_killed_worker_stops_the_other_and_the_run_resumes(digits, tmp_path):
    out, other = tmp_path / "run", tmp_path / "run.worker-1"
    # 1 frozen epoch + 3: killed as epoch 3 starts, the run still has epochs to train
    # (a synchronous worker cannot finish them alone).
    args = [str(digits), "--epochs", "3", *FINETUNE]
    workers = start_workers(args, out, tmp_path)
    try:
        log = tmp_path / "worker0.out"
        deadline = time.time() + 120
        while "Epoch 3/" not in log.read_text():
            assert time.time() < deadline and workers[0].poll() is None, (tmp_path / "worker0.err").read_text()
            time.sleep(0.2)
        workers[1].kill()
        killed = time.time()
        code = workers[0].wait(timeout=90)
        waited = time.time() - killed
    finally:
        for worker in workers:
            worker.kill()
    error = (tmp_path / "worker0.err").read_text().strip().splitlines()
    assert code == 1, error[-5:]
    assert waited < 60, waited
    assert error[-1].startswith("zoo finetune: error: worker 0: the multi-worker run lost a worker "
                                "(/job:worker/replica:0/task:1 stopped answering)"), error[-1]
    assert "Traceback" not in "\n".join(error)

    # Workers whose runs stopped at different epochs refuse to resume together (each
    # would train its own weights with the others' gradients), saying so.
    state_file = out / "checkpoints" / "state.json"
    done = json.loads(state_file.read_text())["epochs_done"]
    shutil.rmtree(other)
    shutil.copytree(out, other)
    state = json.loads((other / "checkpoints" / "state.json").read_text())
    (other / "checkpoints" / "state.json").write_text(json.dumps({**state, "epochs_done": done - 1}))
    assert run_both([*args, "--resume"], out, tmp_path) == [1, 1]
    assert "the workers' runs stopped at different epochs" in (tmp_path / "worker1.err").read_text()

    # What that line tells the user to do: the chief's run over the other's, then resume.
    shutil.rmtree(other)
    shutil.copytree(out, other)
    assert run_both([*args, "--resume"], out, tmp_path) == [0, 0], (tmp_path / "worker0.err").read_text()[-3000:]
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, 5))
    assert np.array_equal(weights(out), weights(other))


def test_a_late_worker_is_waited_for_and_sigterm_stops_a_training_worker(digits, tmp_path):
    """Worker 0 alone says it waits for worker 1 (tests/test_trust_cluster.py: the
    deadline); worker 1 started later joins and both train. SIGTERM then stops worker 1
    at once (TensorFlow's coordination service takes SIGTERM for a preemption notice and
    would train on; zoo gives it back), and worker 0 stops with the lost-worker line."""
    ports = free_ports(2)
    args = [str(digits), "--epochs", "4", *FINETUNE]

    def start(index):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "3",
               "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(ROOT)}
        return forked_zoo.popen(["finetune", *args, "--out", tmp_path / "run", "--distribute", "multiworker"],
                                stdout=open(tmp_path / f"worker{index}.out", "w"),
                                stderr=open(tmp_path / f"worker{index}.err", "w"), env=env, cwd=tmp_path)

    def wait_for(index, text, seconds=180):
        log = tmp_path / (f"worker{index}.err" if "waiting" in text else f"worker{index}.out")
        deadline = time.time() + seconds
        while text not in log.read_text():
            assert time.time() < deadline and workers[index].poll() is None, \
                (tmp_path / f"worker{index}.err").read_text()[-3000:]
            time.sleep(0.1)

    workers = [start(0)]
    try:
        wait_for(0, f"worker 0: waiting for worker 1 at 127.0.0.1:{ports[1]} to start")
        workers.append(start(1))
        wait_for(0, "Epoch 2/")
        wait_for(1, "Epoch 2/")
        workers[1].send_signal(signal.SIGTERM)
        signalled = time.time()
        code = workers[1].wait(timeout=60)
        took = time.time() - signalled
        chief = workers[0].wait(timeout=120)
        lost = time.time() - signalled
    finally:
        for worker in workers:
            worker.kill()
    print(f"\nSIGTERM stopped a training worker in {took:.2f} s; the other stopped {lost:.1f} s after the signal")
    assert code == -signal.SIGTERM and took < 10, (code, took)
    error = (tmp_path / "worker0.err").read_text().strip().splitlines()
    assert chief == 1 and "Traceback" not in "\n".join(error), error[-5:]
    assert error[-1].startswith("zoo finetune: error: worker 0: the multi-worker run lost a worker"), error[-1]
