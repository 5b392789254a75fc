"""`zoo ARGS` as a real process, without paying for TensorFlow's import each time.

Most of a test's `zoo` subprocess is Python importing TensorFlow and Keras (~5 s of CPU
on this machine), and the large tier starts about a hundred of them. A fork server (the
zygote of Android and Chrome, multiprocessing's `forkserver` with preloaded modules)
imports them once per test process, runs no operation, and forks a child per command:
the child is a real process with its own pid, environment, working directory, signal
handlers, standard streams (the test's pipes or files, passed over a Unix socket) and
exit status, and it runs `zoo.cli.main` exactly as the console script does.

What a fork cannot give is a fresh interpreter: a command whose environment changes how
TensorFlow, Keras or JAX start (`KERAS_BACKEND`, `TF_*`, `XLA_FLAGS`, ...) gets a fresh
`python -m zoo` instead, as does every command on a process that is not on TensorFlow.
Tests of start-up itself (what a command imports, the lines TensorFlow prints) and of
process groups use `subprocess` directly.

`popen(args, ...)` is `subprocess.Popen`'s subset the tests use (`pid`, `stdout`,
`poll`, `wait`, `send_signal`, `kill`, `communicate`); `run(args, ...)` is
`subprocess.run(capture_output=True, text=True)`'s.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What a child would inherit from the server's interpreter rather than from its own
# environment: a difference in any of these needs a fresh process.
_STARTUP_PREFIXES = ("TF_", "XLA_", "KERAS_", "JAX_", "CUDA_", "TPU_", "OMP_", "MKL_", "OPENBLAS_", "LD_")
_IGNORED = {"TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG"}  # read at run time, not at import
PRELOAD = ("numpy", "PIL.Image", "tensorflow", "keras", "zoo", "zoo.cli", "zoo.cli.checks", "zoo.cli.console",
           "zoo.tasks", "zoo.runs", "zoo.training", "zoo.data", "zoo.transfer", "zoo.interpret")


# ----------------------------------------------------------------------------- server
def _serve(listener):
    """The server's loop: one process, one thread (a fork copies only the calling
    thread), reaping children with WNOHANG between requests."""
    parent = os.getppid()
    clients = {}  # socket -> pid (None until a request arrives)
    while os.getppid() == parent:
        readable, _, _ = select.select([listener, *clients], [], [], 0.05)
        for ready in readable:
            if ready is listener:
                connection, _ = listener.accept()
                clients[connection] = None
                continue
            try:
                message, fds, _, _ = socket.recv_fds(ready, 1 << 20, 3)
            except OSError:
                message, fds = b"", []
            if not message:  # the client went away
                for fd in fds:
                    os.close(fd)
                clients.pop(ready)
                ready.close()
                continue
            request = json.loads(message)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other in clients:
                    other.close()
                _child(request, fds)  # never returns
            for fd in fds:
                os.close(fd)
            clients[ready] = pid
            ready.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for connection, child in list(clients.items()):
                if child == pid:
                    try:
                        connection.sendall(json.dumps({"returncode": _returncode(status)}).encode() + b"\n")
                    except OSError:
                        pass


def _returncode(status):
    """As `subprocess` reports it: the exit code, or minus the signal that ended it."""
    return os.waitstatus_to_exitcode(status)


def _child(request, fds):
    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        for number in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        unbuffered = bool(request["env"].get("PYTHONUNBUFFERED"))
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      line_buffering=unbuffered, write_through=unbuffered)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        import random

        import numpy

        random.seed()
        numpy.random.seed()
        if request.get("python"):
            code = _python(request["python"], request["env"])
        else:
            sys.argv = ["zoo", *request["args"]]
            from zoo.cli import main

            code = main(request["args"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT  # as the interpreter does when SIGINT reaches the top
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code or 0)


def _python(argv, env):
    """What `python ARGV` runs, in this process: `-c CODE ARGS` or `-m MODULE ARGS`,
    after `-W ACTION` options; PYTHONPATH's folders first on sys.path, as Python puts
    them (and the working directory, for `-c`)."""
    import runpy
    import warnings

    argv = list(argv)
    while argv and argv[0] == "-W":
        warnings.simplefilter(argv[1])
        argv = argv[2:]
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path[:0] = ["", *extra]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    elif argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[:0] = [os.getcwd(), *extra]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        raise SystemExit(f"forked_zoo: python {argv[0]!r}: only -c and -m")
    return 0


def main():
    path = sys.argv[1]
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # What `zoo.cli.console.start_backend` quiets in a fresh process, done here so that a
    # child does not print it: looking for devices (a CUDA build's cuInit) starts no
    # threads; the first operation would, so none runs here.
    sys.modules["tensorflow"].config.list_physical_devices()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    _serve(listener)


# ----------------------------------------------------------------------------- client
_server = None
_server_lock = threading.Lock()


class _Server:
    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="zoo-forks-")
        self.path = os.path.join(self.folder, "socket")
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                    "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
        self.process = subprocess.Popen([sys.executable, "-m", "helpers.forked_zoo", self.path], env=self.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                        text=True)
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError("the zoo fork server did not start")
        atexit.register(self.close)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        try:
            os.unlink(self.path)
            os.rmdir(self.folder)
        except OSError:
            pass

    def takes(self, env):
        """Whether a child forked from the server starts as `python -m zoo` would with
        `env`: the variables that act at import time agree."""
        def startup(environ):
            found = {k: v for k, v in environ.items() if k.startswith(_STARTUP_PREFIXES) and k not in _IGNORED}
            found.setdefault("KERAS_BACKEND", "tensorflow")
            return found
        return startup(env) == startup(self.env)


def _fork_server():
    global _server
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or os.environ.get("ZOO_NO_FORK_SERVER"):
        return None
    with _server_lock:
        if _server is None or _server.process.poll() is not None:
            try:
                _server = _Server()
            except (RuntimeError, OSError):
                _server = None
        return _server


class ForkedProcess:
    """A zoo command forked from the server: `subprocess.Popen`'s face."""

    def __init__(self, server, args, env, cwd, stdin, stdout, stderr, python=None):
        self.args = [sys.executable, *python] if python else ["zoo", *args]
        self.returncode = None
        self._connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._connection.connect(server.path)
        self._buffer = b""
        ends, mine = [], []  # the child's three streams; the ends this side keeps
        for number, spec in enumerate((stdin, stdout, stderr)):
            if spec == subprocess.PIPE:
                read, write = os.pipe()
                child_end, my_end = (read, write) if number == 0 else (write, read)
                ends.append(child_end)
                mine.append(my_end)
            elif spec == subprocess.STDOUT:
                ends.append(ends[1])
                mine.append(None)
            elif spec is None or spec == subprocess.DEVNULL:
                ends.append(os.open(os.devnull, os.O_RDWR))
                mine.append(None)
            else:  # a file object or descriptor
                ends.append(os.dup(spec if isinstance(spec, int) else spec.fileno()))
                mine.append(None)
        request = {"args": [str(a) for a in args], "env": dict(env), "cwd": str(cwd),
                   "python": [str(a) for a in python] if python else None}
        try:
            socket.send_fds(self._connection, [json.dumps(request).encode()], ends)
        finally:
            for fd in set(ends):
                os.close(fd)
        self.pid = self._read()["pid"]
        self.stdin = os.fdopen(mine[0], "w") if mine[0] is not None else None
        self.stdout = os.fdopen(mine[1], "r", errors="replace") if mine[1] is not None else None
        self.stderr = os.fdopen(mine[2], "r", errors="replace") if mine[2] is not None else None

    def _read(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._connection.settimeout(left)
            try:
                chunk = self._connection.recv(4096)
            except (TimeoutError, BlockingIOError):
                raise subprocess.TimeoutExpired(self.args, timeout) from None
            if not chunk:
                raise RuntimeError("the zoo fork server went away")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def poll(self):
        if self.returncode is None:
            try:
                self.returncode = self._read(timeout=0)["returncode"]
            except subprocess.TimeoutExpired:
                return None
            self._connection.close()
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.returncode = self._read(timeout)["returncode"]
            self._connection.close()
        return self.returncode

    def send_signal(self, number):
        if self.returncode is None:
            try:
                os.kill(self.pid, number)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout=None):
        """Read stdout and stderr to their ends (on threads, so neither pipe fills) and
        wait; like Popen's, except that a timeout kills the child."""
        results = {}

        def drain(name, stream):
            results[name] = stream.read() if stream is not None else None

        readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
                   for n, s in (("stdout", self.stdout), ("stderr", self.stderr))]
        for reader in readers:
            reader.start()
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise
        finally:
            for reader in readers:
                reader.join()
            for stream in (self.stdout, self.stderr):
                if stream is not None:
                    stream.close()
        return results.get("stdout"), results.get("stderr")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.returncode is None:
            self.kill()
            self.wait()


def popen(args, *, env=None, cwd=None, stdin=subprocess.DEVNULL, stdout=None, stderr=None, fresh=False):
    """`zoo ARGS` started: forked from the server where it can start the same way,
    else (or with `fresh`) `python -m zoo`; text streams either way."""
    environment = dict(os.environ if env is None else env)
    cwd = os.getcwd() if cwd is None else cwd
    server = None if fresh else _fork_server()
    if server is not None and server.takes(environment):
        return ForkedProcess(server, args, environment, cwd, stdin, stdout, stderr)
    return subprocess.Popen([sys.executable, "-m", "zoo", *map(str, args)], env=environment, cwd=cwd, stdin=stdin,
                            stdout=stdout, stderr=stderr, text=True, errors="replace")


def python_popen(argv, *, env=None, cwd=None, stdin=subprocess.DEVNULL, stdout=None, stderr=None):
    """`python ARGV` (`-c CODE ...` or `-m MODULE ...`, after `-W` options) started,
    forked from the server where the environment lets it start the same way; for code
    that must not find TensorFlow, Keras or zoo already imported, use `subprocess`."""
    environment = dict(os.environ if env is None else env)
    cwd = os.getcwd() if cwd is None else cwd
    server = _fork_server()
    if server is not None and server.takes(environment):
        return ForkedProcess(server, [], environment, cwd, stdin, stdout, stderr, python=argv)
    return subprocess.Popen([sys.executable, *map(str, argv)], env=environment, cwd=cwd, stdin=stdin,
                            stdout=stdout, stderr=stderr, text=True, errors="replace")


def python_run(argv, *, env=None, cwd=None, timeout=300, check=False):
    """`python ARGV` to its end: `subprocess.run(..., capture_output=True, text=True)`."""
    done = _finish(python_popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE), timeout)
    if check and done.returncode:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done


def run(args, *, env=None, cwd=None, timeout=300, fresh=False):
    """`zoo ARGS` to its end: `subprocess.run(..., capture_output=True, text=True)`."""
    return _finish(popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, fresh=fresh),
                   timeout)


def _finish(process, timeout):
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


if __name__ == "__main__":
    main()
