"""A local model server with TF Serving's REST contract (and its gRPC one, see
`zoo.serving.grpc_server`), for development and tests.

    $ zoo serve models/ --port 8501 --grpc-port 8500
    >>> with zoo.serving.server.ModelServer("models/", port=0, grpc_port=0) as server:
    ...     print(server.rest_url)

`models/` holds `NAME/VERSION/` SavedModels as `zoo export` (or anything else) writes
them; `models/NAME/` alone is served as NAME. Like TF Serving's default version policy,
each model serves its highest version, and a newer version directory is loaded by a
polling thread without a restart; requests keep going to the previous version until
the new one has loaded. Signatures are run as the SavedModel's concrete functions,
not through Keras, as TF Serving runs them.

REST, as https://www.tensorflow.org/tfx/serving/api_rest documents it:

    GET  /v1/models/NAME[/versions/V]            model_version_status
    GET  /v1/models/NAME[/versions/V]/metadata   signature defs
    POST /v1/models/NAME[/versions/V]:predict    {"instances": [...]} or {"inputs": ...},
                                                  optional "signature_name", {"b64": ...}

A bad request gets a 4xx status and `{"error": "..."}`; the server keeps serving.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.serving import SIGNATURE_DEFAULT

log = logging.getLogger("zoo.serving")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_DRAIN_LIMIT = 256 * 1024 * 1024


class ServingError(Exception):
    """A request the server refuses; `status` is its HTTP status (4xx)."""

    status = 400


class NotFound(ServingError):
    status = 404


class BodyTooLarge(ServingError):
    status = 413


# ------------------------------------------------------------------------ servables
@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: np.dtype  # numpy dtype; `object` for DT_STRING
    shape: tuple | None  # None: unknown rank; -1 entries: any size
    dtype_name: str  # "DT_FLOAT": what error messages and metadata call it


@dataclass(frozen=True)
class Signature:
    name: str
    function: object
    inputs: dict
    outputs: dict


class Servable:
    """One loaded version of one model: its signatures, ready to run."""

    def __init__(self, name, version, path):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.name = name
        self.version = int(version)
        self.path = Path(path)
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((self.path / "saved_model.pb").read_bytes())
        graph = next(
            (g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags),
            None,
        )
        if graph is None:
            raise ZooError(f"{self.path} has no MetaGraph tagged 'serve'")
        # Kept as the proto so GetModelMetadata answers exactly what TF Serving would.
        self.signature_defs = graph.signature_def
        self._loaded = tf.saved_model.load(str(self.path), tags=["serve"])
        self.signatures = {}
        for key, function in self._loaded.signatures.items():
            definition = self.signature_defs[key]
            self.signatures[key] = Signature(
                name=key,
                function=function,
                inputs={k: _tensor_info(k, v) for k, v in definition.inputs.items()},
                outputs={k: _tensor_info(k, v) for k, v in definition.outputs.items()},
            )

    def signature(self, name):
        name = name or SIGNATURE_DEFAULT
        if name not in self.signatures:
            raise ServingError(
                f'Serving signature name: "{name}" not found in signature def. '
                f"Available: {sorted(self.signatures)}. Received: signature_name={name!r}"
            )
        return self.signatures[name]

    def predict(self, signature_name, inputs, output_filter=()):
        """Run a signature on `{input name: numpy array}`; returns `{output: array}`.

        Arrays must already have the signature's dtypes (REST converts JSON to them,
        gRPC sends typed tensors); names, dtypes and shapes are checked here so a bad
        request gets a message naming the input instead of a graph error.
        """
        import tensorflow as tf

        signature = self.signature(signature_name)
        missing = sorted(set(signature.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(signature.inputs))
        if missing or extra:
            raise ServingError(
                f"Signature {signature.name!r} takes inputs {sorted(signature.inputs)}. "
                f"Received: inputs={sorted(inputs)}"
            )
        feeds = {}
        for key, array in inputs.items():
            info = signature.inputs[key]
            if array.dtype != info.dtype and not (info.dtype == object and array.dtype.kind in "OSU"):
                raise ServingError(
                    f"Input {key!r} of signature {signature.name!r} must be {info.dtype_name}. "
                    f"Received: dtype={array.dtype.name}"
                )
            _check_shape(key, array.shape, info, signature.name)
            feeds[key] = tf.constant(array, dtype=tf.string if info.dtype == object else info.dtype)
        unknown = sorted(set(output_filter) - set(signature.outputs))
        if unknown:
            raise ServingError(
                f"output_filter names outputs {sorted(signature.outputs)} of {signature.name!r} "
                f"only. Received: output_filter={list(output_filter)}"
            )
        try:
            results = signature.function(**feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise ServingError(_graph_error_message(error)) from None
        wanted = output_filter or signature.outputs
        return {key: results[key].numpy() for key in wanted}

    def status(self):
        return {
            "version": str(self.version),
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }


def _graph_error_message(error):
    """The line of a TF error that says what was wrong (not "Graph execution error:",
    node names or stack placeholders)."""
    message = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in message.splitlines()]
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    useful = [line for line in lines if line and not line.startswith(noise)]
    text = useful[-1] if useful else (lines[0] if lines else type(error).__name__)
    return re.sub(r"\s*\[\[.*$|\s*\[Op:.*$", "", text)


def _tensor_info(name, proto):
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    numpy_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
    from tensorflow.core.framework import types_pb2

    return TensorInfo(name, numpy_dtype, shape, types_pb2.DataType.Name(proto.dtype))


def _check_shape(key, shape, info, signature_name):
    if info.shape is None:
        return
    fits = len(shape) == len(info.shape) and all(
        want < 0 or want == got for want, got in zip(info.shape, shape)
    )
    if not fits:
        wanted = "[" + ", ".join("N" if d < 0 else str(d) for d in info.shape) + "]"
        raise ServingError(
            f"Input {key!r} of signature {signature_name!r} must have shape {wanted} "
            f"({info.dtype_name}). Received: shape={list(shape)}"
        )


# ------------------------------------------------------------------------------ store
class ModelStore:
    """The models under a base path, each at its highest loadable version.

    Args:
        base_path: a directory of `NAME/VERSION/` SavedModels, or one `NAME/` holding
            `VERSION/` directories.
        poll_seconds: float. How often to look for new versions (TF Serving's
            default is 1 s). `0` disables polling; call `refresh()` yourself.
    """

    def __init__(self, base_path, poll_seconds=1.0):
        self.base_path = Path(base_path)
        if not self.base_path.is_dir():
            raise ZooError(f"Model base path {self.base_path} is not a directory.")
        self.poll_seconds = poll_seconds
        self._servables = {}
        self._failed = {}  # (name, version) -> mtime: do not retry a broken version each poll
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def model_dirs(self):
        if _version_dirs(self.base_path):
            return {self.base_path.resolve().name: self.base_path}
        return {
            p.name: p
            for p in sorted(self.base_path.iterdir())
            if p.is_dir() and not p.name.startswith(".")
        }

    def refresh(self):
        """Load any model or version newer than what is served; returns names loaded."""
        loaded = []
        with self._refresh_lock:
            for name, model_dir in self.model_dirs().items():
                current = self._servables.get(name)
                available = _version_dirs(model_dir)
                if current is not None and not current.path.is_dir():
                    # Its directory was deleted (a rollback): fall back to the highest
                    # version left, as TF Serving does, or stop serving the model.
                    current = None
                    if not available:
                        with self._lock:
                            self._servables.pop(name, None)
                        log.info("stopped serving %s: no versions left", name)
                for version, path in reversed(available):
                    if current is not None and version <= current.version:
                        break
                    key = (name, version)
                    try:
                        mtime = path.stat().st_mtime
                    except OSError:
                        continue
                    if self._failed.get(key) == mtime:
                        continue
                    try:
                        servable = Servable(name, version, path)
                    except Exception as error:  # a broken version must not stop the others
                        self._failed[key] = mtime
                        log.error("could not load %s version %s from %s: %s", name, version, path, error)
                        continue
                    with self._lock:
                        self._servables[name] = servable
                    log.info("serving %s version %s from %s", name, version, path)
                    loaded.append(f"{name}/{version}")
                    break
        return loaded

    def get(self, name, version=None):
        with self._lock:
            servable = self._servables.get(name)
        if servable is None:
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {request}")
        if version is not None and int(version) != servable.version:
            raise NotFound(
                f"Servable not found for request: Specific({name}, {version}). "
                f"Serving version {servable.version} (the highest one)."
            )
        return servable

    def names(self):
        with self._lock:
            return sorted(self._servables)

    def start(self):
        self.refresh()
        if self.poll_seconds and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="zoo-model-poll", daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _poll(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must outlive a bad directory listing
                log.exception("model poll failed")


def _version_dirs(model_dir):
    """`[(version, path)]` ascending; only all-digit directories holding a SavedModel."""
    found = []
    try:
        entries = list(Path(model_dir).iterdir())
    except OSError:
        return found
    for path in entries:
        if path.name.isdigit() and int(path.name) > 0 and (path / "saved_model.pb").is_file():
            found.append((int(path.name), path))
    return sorted(found)


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
        if not version.isdigit():
            raise ServingError(f"The version must be a positive integer. Received: version={version!r}")
        version = int(version)
    return match["name"], version, bool(match["metadata"]), match["verb"]


class _Handler(BaseHTTPRequestHandler):
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

    do_DELETE = do_PATCH = do_PUT

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
        if not length.isdigit():
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
        try:
            body = json.loads(body_bytes)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ServingError(f"JSON Parse error: {error}") from None
        if not isinstance(body, dict):
            raise ServingError(f"The request body must be a JSON object. Received: {_short(body)}")
        signature_name = body.get("signature_name", SIGNATURE_DEFAULT)
        if not isinstance(signature_name, str):
            raise ServingError(f"'signature_name' must be a string. Received: {_short(signature_name)}")
        signature = servable.signature(signature_name)
        arrays, form = request_to_arrays(body, signature)
        outputs = servable.predict(signature.name, arrays)
        return 200, arrays_to_response(outputs, form)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True


# ----------------------------------------------------------------------------- server
class ModelServer:
    """REST (and, with `grpc_port` not None, gRPC) over one `ModelStore`.

    Args:
        base_path: directory of `NAME/VERSION/` SavedModels.
        host: str. Interface to listen on. Defaults to loopback, `"127.0.0.1"`.
        port: int. REST port; `0` picks a free one. Defaults to `8501`.
        grpc_port: int or None. gRPC port; `0` picks a free one, `None` serves no
            gRPC. Defaults to `8500`.
        poll_seconds: float. How often to look for new versions. Defaults to `1.0`.
        max_body_bytes: int. Largest REST body (and gRPC message) accepted.
            Defaults to 32 MiB.
    """

    def __init__(
        self,
        base_path,
        host="127.0.0.1",
        port=8501,
        grpc_port=8500,
        poll_seconds=1.0,
        max_body_bytes=DEFAULT_MAX_BODY_BYTES,
    ):
        self.store = ModelStore(base_path, poll_seconds=poll_seconds)
        self.host = host
        self._requested = (port, grpc_port)
        self.max_body_bytes = int(max_body_bytes)
        self._http = None
        self._http_thread = None
        self._grpc = None
        self.port = None
        self.grpc_port = None

    @property
    def rest_url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def grpc_target(self):
        return f"{self.host}:{self.grpc_port}" if self.grpc_port else None

    def start(self):
        self.store.start()
        port, grpc_port = self._requested
        self._http = _HTTPServer((self.host, port), _Handler)
        self._http.store = self.store
        self._http.max_body_bytes = self.max_body_bytes
        self.port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="zoo-rest", daemon=True
        )
        self._http_thread.start()
        if grpc_port is not None:
            from zoo.serving.grpc_server import start_grpc_server

            self._grpc, self.grpc_port = start_grpc_server(
                self.store, self.host, grpc_port, max_message_bytes=self.max_body_bytes
            )
        return self

    def stop(self):
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.store.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait(self):
        """Block until interrupted (Ctrl-C), then stop."""
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


def serve(base_path, host="127.0.0.1", port=8501, grpc_port=8500, **kwargs):
    """Start a `ModelServer` (see its arguments) and return it, running."""
    return ModelServer(base_path, host=host, port=port, grpc_port=grpc_port, **kwargs).start()
