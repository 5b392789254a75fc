"""TF Serving's REST API over a `ModelStore`, on a real HTTP stack: uvicorn's httptools
(llhttp) protocol, subclassed here for the limits uvicorn does not keep, under a bare
ASGI application (`RestApp`) that routes requests as TF Serving's
`http_rest_api_handler.cc` does and answers with its JSON (the codec is
`zoo.serving.json_tensor`). `RestServer` runs both on an event loop of its own thread
(uvloop where installed); `zoo.serving.server.ModelServer` runs a `RestServer`.

REST, as https://www.tensorflow.org/tfx/serving/api_rest documents it:

    GET  /v1/models/NAME[/versions/V|/labels/L]            model_version_status
    GET  /v1/models/NAME[/versions/V|/labels/L]/metadata   signature defs
    POST /v1/models/NAME[/versions/V|/labels/L]:predict    {"instances": ...} or {"inputs": ...}
    POST /v1/models/NAME[/versions/V|/labels/L]:classify   {"examples": [...], "context": {...}}
    POST /v1/models/NAME[/versions/V|/labels/L]:regress
    GET  /monitoring/prometheus/metrics                    Prometheus metrics
    GET  /, /ui/...                                        the web page (`zoo serve --ui`; zoo.serving.page)
    OPTIONS ...                                            CORS preflight

A refused request gets TF Serving's status (400 for a malformed URL or body, 404 for an
unknown model or version) and `{"error": "..."}`; the server keeps serving. A request
the HTTP parser refuses (a malformed request line, ambiguous framing: Content-Length
with Transfer-Encoding, two Content-Lengths, a space before a header's colon) gets a
400 and `{"error": ...}` too, and its connection is closed, so nothing sent after it on
that connection is ever answered.

Limits (`RestLimits`; `zoo serve`'s flags): header bytes per request (431) and in flight
across all connections (503), body bytes (413, refused from Content-Length before the
body is read, Expect: 100-continue included), connections (503 at once), time to send
the headers (408), an idle connection or a stalled body (closed; 408 mid-body), and a
per-request deadline (504, TF Serving's `--rest_api_timeout_in_ms`). Model calls run in
a pool of threads, never on the event loop; bodies over 1 MiB are parsed in worker
processes (`json.loads` of a 32 MiB body holds the interpreter lock for seconds), which
exit as soon as the server process is gone, however it ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import queue
import re
import socket
import threading
import time
import urllib.parse

from zoo.serving import SIGNATURE_DEFAULT
from zoo.serving.json_tensor import (
    classification_json,
    error_json,
    examples_input,
    regression_json,
    request_arrays,
    tensors_json,
)
from zoo.serving.errors import DeadlineExceeded, ServingError
from zoo.serving.page import HEADERS as PAGE_HEADERS
from zoo.serving.store import log

METRICS_PATH = "/monitoring/prometheus/metrics"


def metadata_json(servable):
    """GetModelMetadataResponse as JSON, as TF Serving's REST API writes it: every field
    printed, defaults included (`"defaults": {}`, `"unknown_rank": false`, ...)."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(definition)
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {
            "signature_def": json_format.MessageToDict(
                signature_map, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
        },
    }


# -------------------------------------------------------------------------- routing
_V1 = re.compile(r"(?i)/v1/.*")
_PREDICTION = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_MODEL_STATUS = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
_INT64_MAX = 2**63 - 1


@dataclasses.dataclass
class Route:
    name: str = ""
    version: int | None = None
    label: str | None = None
    method: str = ""  # predict | classify | regress (POST), metadata | "" (GET)


def route(http_method, path):
    """TF Serving's ParseModelInfo: a /v1 path → `Route`, or None where the path does
    not parse (the request is then "Malformed")."""
    if http_method == "POST":
        match = _PREDICTION.fullmatch(path)
    elif http_method == "GET":
        match = _MODEL_STATUS.fullmatch(path)
    else:
        return None
    if not match:
        return None
    name, version, label, method = match.groups()
    found = Route(method=method or "")
    if name:
        found.name = urllib.parse.unquote(name, errors="surrogateescape")
    if version:
        if int(version) > _INT64_MAX:
            raise ServingError(f"Failed to convert version: {version} to numeric.")
        found.version = int(version)
    if label:
        found.label = urllib.parse.unquote(label, errors="surrogateescape")
    return found


# Bodies this large are parsed in a worker process: json.loads holds the interpreter
# lock for seconds on a 32 MiB body, and every other request would wait for it.
LARGE_BODY_BYTES = 1 << 20
_parser = None
_parser_lock = threading.Lock()


def _parser_pool():
    global _parser
    with _parser_lock:
        if _parser is None:
            import concurrent.futures
            import multiprocessing

            # spawn: a fork of a process running TensorFlow's threads is not safe.
            _parser = concurrent.futures.ProcessPoolExecutor(
                max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent, initargs=(os.getpid(),))
        return _parser


def shutdown_parser_pool():
    """Stop the parser processes (if any were started) and wait for them to exit."""
    global _parser
    with _parser_lock:
        pool, _parser = _parser, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _watch_parent(parent):
    """Run in each parser process as it starts: exit as soon as the server process is
    gone (SIGKILL included: it has no chance to stop its children), rather than linger
    as an orphan. (Not prctl's PDEATHSIG: that fires when the *thread* that spawned the
    process exits, and a pool spawns its processes from whichever thread submits.)"""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.25)
        os._exit(0)

    threading.Thread(target=watch, name="zoo-parent-watch", daemon=True).start()


def _specs_for(specs_by_signature, signature_name):
    name = signature_name or SIGNATURE_DEFAULT
    if name not in specs_by_signature:
        raise ServingError(f'Serving signature name: "{name}" not found in signature def')
    return specs_by_signature[name]


def _parse_predict(body_bytes, specs_by_signature):
    try:
        return request_arrays(body_bytes, lambda name: _specs_for(specs_by_signature, name))
    except UnicodeEncodeError as error:  # here too: a large body is parsed in a worker process
        raise ServingError(lone_surrogate_message(error)) from None


def lone_surrogate_message(error):
    """The 400's words for a JSON string with a lone surrogate (`"\\ud800"`): valid JSON,
    but not Unicode text, so it has no UTF-8 bytes to give a string tensor (rapidjson,
    TF Serving's parser, refuses it with the first sentence)."""
    bad = error.object[error.start:error.end] if isinstance(error.object, str) else ""
    shown = "".join(f"\\u{ord(c):04x}" for c in bad[:2])
    return (f"JSON Parse error: The surrogate pair in string is invalid: a string holds the lone surrogate "
            f"{shown}, which is not a character (a character above U+FFFF is written as a pair of \\u "
            "escapes, high then low)")


def parse_predict(body_bytes, servable):
    """A predict body → `(signature name, {input: array}, "row" | "columnar")`; parsed
    here for a small body and in a worker process for a large one."""
    specs = {name: signature.inputs for name, signature in servable.signatures.items()}
    if len(body_bytes) < LARGE_BODY_BYTES:
        return _parse_predict(body_bytes, specs)
    try:
        return _parser_pool().submit(_parse_predict, body_bytes, specs).result()
    except ServingError:
        raise
    except Exception as error:  # a worker that died (out of memory): the request fails, not the server
        global _parser
        with _parser_lock:
            _parser = None
        raise ServingError(f"The request body could not be parsed: {type(error).__name__}: {error}") from None


def _serve(store, method, path, found, body):
    # The routes match case-insensitively but dispatch on the exact verb, so
    # ":PREDICT" is as malformed as ":explode" (TF Serving's ProcessRequest).
    if found is None or (method == "POST" and found.method not in ("predict", "classify", "regress")):
        raise ServingError(f"Malformed request: {method} {path}")
    if method == "GET":
        if not found.name:
            raise ServingError("Missing model name in request.")
        if found.method == "metadata":
            servable = store.get(found.name, found.version, found.label)
            return 200, json.dumps(metadata_json(servable))
        # A label on a status request is ignored, as TF Serving's GetModelStatus ignores it.
        return 200, json.dumps({"model_version_status": store.status(found.name, found.version)})
    servable = store.get(found.name, found.version, found.label)
    if found.method == "predict":
        signature_name, arrays, form = parse_predict(body, servable)
        outputs = servable.predict(signature_name or SIGNATURE_DEFAULT, arrays)
        return 200, tensors_json(outputs, form)
    from zoo.serving import example_api

    signature_name, input_proto = examples_input(body)
    if found.method == "classify":
        _, result = example_api.classify(servable, signature_name, input_proto)
        return 200, classification_json(result)
    _, result = example_api.regress(servable, signature_name, input_proto)
    return 200, regression_json(result)


def answer(store, method, path, found, body):
    """One /v1 request, routed (`found`: `route(method, path)`), answered:
    `(status, JSON text)`. Blocking (it runs the model): `RestApp` calls it in its pool
    of threads."""
    try:
        return _serve(store, method, path, found, body)
    except ServingError as error:
        return error.status, error_json(str(error))
    except RecursionError:
        return 400, error_json("The request nests JSON arrays or objects too deeply.")
    except UnicodeEncodeError as error:  # a lone surrogate in a tf.Example's string feature
        return 400, error_json(lone_surrogate_message(error))
    except Exception as error:  # a bug answers 500 and the server goes on
        log.exception("request failed: %s %s", method, path)
        return 500, error_json(f"Internal error: {type(error).__name__}: {error}")


_DRAIN_LIMIT = 256 * 1024 * 1024
_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED",
          503: "UNAVAILABLE", 500: "INTERNAL", 504: "DEADLINE_EXCEEDED"}


# -------------------------------------------------------------------------- limits
@dataclasses.dataclass
class RestLimits:
    """What one client (or many) may hold of the REST server; `zoo serve`'s flags.

    Attributes:
        max_body_bytes: largest request body (413 past it, from Content-Length).
        max_connections: connections served at once; one more gets a 503 at once.
        max_header_bytes: request line and headers of one request (431 past it).
        max_header_bytes_in_flight: header bytes received and not yet complete, over
            all connections together (503 to the connection that crosses it).
        request_timeout: seconds from a request's last byte to its answer (504 past
            it, TF Serving's `--rest_api_timeout_in_ms`); None or 0: no deadline.
        idle_timeout: seconds a connection may stay silent between requests (closed
            past it) or in the middle of a body (408 past it).
        header_timeout: seconds from a request's first byte to its last header byte
            (408 past it: a slow-client, "slowloris", bound).
        grace_period: seconds a stopping server waits for requests in flight.
        threads: model-calling threads (None: 4 per core, at least 8; with server-side
            batching, `max_connections`, so that batches can fill).
    """

    max_body_bytes: int = 32 * 1024 * 1024
    max_connections: int = 256
    max_header_bytes: int = 64 * 1024
    max_header_bytes_in_flight: int = 16 * 1024 * 1024
    request_timeout: float | None = 30.0
    idle_timeout: float = 60.0
    header_timeout: float = 10.0
    grace_period: float = 10.0
    threads: int | None = None


# ---------------------------------------------------------------------- the ASGI app
# A model call may run on the event loop itself (saving two thread hand-offs, about a
# tenth of a millisecond of CPU and latency) only when nothing else is in flight, its
# body is small, no batching can make it wait, and the same route's recent calls all
# took under this long: a slow call, or a busy server, goes to the pool.
INLINE_SECONDS = 0.002
_INLINE_BODY = 64 * 1024
_JSON = b"application/json"
_METRICS_TYPE = b"text/plain; version=0.0.4"
_CORS = [(b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", b"POST, GET"),
         (b"access-control-allow-headers", b"Content-Type")]
_ORIGIN_OK = re.compile(r"https?://")


class _Disconnected(Exception):
    """The client went away before its body arrived."""


class _Workers:
    """A fixed pool of daemon threads running callables from one queue: leaner per call
    than `concurrent.futures` (no Future per call; the answer goes back to the event
    loop by `call_soon_threadsafe`)."""

    def __init__(self, count):
        self._queue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"zoo-rest-{i}", daemon=True)
                         for i in range(count)]
        for thread in self._threads:
            thread.start()

    def _work(self):
        while True:
            job = self._queue.get()
            if job is None:
                return
            job()

    def submit(self, job):
        self._queue.put(job)

    def stop(self):
        for _ in self._threads:
            self._queue.put(None)


def _resolve(waiter, result):
    if not waiter.done():
        waiter.set_result(result)


def _expire(waiter, seconds):
    if not waiter.done():
        waiter.set_exception(DeadlineExceeded(
            f"Deadline exceeded: the request was not answered within this server's limit of "
            f"{seconds * 1000:.0f} ms (--rest_api_timeout_in_ms)."))


class RestApp:
    """The ASGI application: TF Serving's REST API over `store`. Routing, metrics and
    CORS run on the event loop; everything that touches a model (`answer`) runs in
    `workers`, under the per-request deadline."""

    def __init__(self, store, limits=None, metrics=None, enable_cors=False, metrics_path=METRICS_PATH,
                 workers=None, page=None):
        self.store = store
        self.page = page  # a `zoo.serving.page.Page` (zoo serve --ui), or None: no page
        self.limits = limits or RestLimits()
        self.metrics = metrics
        self.enable_cors = bool(enable_cors)
        self.metrics_path = metrics_path
        self.workers = workers
        self.header_bytes = 0  # header bytes in flight over all connections (the loop's thread only)
        self._in_pool = 0  # requests in the pool now (the loop's thread only)
        self._recent = {}  # route -> its recent calls' highest seconds (decaying)
        self._extra = _CORS if self.enable_cors else []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        length, origin = scope.get("zoo.headers") or _scan(scope["headers"])
        close = False
        if method == "HEAD":
            # A HEAD answer has headers only. TF Serving routes HEAD like any method it
            # has no handler for: a malformed request (400).
            return await self._reply(send, 400, b"")
        found = None
        try:
            if method in ("GET", "OPTIONS", "DELETE") and length in (None, "0"):
                body = b""
            elif length is None:
                close = True
                raise ServingError("A POST needs a Content-Length header (chunked bodies are not supported).")
            else:
                body = await _read(receive)
            if method == "GET" and path == self.metrics_path:
                text = self.metrics.render() if self.metrics else ""
                return await self._reply(send, 200, text.encode(), content_type=_METRICS_TYPE)
            if self.page is not None and self.page.serves(method, path):
                status, page_body, content_type = self.page.answer(path)
                return await self._reply(send, status, page_body, content_type=content_type, page=True)
            if not _V1.fullmatch(path):
                # No handler outside /v1/ and the metrics path (not counted, as in TF Serving).
                return await self._reply(send, 404, error_json(f"Not found: {method} {path}").encode())
            if method == "OPTIONS":
                # TF Serving answers a preflight with headers only, refused or not.
                return await self._reply(send, 200 if _ORIGIN_OK.search(origin or "") else 400, b"")
            found = route(method, path)
            key = (found.name, found.version, found.label, found.method) if found else None
            if (self._in_pool == 0 and len(body) < _INLINE_BODY and self.store.batching is None
                    and self._recent.get(key, 1.0) < INLINE_SECONDS):
                begun = time.perf_counter()
                status, text = answer(self.store, method, path, found, body)
                self._note(key, status, time.perf_counter() - begun)
            else:
                status, text = await self._answer(method, path, found, body, key)
        except _Disconnected:
            return
        except ServingError as error:
            status, text = error.status, error_json(str(error))
        if self.metrics is not None:
            self.count(found, status, started)
        await self._reply(send, status, text.encode(), close)

    def count(self, found, status, started):
        code = "OK" if status == 200 else _CODES.get(status, "UNKNOWN")
        self.metrics.count_request(found.name if found else "", code, found.method if found else "", "REST",
                                   time.perf_counter() - started)

    def _note(self, key, status, seconds):
        """Remember how long `key`'s calls take: the highest recent one, decaying. Only
        answered calls count: their routes name models being served, so the table stays
        as small as the store, whatever names clients make up."""
        if status == 200:
            self._recent[key] = max(seconds, self._recent.get(key, seconds) * 0.9)

    async def _answer(self, method, path, found, body, key):
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        store = self.store

        def job():
            begun = time.perf_counter()
            result = answer(store, method, path, found, body)
            try:
                loop.call_soon_threadsafe(self._done, waiter, result, key, time.perf_counter() - begun)
            except RuntimeError:  # the server stopped meanwhile (a call past its deadline and the grace)
                pass

        self._in_pool += 1
        self.workers.submit(job)
        seconds = self.limits.request_timeout
        if not seconds:
            return await waiter
        timer = loop.call_later(seconds, _expire, waiter, seconds)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _done(self, waiter, result, key, seconds):
        self._in_pool -= 1
        self._note(key, result[0], seconds)
        _resolve(waiter, result)

    async def _reply(self, send, status, body, close=False, content_type=_JSON, page=False):
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *self._extra]
        if page:
            headers += PAGE_HEADERS
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _scan(headers):
    length = origin = None
    for name, value in headers:
        if name == b"content-length":
            length = value.decode("latin-1")
        elif name == b"origin":
            origin = value.decode("latin-1")
    return length, origin


async def _read(receive):
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected
    if not message.get("more_body"):
        return message.get("body", b"")
    chunks = [message.get("body", b"")]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


# ------------------------------------------------------------------ the HTTP protocol
import httptools  # noqa: E402
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT  # noqa: E402
from uvicorn.protocols.http.httptools_impl import (  # noqa: E402
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

_uvicorn_log = logging.getLogger("zoo.serving.http")


# `_Cycle` and `ZooHttpProtocol` extend uvicorn's httptools protocol through its
# internals (the cycle's fields, flow control, keep-alive timer, pipeline), which
# uvicorn does not keep stable between minor releases: setup.cfg pins the minor
# version these were written and tested against; widen it only with the tests run.
class _Cycle(RequestResponseCycle):
    """uvicorn's request/response cycle, with the whole answer (status line, headers and
    body) written in one `transport.write` instead of two: one system call, and one
    wake-up of the client on a busy machine."""

    _head = None

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            self.response_started = True
            self.waiting_for_100_continue = False
            head = [STATUS_LINE[message["status"]]]
            for name, value in self.default_headers:
                head += (name, b": ", value, b"\r\n")
            for name, value in message.get("headers", ()):
                if name == b"connection" and value == b"close":
                    self.keep_alive = False
                    continue
                head += (name, b": ", value, b"\r\n")
            if not self.keep_alive:
                head.append(b"connection: close\r\n")
            head.append(b"\r\n")
            self._head = b"".join(head)
            return
        if kind == "http.response.body" and self._head is not None and not message.get("more_body"):
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            head, self._head = self._head, None
            if self.disconnected:
                return
            self.transport.write(head if self.scope["method"] == "HEAD" else head + message.get("body", b""))
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
            return
        raise RuntimeError(f"zoo's REST cycle got an ASGI message it does not send: {kind}")


class ZooHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits a server facing hostile clients
    needs and uvicorn does not keep: header bytes per request and in flight (llhttp
    buffers a header line of any length), time to send the headers, connections, the
    body size refused before it is read, a stalled body; and its own refusals (and the
    parser's) answered as TF Serving's JSON `{"error": ...}` on a closed connection."""

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self.zoo = config.zoo_app
        self.limits = self.zoo.limits
        self._in_headers = True  # between requests or inside a request's head
        self._in_body = False
        self._header_bytes = 0
        self._header_timer = None
        self._discard = None  # bytes of a refused body still to read and throw away
        self._refused = False
        self._eof = False

    # -------------------------------------------------------------- connections
    def connection_made(self, transport):
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self._refused = True
            self._error(503, f"This server is at its limit of {self.limits.max_connections} connections; "
                             "retry shortly.", extra=(b"retry-after: 1\r\n",))
            return
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        # A connection that never sends a byte is closed too (uvicorn arms its idle
        # timer only after a first answer).
        self.timeout_keep_alive_task = self.loop.call_later(self.limits.idle_timeout, self.timeout_keep_alive_handler)

    def eof_received(self):
        # A client that half-closes after its request (shutdown(SHUT_WR)) still gets
        # the answer; the connection closes after it.
        self._eof = True
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def on_response_complete(self):
        super().on_response_complete()
        if self._eof and not self.pipeline and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc):
        self._release_header_bytes()
        self._cancel_header_timer()
        if self._refused:
            self.parser = None
            return
        super().connection_lost(exc)

    # ------------------------------------------------------------------ reading
    def data_received(self, data):
        self._unset_keepalive_if_required()
        if self._in_headers:
            room = self.limits.max_header_bytes - self._header_bytes
            if len(data) > room:
                # The head may end inside the room: parse that much, then judge.
                first, data = data[:room], data[room:]
                if not self._take_header_bytes(len(first)) or not self._feed(first):
                    return
                if self._in_headers:
                    return self._refuse(431, "The request's headers are larger than this server's limit of "
                                             f"{self.limits.max_header_bytes} bytes (--rest_api_max_header_bytes).")
            elif not self._take_header_bytes(len(data)):
                return
        if not self._feed(data):
            return
        if self._in_body and not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(self.limits.idle_timeout, self._body_stalled)

    def _feed(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # an Upgrade (h2c, websocket) is not taken up: the request is served as HTTP/1.1
        except httptools.HttpParserError as error:
            reason = str(error) or type(error).__name__
            _uvicorn_log.debug("refused a malformed request from %s: %s", self.client, reason)
            self._refuse(400, f"Malformed HTTP request: {reason}")
            return False
        return not self.transport.is_closing()

    def _take_header_bytes(self, count):
        self._header_bytes += count
        self.zoo.header_bytes += count
        if self.zoo.header_bytes > self.limits.max_header_bytes_in_flight:
            self._refuse(503, "This server holds its limit of "
                              f"{self.limits.max_header_bytes_in_flight} bytes of incomplete request headers "
                              "(--rest_api_max_header_bytes_in_flight); retry shortly.")
            return False
        return True

    def _release_header_bytes(self):
        self.zoo.header_bytes -= self._header_bytes
        self._header_bytes = 0

    def _cancel_header_timer(self):
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    # ---------------------------------------------------------- parser callbacks
    def on_message_begin(self):
        super().on_message_begin()
        self._in_headers = True
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_too_slow)

    def on_headers_complete(self):
        self._cancel_header_timer()
        self._release_header_bytes()
        self._in_headers = False
        self._in_body = True
        if self.transport.is_closing():
            self._discard = 0
            return
        parser = self.parser
        method = parser.get_method().decode("ascii")
        http_version = parser.get_http_version()
        length = origin = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"origin":
                origin = value
        if length is not None and int(length) > self.limits.max_body_bytes:
            return self._too_large(length.decode("ascii"))
        raw_path, _, query = self.url.partition(b"?")
        scope = self.scope
        scope["method"] = method
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = raw_path.decode("latin-1")  # as sent: routing unquotes names itself
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        scope["zoo.headers"] = (None if length is None else length.decode("latin-1"),
                                None if origin is None else origin.decode("latin-1"))
        existing = self.cycle
        self.cycle = _Cycle(
            scope=scope, transport=self.transport, flow=self.flow, logger=self.logger,
            access_logger=self.access_logger, access_log=False,
            default_headers=self.server_state.default_headers, message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        if existing is None or existing.response_complete:
            self._start_asgi_task(self.cycle, self.app)
        else:  # pipelined: answered in order
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, self.app))

    def on_body(self, body):
        if self._discard is not None:
            self._discard += len(body)
            if self._discard > _DRAIN_LIMIT and not self.transport.is_closing():
                self.transport.close()
            return
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self):
        self._in_body = False
        self._in_headers = True
        if self._discard is not None:
            self._discard = None
            self.transport.close()
            return
        super().on_message_complete()

    # ----------------------------------------------------------------- refusals
    def _too_large(self, length):
        """An over-size body, refused from its Content-Length before it is read: the
        413 goes at once (no 100 Continue); the body, if the client sends it anyway, is
        read and dropped (up to 256 MiB) so that the client sees the 413, not a reset."""
        limit = self.limits.max_body_bytes
        if self.zoo.metrics is not None:
            self.zoo.count(None, 413, time.perf_counter())
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # pipelined behind an answer still being made
            return
        self._error(413, f"The request body is larger than this server's limit of {limit} bytes. "
                         f"Received: Content-Length={length}", close=False)
        if self.expect_100_continue:
            self.transport.close()
        else:
            self._discard = 0

    def _headers_too_slow(self):
        self._header_timer = None
        if not self.transport.is_closing():
            self._refuse(408, "The request's headers did not arrive within this server's limit of "
                              f"{self.limits.header_timeout:g} s (--rest_api_header_timeout_in_ms).")

    def _body_stalled(self):
        self.timeout_keep_alive_task = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._refuse(408, "The request body stopped arriving for longer than this server's limit of "
                              f"{self.limits.idle_timeout:g} s (--rest_api_idle_timeout_in_ms).")
        else:
            self.transport.close()

    def _refuse(self, status, message):
        """Answer `status` with `{"error": message}` and close the connection: what the
        client sent after this is never read, let alone answered."""
        self._release_header_bytes()
        self._cancel_header_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            if self.cycle.response_started:
                self.transport.close()
                return
            self.cycle.disconnected = True
        self._error(status, message)

    def _error(self, status, message, extra=(), close=True):
        body = error_json(message).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        head += (b"content-type: application/json\r\ncontent-length: ", b"%d" % len(body), b"\r\n")
        for name, value in self.zoo._extra:
            head += (name, b": ", value, b"\r\n")
        head += (*extra, b"connection: close\r\n\r\n", body)
        self.transport.write(b"".join(head))
        if close:
            self.transport.close()

    def send_400_response(self, msg):  # uvicorn's own refusals, should any be reached
        self._refuse(400, f"Malformed HTTP request: {msg}")


# ------------------------------------------------------------------------ the server
def _new_loop():
    try:
        import uvloop
    except ImportError:  # optional: asyncio's own loop serves too, somewhat slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _listen(host, port, backlog=1024):
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class RestServer:
    """`RestApp` on uvicorn (`ZooHttpProtocol`), on an event loop in a thread of its own.

    `start()` binds (raising OSError where it cannot) and returns once the server
    accepts; `stop()` stops accepting, lets requests in flight finish for up to
    `limits.grace_period` seconds, then closes what is left."""

    def __init__(self, app, host, port):
        self.app = app
        self.host, self.requested_port = host, port
        self.server = None
        self.server_address = None
        self._thread = None
        self._sock = None

    def bind(self):
        """Listen on (host, port); OSError where that cannot be done."""
        if self._sock is None:
            self._sock = _listen(self.host, self.requested_port)
            self.server_address = self._sock.getsockname()[:2]
        return self

    def start(self):
        import uvicorn

        limits = self.app.limits
        self.bind()
        threads = limits.threads or max(8, 4 * (os.cpu_count() or 1))
        self.app.workers = _Workers(threads)
        config = uvicorn.Config(
            self.app, http=ZooHttpProtocol, ws="none", lifespan="off", interface="asgi3", log_config=None,
            log_level="warning", access_log=False, proxy_headers=False, server_header=False, date_header=True,
            headers=[("Server", "zoo-serving")], timeout_keep_alive=limits.idle_timeout,
            timeout_graceful_shutdown=limits.grace_period, backlog=1024,
        )
        config.zoo_app = self.app
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="zoo-rest", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self.server.started:
            self.stop()
            raise OSError(f"the REST server did not start on {self.host}:{self.server_address[1]}")
        return self

    def _run(self):
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.serve(sockets=[self._sock]))
        except BaseException:  # noqa: BLE001 - logged; stop() still returns
            log.exception("the REST server stopped")
        finally:
            loop.close()

    def stop(self):
        if self.server is None:
            if self._sock is not None:
                self._sock.close()
            return
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.app.limits.grace_period + 5)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(5)
        if self.app.workers is not None:
            self.app.workers.stop()
        try:
            self._sock.close()
        except OSError:
            pass
        self.server = None
