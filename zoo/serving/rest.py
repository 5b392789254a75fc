"""TF Serving's REST API over a `ModelStore`: the HTTP handler (`RestHandler`, served
by a `RestHTTPServer`) that routes requests as TF Serving's `http_rest_api_handler.cc`
does and answers with its JSON (the codec is `zoo.serving.json_tensor`).
`zoo.serving.server.ModelServer` runs it.

REST, as https://www.tensorflow.org/tfx/serving/api_rest documents it:

    GET  /v1/models/NAME[/versions/V|/labels/L]            model_version_status
    GET  /v1/models/NAME[/versions/V|/labels/L]/metadata   signature defs
    POST /v1/models/NAME[/versions/V|/labels/L]:predict    {"instances": ...} or {"inputs": ...}
    POST /v1/models/NAME[/versions/V|/labels/L]:classify   {"examples": [...], "context": {...}}
    POST /v1/models/NAME[/versions/V|/labels/L]:regress
    GET  /monitoring/prometheus/metrics                    Prometheus metrics
    OPTIONS ...                                            CORS preflight

A refused request gets TF Serving's status (400 for a malformed URL or body, 404 for an
unknown model or version) and `{"error": "..."}`; the server keeps serving. The handler
reads `store`, `max_body_bytes`, `metrics`, `enable_cors` and `metrics_path` from its
server object.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from zoo.serving import SIGNATURE_DEFAULT
from zoo.serving.json_tensor import (
    classification_json,
    error_json,
    examples_input,
    regression_json,
    request_arrays,
    tensors_json,
)
from zoo.serving.errors import BodyTooLarge, ServingError
from zoo.serving.store import log

_DRAIN_LIMIT = 256 * 1024 * 1024
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
                max_workers=2, mp_context=multiprocessing.get_context("spawn"))
        return _parser


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


class RestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections open between requests: most of a small model's
    # request latency would otherwise be TCP set-up.
    protocol_version = "HTTP/1.1"
    server_version = "zoo-serving"
    timeout = 60  # a client that stops sending mid-body must not hold a thread forever

    def setup(self):
        super().setup()
        # With Nagle's algorithm on, an answer written while the client has not yet
        # acknowledged the last one waits for its delayed ACK (~40 ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):
        log.debug("%s - %s", self.address_string(), format % args)

    def parse_request(self):
        """http.server's request parsing, with the headers read into a plain
        case-insensitive map instead of an `email.message.Message`: the email parser was
        a fifth of the server's Python time per small request, which is what server-side
        batching cannot merge away."""
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                major, minor = version.split("/", 1)[1].split(".")
                if not (major.isdigit() and minor.isdigit() and len(major) <= 10 and len(minor) <= 10):
                    raise ValueError
                number = (int(major), int(minor))
            except ValueError:
                self.send_error(400, f"Bad request version ({version!r})")
                return False
            if number >= (2, 0):
                self.send_error(505, f"Invalid HTTP version ({version})")
                return False
            self.close_connection = number < (1, 1)
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(400, f"Bad request syntax ({self.requestline!r})")
            return False
        self.command, self.path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if self.command != "GET":
                self.send_error(400, f"Bad HTTP/0.9 request type ({self.command!r})")
                return False
        headers = Headers()
        while True:
            line = self.rfile.readline(_MAX_HEADER_LINE + 1)
            if len(line) > _MAX_HEADER_LINE:
                self.send_error(431, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            if len(headers) >= _MAX_HEADERS:
                self.send_error(431, "Too many headers")
                return False
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if colon:
                headers[name.strip()] = value.strip()
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if (headers.get("Expect", "").lower() == "100-continue" and self.request_version >= "HTTP/1.1"
                and not self.handle_expect_100()):
            return False
        return True

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def do_HEAD(self):
        # A HEAD answer has headers only. TF Serving routes HEAD like any method it has
        # no handler for: a malformed request (400).
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a malformed request line, an unknown method, an
        over-long header) as TF Serving's JSON `{"error": ...}`, never HTML."""
        if code == 501:  # a method http.server has no do_ for: not implemented *here*
            code = 405
        # An unparseable request line leaves http.server assuming HTTP/0.9, which has no
        # status line; every client of this server speaks HTTP/1.x.
        self.request_version = "HTTP/1.1"
        self.close_connection = True
        try:
            self._reply(code, error_json(message or explain or "Bad request"))
        except OSError:
            pass

    def handle_expect_100(self):
        # Refuse an over-size body before the client sends it.
        try:
            self._check_length()
        except ServingError as error:
            self._reply(error.status, error_json(str(error)))
            self.close_connection = True
            return False
        return super().handle_expect_100()

    # ------------------------------------------------------------------ dispatch
    def _handle(self):
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        server = self.server
        found = None
        try:
            body = self._read_body()
            if self.command == "GET" and path == server.metrics_path:
                return self._reply(200, server.metrics.render() if server.metrics else "",
                                   content_type="text/plain; version=0.0.4")
            if not _V1.fullmatch(path):
                raise _NotServed(f"Not found: {self.command} {path}")
            if self.command == "OPTIONS":
                # TF Serving answers a preflight with headers only, refused or not.
                origin = self.headers.get("Origin", "")
                return self._reply(200 if re.search(r"https?://", origin) else 400, "")
            else:
                found = route(self.command, path)
                status, text = self._serve(found, body)
        except BodyTooLarge as error:
            self._drain()
            status, text = error.status, error_json(str(error))
        except _NotServed as error:
            return self._reply(404, error_json(str(error)))
        except ServingError as error:
            status, text = error.status, error_json(str(error))
        except RecursionError:
            status, text = 400, error_json("The request nests JSON arrays or objects too deeply.")
        except UnicodeEncodeError as error:  # a lone surrogate in a tf.Example's string feature
            status, text = 400, error_json(lone_surrogate_message(error))
        except Exception as error:  # a bug answers 500 and the server goes on
            log.exception("request failed: %s %s", self.command, self.path)
            status, text = 500, error_json(f"Internal error: {type(error).__name__}: {error}")
        if server.metrics is not None and self.command != "OPTIONS":
            code = "OK" if status == 200 else _CODES.get(status, "UNKNOWN")
            server.metrics.count_request(found.name if found else "", code, found.method if found else "",
                                         "REST", time.perf_counter() - started)
        self._reply(status, text)

    def _serve(self, found, body):
        # The routes match case-insensitively but dispatch on the exact verb, so
        # ":PREDICT" is as malformed as ":explode" (TF Serving's ProcessRequest).
        if found is None or (self.command == "POST" and found.method not in ("predict", "classify", "regress")):
            raise ServingError(f"Malformed request: {self.command} {self.path.split('?', 1)[0]}")
        store = self.server.store
        if self.command == "GET":
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

    def _read_body(self):
        if self.command in ("GET", "OPTIONS", "DELETE") and self.headers.get("Content-Length") in (None, "0"):
            return b""
        return self.rfile.read(self._check_length())

    def _reply(self, status, text, content_type="application/json"):
        """The whole answer in one write (two writes cost a second system call and, on
        a busy machine, a second wake-up of the client)."""
        body = text.encode("utf-8")
        phrase = self.responses.get(status, ("",))[0]
        head = [f"{self.request_version if self.request_version != 'HTTP/0.9' else 'HTTP/1.1'} {status} {phrase}",
                f"Server: {self.server_version}", f"Date: {_http_date()}", f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}"]
        if getattr(self.server, "enable_cors", False):
            # TF Serving's AddCORSHeaders, on every answer once --rest_api_enable_cors_support is on.
            head += ["Access-Control-Allow-Origin: *", "Access-Control-Allow-Methods: POST, GET",
                     "Access-Control-Allow-Headers: Content-Type"]
        if self.close_connection:
            head.append("Connection: close")
        self.log_request(status, len(body))
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _drain(self):
        # A client that sends its whole body before reading (most do) would see the
        # connection reset instead of the 413 if the unread body were left in the socket.
        remaining = min(int(self.headers.get("Content-Length", "0") or 0), _DRAIN_LIMIT)
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def _check_length(self):
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise ServingError("A POST needs a Content-Length header (chunked bodies are not supported).")
        if not (length.isascii() and length.isdigit()):
            self.close_connection = True
            raise ServingError(f"Content-Length must be a number. Received: {length!r}")
        limit = self.server.max_body_bytes
        if int(length) > limit:
            # The body stays unread, so this connection cannot carry another request.
            self.close_connection = True
            raise BodyTooLarge(
                f"The request body is larger than this server's limit of {limit} bytes. "
                f"Received: Content-Length={length}"
            )
        return int(length)


class Headers(dict):
    """Request headers by case-insensitive name (the last of repeated ones)."""

    def __setitem__(self, name, value):
        super().__setitem__(name.lower(), value)

    def __getitem__(self, name):
        return super().get(name.lower())

    def get(self, name, default=None):
        return super().get(name.lower(), default)

    def __contains__(self, name):
        return super().__contains__(name.lower())


_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100
_date = [0, ""]


def _http_date():
    now = int(time.time())
    if _date[0] != now:  # formatted once a second, not once a request
        from email.utils import formatdate

        _date[:] = [now, formatdate(now, usegmt=True)]
    return _date[1]


class _NotServed(Exception):
    """A path outside /v1/ and the metrics path: TF Serving's HTTP server has no handler."""


_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED",
          503: "UNAVAILABLE", 500: "INTERNAL"}


class RestHTTPServer(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` at once.

    Past the cap a connection gets `503 {"error": ...}` and is closed at once, instead
    of a thread of its own (3,000 idle connections were 3,000 threads).
    """

    daemon_threads = True
    store = None
    max_body_bytes = 32 * 1024 * 1024
    metrics = None
    enable_cors = False
    metrics_path = METRICS_PATH
    request_queue_size = 128
    allow_reuse_address = True
    max_connections = 256

    def server_activate(self):
        super().server_activate()
        self.limit_connections(self.max_connections)

    def limit_connections(self, count):
        self.max_connections = int(count)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request):
        body = json.dumps({"error": f"This server is at its limit of {self.max_connections} connections; "
                                    "retry shortly."}).encode()
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nRetry-After: 1\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass
        self.shutdown_request(request)

