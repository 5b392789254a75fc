"""TF Serving's REST contract over a `ModelStore`: the JSON <-> numpy codec and the HTTP
handler (`RestHandler`, served by a `RestHTTPServer`). `zoo.serving.server.ModelServer`
runs it; the codec (`request_to_arrays`, `arrays_to_response`, `metadata_json`) is
usable on its own.

REST, as https://www.tensorflow.org/tfx/serving/api_rest documents it:

    GET  /v1/models/NAME[/versions/V]            model_version_status
    GET  /v1/models/NAME[/versions/V]/metadata   signature defs
    POST /v1/models/NAME[/versions/V]:predict    {"instances": [...]} or {"inputs": ...},
                                                  optional "signature_name", {"b64": ...}

A bad request gets a 4xx status and `{"error": "..."}`; the server keeps serving.
The handler reads `store` and `max_body_bytes` from its server object.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from zoo.serving import SIGNATURE_DEFAULT
from zoo.serving.store import BodyTooLarge, NotFound, ServingError, log

_DRAIN_LIMIT = 256 * 1024 * 1024


# ------------------------------------------------------------------- REST: JSON <-> numpy
def _decode_b64(value):
    """Replace every `{"b64": "..."}` in a JSON value with its bytes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            encoded = value["b64"]
            if not isinstance(encoded, str):
                raise ServingError(f'"b64" must hold a base64 string. Received: {type(encoded).__name__}')
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                # Web-safe base64 ('-', '_') is what some clients send: accept it too.
                try:
                    return base64.b64decode(encoded, altchars=b"-_", validate=True)
                except (binascii.Error, ValueError) as error:
                    raise ServingError(f"Unable to base64 decode: {error}. Received: b64={encoded[:40]!r}") from None
        raise ServingError(f"Expected a value, a list or {{\"b64\": ...}}. Received: an object with keys {sorted(value)}")
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _json_to_array(value, info, where):
    """A JSON value (b64 already decoded) as a numpy array of the input's dtype."""
    if info.dtype == object:
        array = np.array(value, dtype=object)
        leaves = array.reshape(-1) if array.ndim else [array.item()]
        for leaf in leaves:
            if isinstance(leaf, list):
                raise ServingError(f"{where}: lists of different lengths. Received: a ragged list")
            if not isinstance(leaf, (str, bytes)):
                raise ServingError(
                    f"{where} is {info.dtype_name}: send strings or {{\"b64\": ...}}. "
                    f"Received: {type(leaf).__name__} {leaf!r}"
                )
        encoded = np.empty(array.shape, dtype=object)
        encoded.reshape(-1)[:] = [x.encode("utf-8") if isinstance(x, str) else x for x in leaves]
        return encoded
    try:
        array = np.array(value)
    except ValueError:
        raise ServingError(f"{where}: lists of different lengths. Received: a ragged list") from None
    kind = array.dtype.kind
    if kind in "OV":
        raise ServingError(f"{where}: mixed types or nulls in a {info.dtype_name} input.")
    wants_bool = info.dtype.kind == "b"
    if kind in "SU" or (kind == "b") != wants_bool:
        sample = array.reshape(-1)[0].item() if array.size else None
        raise ServingError(
            f"{where} is {info.dtype_name}: send {'true/false' if wants_bool else 'numbers'}. "
            f"Received: {type(sample).__name__} {_short(sample)}"
        )
    if info.dtype.kind in "iu":
        if kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
            raise ServingError(f"{where} is {info.dtype_name}: send integers. Received: non-integer numbers")
        limits = np.iinfo(info.dtype)
        if array.size and (array.min() < limits.min or array.max() > limits.max):
            raise ServingError(
                f"{where} is {info.dtype_name}: values must lie in [{limits.min}, {limits.max}]. "
                f"Received: min={array.min()}, max={array.max()}"
            )
    return array.astype(info.dtype)


def request_to_arrays(body, signature):
    """Parse a predict body for `signature`: `({input: array}, "row" | "columnar")`."""
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise ServingError(
            "The request must hold exactly one of 'instances' (row format) or 'inputs' "
            f"(columnar format). Received: keys {sorted(body)}"
        )
    names = sorted(signature.inputs)
    if has_rows:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise ServingError(f"'instances' must be a non-empty list. Received: instances={_short(instances)}")
        columns = {name: [] for name in names}
        for index, instance in enumerate(instances):
            named = isinstance(instance, dict) and set(instance) != {"b64"}
            if named:
                if set(instance) != set(names):
                    raise ServingError(
                        f"instances[{index}] must name the inputs {names}. Received: keys {sorted(instance)}"
                    )
                for name in names:
                    columns[name].append(_decode_b64(instance[name]))
            elif len(names) == 1:
                columns[names[0]].append(_decode_b64(instance))
            else:
                raise ServingError(
                    f"instances[{index}] must be an object with the inputs {names}: the signature "
                    f"takes {len(names)} inputs. Received: {_short(instance)}"
                )
        arrays = {
            name: _json_to_array(columns[name], signature.inputs[name], f"'instances' (input {name!r})")
            for name in names
        }
        return arrays, "row"
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        if set(inputs) != set(names):
            raise ServingError(f"'inputs' must name the inputs {names}. Received: keys {sorted(inputs)}")
        values = {name: _decode_b64(inputs[name]) for name in names}
    elif len(names) == 1:
        values = {names[0]: _decode_b64(inputs)}
    else:
        raise ServingError(f"'inputs' must be an object with the inputs {names}. Received: {_short(inputs)}")
    arrays = {
        name: _json_to_array(value, signature.inputs[name], f"'inputs' (input {name!r})")
        for name, value in values.items()
    }
    return arrays, "columnar"


def _to_json_value(array, name):
    if array.dtype == object or array.dtype.kind == "S":
        binary = name.endswith("_bytes")

        def convert(item):
            if binary:
                return {"b64": base64.b64encode(item).decode("ascii")}
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:  # not text after all: b64 keeps it lossless
                return {"b64": base64.b64encode(item).decode("ascii")}

        if array.ndim == 0:
            return convert(array.item())
        return np.vectorize(convert, otypes=[object])(array).tolist()
    return array.tolist()


def arrays_to_response(outputs, form):
    """TF Serving's predict response: `{"predictions": ...}` (row) or `{"outputs": ...}`."""
    names = sorted(outputs)
    if form == "columnar":
        if len(names) == 1:
            return {"outputs": _to_json_value(outputs[names[0]], names[0])}
        return {"outputs": {name: _to_json_value(outputs[name], name) for name in names}}
    if len(names) == 1:
        return {"predictions": _to_json_value(outputs[names[0]], names[0])}
    batch = {outputs[name].shape[0] if outputs[name].ndim else None for name in names}
    if len(batch) != 1 or None in batch:
        raise ServingError(
            "The row format needs every output to have the same batch size; use 'inputs' "
            f"(columnar format). Received: output shapes { {n: list(outputs[n].shape) for n in names} }"
        )
    columns = {name: _to_json_value(outputs[name], name) for name in names}
    return {"predictions": [{name: columns[name][i] for name in names} for i in range(batch.pop())]}


def metadata_json(servable):
    """GetModelMetadataResponse as JSON, as TF Serving's REST API returns it."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(definition)
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {
            "signature_def": json_format.MessageToDict(
                signature_map, preserving_proto_field_name=True
            )
        },
    }


def _short(value, limit=80):
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -------------------------------------------------------------------------- REST: HTTP
_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)


def _route(path):
    match = _ROUTE.match(path.split("?", 1)[0])
    if not match:
        raise NotFound(f"Malformed request: {path} is not /v1/models/NAME[/versions/V][/metadata|:predict]")
    if match["label"] is not None:
        raise NotFound(f"Version labels are not configured on this server. Received: label={match['label']!r}")
    version = match["version"]
    if version is not None:
        if not (version.isascii() and version.isdigit()):
            raise ServingError(f"The version must be a positive integer. Received: version={version!r}")
        version = int(version)
    return match["name"], version, bool(match["metadata"]), match["verb"]


def parse_predict(body_bytes, signatures):
    """A predict body → `(signature name, {input: array}, "row" | "columnar")`.

    `signatures` maps names to `Signature`s; only their input specs are used, so this
    runs in a worker process too.
    """
    try:
        body = json.loads(body_bytes)
    except RecursionError:
        raise ServingError("JSON Parse error: the body nests arrays or objects too deeply.") from None
    except ValueError as error:  # JSONDecodeError, bad UTF-8, a 5,000-digit integer
        raise ServingError(f"JSON Parse error: {error}") from None
    if not isinstance(body, dict):
        raise ServingError(f"The request body must be a JSON object. Received: {_short(body)}")
    signature_name = body.get("signature_name", SIGNATURE_DEFAULT) or SIGNATURE_DEFAULT
    if not isinstance(signature_name, str):
        raise ServingError(f"'signature_name' must be a string. Received: {_short(signature_name)}")
    if signature_name not in signatures:
        raise ServingError(
            f'Serving signature name: "{signature_name}" not found in signature def. '
            f"Available: {sorted(signatures)}. Received: signature_name={signature_name!r}"
        )
    arrays, form = request_to_arrays(body, signatures[signature_name])
    return signature_name, arrays, form


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


def parse_large_or_here(body_bytes, servable):
    """`parse_predict` here for a small body, in the worker process for a large one."""
    if len(body_bytes) < LARGE_BODY_BYTES:
        return parse_predict(body_bytes, servable.signatures)
    plain = {name: dataclasses.replace(sig, function=None) for name, sig in servable.signatures.items()}
    try:
        return _parser_pool().submit(parse_predict, body_bytes, plain).result()
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
        # Headers and body leave in separate writes; with Nagle's algorithm on, the
        # body then waits for the client's delayed ACK (~40 ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._handle(self._get)

    def do_POST(self):
        self._handle(self._post)

    def do_PUT(self):
        self._handle(self._not_allowed)

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT

    def do_HEAD(self):
        # A HEAD answer has headers only; the status says what a GET would.
        status = 405
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Allow", "GET, POST")
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
            self._reply(code, {"error": message or explain or "Bad request"})
        except OSError:
            pass

    def handle_expect_100(self):
        # Refuse an over-size body before the client sends it.
        try:
            self._check_length()
        except ServingError as error:
            self._reply(error.status, {"error": str(error)})
            self.close_connection = True
            return False
        return super().handle_expect_100()

    def _handle(self, method):
        try:
            status, payload = method()
        except BodyTooLarge as error:
            self._drain()
            status, payload = error.status, {"error": str(error)}
        except ServingError as error:
            status, payload = error.status, {"error": str(error)}
        except RecursionError:
            status, payload = 400, {"error": "The request nests JSON arrays or objects too deeply."}
        except UnicodeError as error:
            status, payload = 400, {"error": f"The request is not valid UTF-8 / ASCII where it must be: {error}"}
        except Exception as error:  # a bug answers 500 and the server goes on
            log.exception("request failed: %s %s", self.command, self.path)
            status, payload = 500, {"error": f"Internal error: {type(error).__name__}: {error}"}
        self._reply(status, payload)

    def _reply(self, status, payload):
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

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

    def _not_allowed(self):
        raise ServingError(f"Method {self.command} is not supported: use GET or POST.")

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

    def _get(self):
        name, version, metadata, verb = _route(self.path)
        if verb is not None:
            raise ServingError(f"':{verb}' needs POST. Received: GET {self.path}")
        servable = self.server.store.get(name, version)
        if metadata:
            return 200, metadata_json(servable)
        return 200, {"model_version_status": [servable.status()]}

    def _post(self):
        length = self._check_length()
        body_bytes = self.rfile.read(length)
        name, version, metadata, verb = _route(self.path)
        if metadata or verb is None:
            raise ServingError(f"POST needs :predict. Received: POST {self.path}")
        if verb != "predict":
            raise ServingError(
                f"This server implements :predict (zoo's exports have predict signatures "
                f"only). Received: :{verb}"
            )
        servable = self.server.store.get(name, version)
        signature_name, arrays, form = parse_large_or_here(body_bytes, servable)
        outputs = servable.predict(signature_name, arrays)
        return 200, arrays_to_response(outputs, form)


class RestHTTPServer(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` at once.

    Past the cap a connection gets `503 {"error": ...}` and is closed at once, instead
    of a thread of its own (3,000 idle connections were 3,000 threads).
    """

    daemon_threads = True
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

