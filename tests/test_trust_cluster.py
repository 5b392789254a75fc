"""Multi-worker start-up that a user can read and stop (issue 22, item 6).

A malformed `TF_CONFIG` is one line naming what is wrong, not TensorFlow's traceback. A
worker whose peers have not started says within a second whom it waits for and where,
gives up after `ZOO_CLUSTER_TIMEOUT` seconds with one line naming the task that never
answered, and stops at once on Ctrl-C or SIGTERM (TensorFlow's own start-up waits
silently, with no deadline, deaf to both). The fast tier checks the parts in this
process; the large tier runs `zoo finetune --distribute multiworker` as a user does,
with the time bounds measured from outside. Two workers that really train:
tests/test_multiworker.py.
"""

import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import forked_zoo

from helpers.processes import free_ports

from zoo.errors import OptionError
from zoo.training import distribute
from zoo.training.distribute import ClusterTimeoutError, cluster_task, cluster_timeout, wait_for_cluster

ROOT = Path(__file__).resolve().parents[1]


def tf_config(addresses, index=0, task_type="worker", job="worker"):
    return json.dumps({"cluster": {job: addresses}, "task": {"type": task_type, "index": index}})


WORKER = {"type": "worker", "index": 0}
# (what is wrong, TF_CONFIG, what the one line says)
MALFORMED = [
    ("not JSON", "{cluster: [127.0.0.1:2222]}", "TF_CONFIG is not JSON"),
    ("not an object", "[1, 2]", 'must be a JSON object with a "cluster" and a "task"'),
    ("no task", json.dumps({"cluster": {"worker": ["127.0.0.1:2222"]}}), 'with a "cluster" and a "task"'),
    ("a job that is not a list", json.dumps({"cluster": {"worker": "127.0.0.1:2222"}, "task": WORKER}),
     'a list of "host:port" addresses'),
    ("an address that is a number", json.dumps({"cluster": {"worker": [2222]}, "task": WORKER}),
     "worker 0 address must be a \"host:port\" string"),
    ("an address without a port", json.dumps({"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1"]},
                                              "task": WORKER}), "worker 1 address has no port"),
    ("a port that is not one", json.dumps({"cluster": {"worker": ["127.0.0.1:http"]}, "task": WORKER}),
     "must end in a port from 1 to 65535"),
    ("a port out of range", json.dumps({"cluster": {"worker": ["127.0.0.1:70000"]}, "task": WORKER}),
     "must end in a port from 1 to 65535"),
    ("the same address twice", json.dumps({"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2222"]},
                                           "task": WORKER}), "the same address 127.0.0.1:2222"),
    ("a parameter server", json.dumps({"cluster": {"worker": ["127.0.0.1:2222"], "ps": ["127.0.0.1:2223"]},
                                       "task": WORKER}), "may name only 'chief' and 'worker' tasks"),
    ("a task type not in the cluster", json.dumps({"cluster": {"worker": ["127.0.0.1:2222"]},
                                                   "task": {"type": "chief", "index": 0}}),
     "task type must be one of its cluster's jobs (worker)"),
    ("a task index out of range", json.dumps({"cluster": {"worker": ["127.0.0.1:2222"]},
                                              "task": {"type": "worker", "index": 1}}),
     "task 'worker' 1 is not in its cluster"),
    ("a task index that is text", json.dumps({"cluster": {"worker": ["127.0.0.1:2222"]},
                                              "task": {"type": "worker", "index": "0"}}),
     "task 'worker' '0' is not in its cluster"),
]


@pytest.mark.parametrize("config, said", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_tf_config_is_one_line_naming_what_is_wrong(config, said):
    with pytest.raises(OptionError) as raised:
        cluster_task({"TF_CONFIG": config})
    message = str(raised.value)
    assert said in message and "\n" not in message, message


def test_well_formed_tf_configs_pass():
    assert cluster_task({"TF_CONFIG": tf_config(["10.0.0.1:2222", "[::1]:2222", "host-b.local:1"], 2)}) == (
        "worker", 2, {"worker": ["10.0.0.1:2222", "[::1]:2222", "host-b.local:1"]})
    chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief"}})
    assert cluster_task({"TF_CONFIG": chief})[:2] == ("chief", 0)


@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf", "nan"])
def test_a_bad_cluster_timeout_is_one_line(value):
    with pytest.raises(OptionError, match=rf"ZOO_CLUSTER_TIMEOUT must be a positive number of seconds\. "
                                          rf"Received: ZOO_CLUSTER_TIMEOUT='{value}'"):
        cluster_timeout({"ZOO_CLUSTER_TIMEOUT": value})
    assert cluster_timeout({}) == 300 and cluster_timeout({"ZOO_CLUSTER_TIMEOUT": "2.5"}) == 2.5


@pytest.fixture
def fresh_wait(monkeypatch):
    """wait_for_cluster as in a new process (it waits once per process)."""
    monkeypatch.setattr(distribute, "_CLUSTER_READY", False)


def test_a_peer_that_never_starts_is_named_while_waiting_and_when_giving_up(fresh_wait):
    ports = free_ports(2)
    said = io.StringIO()
    started = time.monotonic()
    with pytest.raises(ClusterTimeoutError) as raised:
        wait_for_cluster({"TF_CONFIG": tf_config([f"127.0.0.1:{p}" for p in ports])}, timeout=1.5, stream=said)
    took = time.monotonic() - started
    assert 1.5 <= took < 5, took
    lines = said.getvalue().splitlines()
    assert lines == [f"worker 0: waiting for worker 1 at 127.0.0.1:{ports[1]} to start (1 s so far; gives up after "
                     f"1.5 s, set ZOO_CLUSTER_TIMEOUT to change)"], lines
    assert str(raised.value) == (
        f"worker 0: worker 1 at 127.0.0.1:{ports[1]} (connection refused) did not answer within 1.5 s, so this "
        f"worker stops. Start the same command on every task TF_CONFIG names; ZOO_CLUSTER_TIMEOUT sets how long to "
        f"wait (now 1.5 s).")
    # Its own port was free again at once, for TensorFlow's server (or the next try).
    with socket.create_server(("127.0.0.1", ports[0])):
        pass


def test_workers_started_apart_find_each_other(fresh_wait):
    """Worker 1 starts 1.5 s after worker 0 (and a chief after both): each waits only
    until the others have started, whichever port answers first, and says so."""
    ports = free_ports(3)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{p}" for p in ports[1:]]}
    outcome, streams = {}, {}

    def worker(task_type, index):
        streams[task_type, index] = io.StringIO()
        environ = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}
        try:
            wait_for_cluster(environ, timeout=30, stream=streams[task_type, index])
            outcome[task_type, index] = time.monotonic()
        except Exception as error:  # noqa: BLE001 - reported below
            outcome[task_type, index] = error

    threads, start = [], time.monotonic()
    for delay, task in ((0, ("worker", 0)), (1.5, ("worker", 1)), (2.0, ("chief", 0))):
        time.sleep(max(0.0, start + delay - time.monotonic()))
        # Each thread stands for a process of its own; none can finish before the last starts.
        distribute._CLUSTER_READY = False
        threads.append(threading.Thread(target=worker, args=task))
        threads[-1].start()
    last_start = time.monotonic()
    for thread in threads:
        thread.join(30)
    assert len(outcome) == 3, outcome
    for task, result in outcome.items():
        assert not isinstance(result, Exception), (task, result)
        assert result - last_start < 3, (task, result - last_start)
    first = streams["worker", 0].getvalue()
    assert f"worker 0: waiting for chief 0 at 127.0.0.1:{ports[0]}, worker 1 at 127.0.0.1:{ports[2]}" in first, first
    assert "every task of the cluster has started" in first, first


def test_a_port_taken_by_another_process_is_one_line(fresh_wait):
    ports = free_ports(2)
    with socket.create_server(("127.0.0.1", ports[0])):
        with pytest.raises(OptionError, match=rf"worker 0: port {ports[0]} of this task's TF_CONFIG address is in use"):
            wait_for_cluster({"TF_CONFIG": tf_config([f"127.0.0.1:{p}" for p in ports])}, timeout=5,
                             stream=io.StringIO())


# ------------------------------------------------------------------ the command line
def start_worker(config, tmp_path, timeout=None):
    """`zoo finetune ... --distribute multiworker` with TF_CONFIG `config`; its stderr
    lines are collected with the time each arrived (seconds after the start)."""
    env = {**os.environ, "TF_CONFIG": config, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": str(ROOT)}
    env.pop("ZOO_CLUSTER_TIMEOUT", None)
    if timeout is not None:
        env["ZOO_CLUSTER_TIMEOUT"] = str(timeout)
    (tmp_path / "data").mkdir(exist_ok=True)  # the data is read after the cluster has met
    started = time.monotonic()
    process = forked_zoo.popen(["finetune", tmp_path / "data", "--model", "lenet5", "--epochs", "1", "--out",
                                tmp_path / "run", "--distribute", "multiworker"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    process.lines = []  # (seconds after the start, line)
    process.started = started

    def read():
        for line in process.stderr:
            process.lines.append((time.monotonic() - started, line.rstrip("\n")))

    process.reader = threading.Thread(target=read, daemon=True)
    process.reader.start()
    return process


def wait_for_line(process, text, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ended = process.poll() is not None and not process.reader.is_alive()
        for at, line in list(process.lines):
            if text in line:
                return at
        assert not ended, [line for _, line in process.lines]
        time.sleep(0.05)
    raise AssertionError(f"no line with {text!r} in {seconds} s: {process.lines}")


def finish(process, seconds=60):
    code = process.wait(timeout=seconds)
    process.reader.join(10)
    return code, [line for _, line in process.lines]


@pytest.mark.parametrize("config, said", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_zoo_finetune_with_a_malformed_tf_config_says_one_line(tmp_path, config, said):
    """Refused before TensorFlow starts (zoo.cli.checks): a fraction of a second each."""
    code, lines = finish(start_worker(config, tmp_path))
    assert code == 1, lines
    assert "Traceback" not in "\n".join(lines), lines
    assert len(lines) == 1 and lines[0].startswith("zoo finetune: error: ") and said in lines[0], lines


@pytest.mark.large
def test_zoo_finetune_says_whom_it_waits_for_and_gives_up_at_the_deadline(tmp_path):
    ports = free_ports(2)
    process = start_worker(tf_config([f"127.0.0.1:{p}" for p in ports]), tmp_path, timeout=3)
    waiting = wait_for_line(process, "waiting for worker 1")
    code, lines = finish(process)
    ended = time.monotonic() - process.started
    print(f"\nwaiting line {waiting:.1f} s after the start; refusal {ended - waiting:.1f} s after it "
          f"(deadline 3 s); {ended:.1f} s in all")
    assert code == 1, lines
    assert "Traceback" not in "\n".join(lines), lines
    assert lines == [
        f"worker 0: waiting for worker 1 at 127.0.0.1:{ports[1]} to start (1 s so far; gives up after 3 s, set "
        f"ZOO_CLUSTER_TIMEOUT to change)",
        f"zoo finetune: error: worker 0: worker 1 at 127.0.0.1:{ports[1]} (connection refused) did not answer "
        f"within 3 s, so this worker stops. Start the same command on every task TF_CONFIG names; "
        f"ZOO_CLUSTER_TIMEOUT sets how long to wait (now 3 s)."], lines
    assert waiting < 30, waiting  # the backend's start-up (~3-5 s on 2 busy cores), then 1 s of waiting
    assert 1.5 < ended - waiting < 8, ended - waiting


@pytest.mark.large
@pytest.mark.parametrize("sent, code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "Ctrl-C"])
def test_a_waiting_worker_stops_at_once_on_sigterm_and_ctrl_c(tmp_path, sent, code):
    ports = free_ports(2)
    process = start_worker(tf_config([f"127.0.0.1:{p}" for p in ports]), tmp_path)  # the default deadline: 300 s
    try:
        wait_for_line(process, "waiting for worker 1")
        signalled = time.monotonic()
        process.send_signal(sent)
        process.wait(timeout=30)
        took = time.monotonic() - signalled
    finally:
        process.kill()
    returned, lines = finish(process)
    print(f"\n{sent.name}: stopped {took:.2f} s after the signal")
    assert returned == code, lines
    assert took < 5, took
    assert "Traceback" not in "\n".join(lines), lines
    if sent == signal.SIGINT:
        assert lines[-1] == "interrupted", lines
