"""Kill a process at a moment it announces, not after a guess of how long things take.

A test that kills a training run must kill it where it says: "during epoch 3" is after
the run printed `Epoch 3/5`, whatever the load on the machine. A fixed sleep after a
file appears kills wherever the clock happens to land (mid-write of a sample PNG, or
after the run already ended), and fails under load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading


def kill_when(command, ready, *, env=None, timeout=300):
    """Run `command`; SIGKILL it as soon as a line of its output (stdout and stderr
    together) satisfies `ready(line)`. Returns the output up to the kill.

    Raises:
        AssertionError: the process ended, or `timeout` seconds passed, before a line
            was ready (the output is in the message).
    """
    process = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace", env=env)
    return _kill_when_ready(process, ready, timeout)


def kill_zoo_when(args, ready, *, env=None, timeout=300):
    """`kill_when` for `zoo ARGS` (forked from the test process's zoo fork server where
    it can be: tests/helpers/forked_zoo.py)."""
    from helpers import forked_zoo

    process = forked_zoo.popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return _kill_when_ready(process, ready, timeout)


def _kill_when_ready(process, ready, timeout):
    lines, seen = [], threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line)
            if ready(line.rstrip("\n")):
                seen.set()
                return
        seen.set()  # the output ended: the process is gone

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        seen.wait(timeout)
        alive = process.poll() is None
        matched = bool(lines) and ready(lines[-1].rstrip("\n"))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
    output = "".join(lines)
    assert matched and alive, f"the process ended or timed out before it was ready to be killed:\n{output[-3000:]}"
    return output


def free_ports(count):
    """`count` distinct loopback ports that were free a moment ago (for workers and servers)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def stop_with_ctrl_c(process, timeout=60):
    """Stop a server as a user at its terminal would (SIGINT: it shuts down and takes its
    worker processes with it); SIGKILL only when it has not exited in `timeout` seconds.
    Returns `(stdout, stderr)` read to the end."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def group_processes(pgid):
    """The live (not zombie) processes of process group `pgid`, from /proc: a process
    started with `start_new_session=True` leads its own group, and every process it
    starts (a pool's workers, multiprocessing's resource tracker) stays in it, even
    once orphaned."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def wait_for_no_group(pgid, timeout=30):
    """Wait (up to `timeout` seconds, polling) until process group `pgid` has no live
    process; returns the pids still alive then (empty: none left)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        alive = group_processes(pgid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)
