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

import threading
import time

from zoo.errors import ZooError

from zoo.serving.metrics import Metrics
from zoo.serving.rest import METRICS_PATH, RestHandler, RestHTTPServer
from zoo.serving.store import ModelStore

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


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
        max_connections: int. REST connections served at once (a thread each); more
            get a 503 and are closed. Defaults to `256`.
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
        port, grpc_port = self._requested
        try:
            self._http = RestHTTPServer((self.host, port), RestHandler)
        except OSError as error:
            raise PortUnavailable(f"Cannot serve REST on {self.host}:{port}: {error.strerror or error}. "
                                  "Pass another --port (0 picks a free one).") from None
        self.store.start()
        self._http.store = self.store
        self._http.max_body_bytes = self.max_body_bytes
        self._http.metrics = self.metrics
        self._http.enable_cors = self.enable_cors
        self._http.metrics_path = self.metrics_path
        self._http.limit_connections(self.max_connections)
        self.port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="zoo-rest", daemon=True
        )
        self._http_thread.start()
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


def serve(base_path=None, host="127.0.0.1", port=8501, grpc_port=8500, **kwargs):
    """Start a `ModelServer` (see its arguments) and return it, running."""
    return ModelServer(base_path, host=host, port=port, grpc_port=grpc_port, **kwargs).start()
