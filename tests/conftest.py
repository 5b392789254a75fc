"""Shared fixtures: a local HTTP file server with fault injection, an isolated zoo home,
and test weight manifests. Nothing here touches the network beyond 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ------------------------------------------------------------------------ tiers
# keras-hub's habit: the default run is the fast tier (the README's test command, a
# few minutes on 2 cores); tests marked `large` (whole trainings in subprocesses, kills
# and resumes, clusters, servers under load) run with --run_large, as CI does.
def pytest_addoption(parser):
    parser.addoption("--run_large", action="store_true", default=False,
                     help="also run the large tier (tests marked `large`); CI runs it")
    parser.addoption("--run_deep", action="store_true", default=False,
                     help="also run tests marked `deep`: the deepest models, too slow for CI's 15 minutes "
                          "(run by hand; their figures are in the README)")


def pytest_collection_modifyitems(config, items):
    skip_large = pytest.mark.skip(reason="large tier: run with --run_large")
    skip_deep = pytest.mark.skip(reason="the deepest models: run with --run_deep")
    for item in items:
        if item.get_closest_marker("large") and not config.getoption("--run_large"):
            item.add_marker(skip_large)
        elif item.get_closest_marker("deep") and not config.getoption("--run_deep"):
            item.add_marker(skip_deep)


# ------------------------------------------------------------------------ trained runs
# One trained run per kind, shared by the session's tests of that kind (built only when
# a test that asks for one runs): see tests/helpers/trained_runs.py.
from helpers.trained_runs import (  # noqa: E402, F401
    classifier_run, gan_run, segmentation_run, text_generation_run, topics_text, vae_run)


# ------------------------------------------------------------------------ file server
@dataclass
class ServedFile:
    data: bytes
    status: int = 200
    # Close the connection after this many body bytes, on the first `cut_times` requests.
    cut_after: int | None = None
    cut_times: int = 1
    # Answer Range requests with the whole file (200), like servers without range support.
    ignore_range: bool = False
    # Seconds to sleep per 64 KiB sent: keeps a download in flight for concurrency tests.
    throttle: float = 0.0
    cuts_done: int = 0


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    started: float = 0.0  # time.time() when the request arrived
    finished: float | None = None  # ... and when its response was sent (None: not yet)

    @property
    def range(self):
        return self.headers.get("Range")


class FileServer:
    """A threaded HTTP server on 127.0.0.1 serving bytes from memory.

    `add(path, data, ...)` publishes a file (see `ServedFile` for the faults it can
    inject); `url(path)` is its address; `requests` records every request with its
    headers, so tests can check that a retry really sent `Range`.
    """

    def __init__(self):
        self.files: dict[str, ServedFile] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body):
                request = Request(self.command, self.path, dict(self.headers), time.time())
                with server._lock:
                    server.requests.append(request)
                    served = server.files.get(self.path)
                    cut = None
                    if served is not None and served.cut_after is not None and served.cuts_done < served.cut_times:
                        served.cuts_done += 1
                        cut = served.cut_after
                if served is None or served.status != 200:
                    status = 404 if served is None else served.status
                    self.send_error(status)
                    request.finished = time.time()
                    return
                data, start, status = served.data, 0, 200
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if match and not served.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        request.finished = time.time()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    request.finished = time.time()
                    return
                payload = memoryview(data)[start:]
                if cut is not None:
                    payload = payload[:cut]
                try:
                    for offset in range(0, len(payload), 1 << 16):
                        if offset and served.throttle:
                            time.sleep(served.throttle)
                        self.wfile.write(payload[offset:offset + (1 << 16)])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                request.finished = time.time()
                if cut is not None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self):
        self._thread.start()
        return self

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def add(self, path, data, **faults) -> str:
        path = "/" + path.lstrip("/")
        self.files[path] = ServedFile(bytes(data), **faults)
        return self.url(path)

    def url(self, path) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def requests_for(self, path, method="GET"):
        path = "/" + path.lstrip("/")
        return [r for r in self.requests if r.path == path and r.method == method]


@pytest.fixture
def file_server():
    """A `FileServer` running for one test."""
    with FileServer() as server:
        yield server


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 whose port refuses connections (the "no network" case)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights.h5"


# ------------------------------------------------------------------------ zoo home
@pytest.fixture
def zoo_home(tmp_path, monkeypatch):
    """An empty `$ZOO_HOME` for one test, with no extra manifests."""
    home = tmp_path / "zoo_home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.delenv("ZOO_MANIFEST", raising=False)
    return home


def hash_of(data: bytes, algorithm="sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def variant(model, variant_name, url, data=None, hash=None, algorithm="sha256", **fields):
    """One manifest variant; its hash is computed from `data` unless `hash` is given."""
    return {
        "model": model,
        "variant": variant_name,
        "url": url,
        "hash": hash or hash_of(data, algorithm),
        "size": None if data is None else len(data),
        "license": "test",
        "origin": "written by the test",
        **fields,
    }


@pytest.fixture
def weights_manifest(tmp_path, monkeypatch, zoo_home):
    """`write(*variants)` writes a test manifest and puts it on `$ZOO_MANIFEST`.

    Build variants with `conftest.variant(...)` (also given as `write.variant`); they
    override the shipped manifest's entries of the same model and variant.
    """
    count = [0]

    def write(*variants):
        count[0] += 1
        path = tmp_path / f"manifest_{count[0]}.json"
        path.write_text(json.dumps({"format": 1, "variants": list(variants)}, indent=1))
        previous = os.environ.get("ZOO_MANIFEST")
        monkeypatch.setenv("ZOO_MANIFEST", os.pathsep.join(filter(None, [previous, str(path)])))
        return path

    write.variant = variant
    write.hash_of = hash_of
    return write


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits at 28x28, split as every recipe splits them:
    `(x_train, x_test, y_train, y_test)`."""
    from zoo.data.digits import load_digits_28, train_test_split_digits

    x, y = load_digits_28()
    return train_test_split_digits(x, y)
