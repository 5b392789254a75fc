"""A local model server with TF Serving's REST and gRPC contracts, for development and
tests: a `ModelStore` (`zoo.serving.store`) served over REST (`zoo.serving.rest`) and,
optionally, gRPC (`zoo.serving.grpc_service`).

    $ zoo serve models/ --port 8501 --grpc-port 8500
    >>> with zoo.serving.server.ModelServer("models/", port=0, grpc_port=0) as server:
    ...     print(server.rest_url)

See `zoo.serving.store` for the model layout and version policy, and `zoo.serving.rest`
for the REST routes.
"""

from __future__ import annotations

import signal
import threading

from zoo.errors import ZooError

from zoo.serving.metrics import Metrics
from zoo.serving.rest import METRICS_PATH, RestApp, RestLimits, RestServer, shutdown_parser_pool
from zoo.serving.store import ModelStore

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_DEFAULT_LIMITS = RestLimits()


# ----------------------------------------------------------------------------- server
class PortUnavailable(ZooError):
    """The server cannot listen where it was asked to."""


class ModelServer:
    """REST (and, with `grpc_port` not None, gRPC) over one `ModelStore`.

    Args:
        base_path: directory of `NAME/VERSION/` SavedModels (each served at its highest
            version), or None with `model_config_file`.
        host: str. Interface to listen on. Defaults to loopback, `"127.0.0.1"`.
        port: int. REST port; `0` picks a free one. Defaults to `8501`.
        grpc_port: int or None. gRPC port; `0` picks a free one, `None` serves no
            gRPC. Defaults to `8500`.
        poll_seconds: float. How often to look for new versions and for changes to the
            model config file. Defaults to `1.0`.
        max_body_bytes: int. Largest REST body (and gRPC message) accepted.
            Defaults to 32 MiB.
        max_connections: int. REST connections served at once; more get a 503 and
            are closed. Defaults to `256`.
        max_header_bytes: int. Request line and headers of one REST request; more get
            a 431. Defaults to 64 KiB.
        max_header_bytes_in_flight: int. Incomplete request headers held over all
            REST connections; the connection that crosses it gets a 503. Defaults to
            16 MiB.
        request_timeout: float. Seconds from a REST request's last byte to its
            answer, past which it gets a 504 (TF Serving's `--rest_api_timeout_in_ms`);
            0 or None: no deadline. Defaults to `30`.
        idle_timeout: float. Seconds a REST connection may stay silent between
            requests (then it is closed) or mid-body (then 408). Defaults to `60`.
        header_timeout: float. Seconds from a REST request's first byte to the end
            of its headers, past which it gets a 408 (slow clients). Defaults to `10`.
        grace_period: float. Seconds `stop()` waits for REST requests in flight.
            Defaults to `10`.
        rest_threads: int or None. Threads that run REST requests' model calls
            (None: 4 per core, at least 8; `max_connections` with batching on).
        model_config_file: TF Serving's text-format `ModelServerConfig` (several
            models, version policies, labels), instead of `base_path`.
        enable_batching: bool. Merge concurrent requests into one model call, as TF
            Serving's `--enable_batching`. Defaults to `False`.
        batching_parameters_file: TF Serving's text-format batching parameters
            (max_batch_size, batch_timeout_micros, ...); implies `enable_batching`.
        enable_cors: bool. CORS headers on every REST answer, as TF Serving's
            `--rest_api_enable_cors_support`. Defaults to `False`.
        metrics_path: where REST serves Prometheus metrics; None serves none.
            Defaults to TF Serving's `/monitoring/prometheus/metrics`.
        intra_op_threads, inter_op_threads: int. Threads of each model's Session (TF
            Serving's `--tensorflow_intra_op_parallelism` / `..._inter_op_...`); 0
            lets TensorFlow choose. A small model on few cores serves more requests
            with 1 and 1 (LeNet-5 on 2 cores: 1.7x; benchmarks/README.md).
        ui: bool. Serve the web page at `/` on the REST port (`zoo.serving.page`): drop
            an image, see the labels and where the model looked. Defaults to `False`.
    """

    def __init__(
        self,
        base_path=None,
        host="127.0.0.1",
        port=8501,
        grpc_port=8500,
        poll_seconds=1.0,
        max_body_bytes=DEFAULT_MAX_BODY_BYTES,
        max_connections=256,
        model_config_file=None,
        enable_batching=False,
        batching_parameters_file=None,
        enable_cors=False,
        metrics_path=METRICS_PATH,
        intra_op_threads=0,
        inter_op_threads=0,
        max_header_bytes=_DEFAULT_LIMITS.max_header_bytes,
        max_header_bytes_in_flight=_DEFAULT_LIMITS.max_header_bytes_in_flight,
        request_timeout=_DEFAULT_LIMITS.request_timeout,
        idle_timeout=_DEFAULT_LIMITS.idle_timeout,
        header_timeout=_DEFAULT_LIMITS.header_timeout,
        grace_period=_DEFAULT_LIMITS.grace_period,
        rest_threads=None,
        ui=False,
    ):
        batching = None
        if enable_batching or batching_parameters_file:
            from zoo.serving.batching import BatchingParameters, read_batching_parameters

            batching = (read_batching_parameters(batching_parameters_file) if batching_parameters_file
                        else BatchingParameters())
        self.metrics = Metrics() if metrics_path else None
        on_load = (lambda name, version, path, ok: self.metrics.count_load(path, ok)) if self.metrics else None
        self.store = ModelStore(base_path, poll_seconds=poll_seconds, model_config_file=model_config_file,
                                batching=batching, on_load=on_load,
                                threads=(intra_op_threads, inter_op_threads))
        if self.metrics is not None:
            self.metrics.available = lambda: [(s.name, s.version) for s in self.store.servables()]
        self.enable_cors = bool(enable_cors)
        self.metrics_path = metrics_path
        self.max_connections = int(max_connections)
        self.host = host
        self._requested = (port, grpc_port)
        self.max_body_bytes = int(max_body_bytes)
        self.limits = RestLimits(
            max_body_bytes=self.max_body_bytes, max_connections=self.max_connections,
            max_header_bytes=int(max_header_bytes), max_header_bytes_in_flight=int(max_header_bytes_in_flight),
            request_timeout=float(request_timeout) if request_timeout else None, idle_timeout=float(idle_timeout),
            header_timeout=float(header_timeout), grace_period=float(grace_period),
            # With batching, a request waits in its model call for the batch to fill:
            # as many threads as connections, so that batches can fill.
            threads=rest_threads or (self.max_connections if batching is not None else None),
        )
        self.ui = bool(ui)
        self._http = None
        self._grpc = None
        self.port = None
        self.grpc_port = None

    @property
    def rest_url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def page_url(self):
        """The web page's address (`ui=True`), else None."""
        return f"{self.rest_url}/" if self.ui else None

    @property
    def grpc_target(self):
        return f"{self.host}:{self.grpc_port}" if self.grpc_port else None

    def start(self):
        port, grpc_port = self._requested
        page = None
        if self.ui:
            from zoo.serving.page import Page

            page = Page(self.store, self.max_body_bytes)
        app = RestApp(self.store, self.limits, metrics=self.metrics, enable_cors=self.enable_cors,
                      metrics_path=self.metrics_path, page=page)
        http = RestServer(app, self.host, port)
        try:
            http.bind()
        except OSError as error:
            raise PortUnavailable(f"Cannot serve REST on {self.host}:{port}: {error.strerror or error}. "
                                  "Pass another --port (0 picks a free one).") from None
        try:
            self.store.start()
            self._http = http.start()
        except BaseException:
            http.stop()
            raise
        self.port = self._http.server_address[1]
        if grpc_port is not None:
            from zoo.serving.grpc_service import start_grpc_server

            try:
                self._grpc, self.grpc_port = start_grpc_server(
                    self.store, self.host, grpc_port, max_message_bytes=self.max_body_bytes,
                    metrics=self.metrics,
                )
            except (OSError, RuntimeError):
                self.stop()
                raise PortUnavailable(f"Cannot serve gRPC on {self.host}:{grpc_port}: the port is in use or "
                                      "not allowed. Pass another --grpc-port (0 picks a free one, -1 serves "
                                      "no gRPC).") from None
        return self

    def stop(self):
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait()
            self._grpc = None
        if self._http is not None:
            self._http.stop()  # stops accepting, finishes what is in flight (grace_period)
            self._http = None
        self.store.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait(self, announce=None):
        """Block until SIGINT (Ctrl-C) or SIGTERM, then stop gracefully: stop accepting,
        answer the requests in flight (for up to `grace_period` seconds), stop the JSON
        parser processes, return. A second Ctrl-C while stopping stops at once.

        `announce`, a callable, runs once the signals are caught: what it prints (the
        server's address) is the sign a supervisor waits for, and a SIGTERM sent on
        seeing it must stop the server gracefully, not kill it."""
        stopping = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                previous[number] = signal.signal(number, lambda *_: stopping.set())
        try:
            if announce is not None:
                announce()
            while not stopping.wait(3600):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self.stop()
            shutdown_parser_pool()


def serve(base_path=None, host="127.0.0.1", port=8501, grpc_port=8500, **kwargs):
    """Start a `ModelServer` (see its arguments) and return it, running."""
    return ModelServer(base_path, host=host, port=port, grpc_port=grpc_port, **kwargs).start()
