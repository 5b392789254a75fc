"""How much does serving cost over calling the model in process? And does the server
hold up under concurrent clients?

    python benchmarks/serving_overhead.py                              # lenet5, 28 px
    python benchmarks/serving_overhead.py --model resnet50 --size 128  # weights=None, 128 px

Exports the model, starts `zoo serve` in a subprocess (so client threads do not share
the server's interpreter), then measures at batch 1, one JPEG per request:

- in process: Keras `model.predict`, and the exported SavedModel's `serving_bytes`
  and `serving_default` concrete functions (what the server runs);
- one client: REST with b64 JPEG to `serving_bytes`, REST with a JSON pixel array to
  `serving_default`, gRPC (official stub) with the JPEG bytes;
- load: C concurrent clients x R requests each, REST and gRPC, kept-alive connections.

Prints a markdown table for benchmarks/README.md. Timings are wall-clock per request;
each row carries the highest 1-minute load average seen while it was measured
(benchmarks/load.py).

    python benchmarks/serving_overhead.py --smoke     # tiny: checks the script end to end
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.client
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.load import Load, text  # noqa: E402

SERVER = """
import sys
from zoo.serving.server import serve
server = serve(sys.argv[1], port=0, grpc_port=0, poll_seconds=0)
print("READY", server.port, server.grpc_port, flush=True)
server.wait()
"""


def percentiles(seconds):
    ms = np.asarray(seconds) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.mean())


def timed(fn, n, warmup=10):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def make_jpeg(size):
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.chelsea())  # a real photo, resized by the graph
    photo = photo.resize((max(size, 64), max(size, 64)), Image.BILINEAR)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def build_model(name, size):
    import zoo
    from zoo.models import get_spec

    if name == "lenet5" and size in (None, 28):
        return zoo.create("lenet5"), "lenet5 (digits weights, 28 px)"
    spec = get_spec(name)
    size = size or spec.input_size[0]
    model = zoo.create(name, weights=None, input_shape=(size, size, 3))
    return model, f"{name} (weights=None, {size} px)"


def rest_client(port, path, body, n, results, failures, barrier=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    if barrier is not None:
        barrier.wait()
    for _ in range(n):
        start = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                failures.append(payload[:200])
                continue
        except Exception as error:  # noqa: BLE001  (counted as a failure)
            failures.append(repr(error))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            continue
        results.append(time.perf_counter() - start)
    connection.close()


def grpc_client(stub, request, n, results, failures, barrier=None):
    if barrier is not None:
        barrier.wait()
    for _ in range(n):
        start = time.perf_counter()
        try:
            stub.Predict(request, timeout=120)
        except Exception as error:  # noqa: BLE001
            failures.append(repr(error))
            continue
        results.append(time.perf_counter() - start)


def load(run_one, clients, requests):
    results, failures = [], []
    barrier = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(target=run_one, args=(requests, results, failures, barrier)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return results, failures, elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--size", type=int, default=None, help="input size (a registry model other than lenet5)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per client in the load test")
    parser.add_argument("--single", type=int, default=200, help="requests in the one-client measurements")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny: 20 single requests, 2 clients x 10 (checks the script, figures mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.single, args.clients, args.requests = 20, 2, 10

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    import zoo

    model, described = build_model(args.model, args.size)
    height, width = model.inputs[0].shape[1:3]
    base = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    export_dir = zoo.export(model, base, "bench")
    jpeg = make_jpeg(height)
    pixels = tf.image.resize(tf.io.decode_jpeg(jpeg), (height, width)).numpy().round().clip(0, 255)
    pixels_uint8 = pixels.astype("uint8")[None]

    rows = []
    monitor = Load()

    def row(label, seconds, part, extra=""):
        p50, p99, mean = percentiles(seconds)
        rows.append((label, p50, p99, mean, extra, text(part)))
        print(f"{label:55s} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  mean {mean:8.2f} ms  load {part} {extra}",
              flush=True)

    def measured(label, fn, *args):
        with monitor.timed(label) as part:
            seconds = fn(*args)
        return seconds, part

    # In process.
    label = "in process: Keras model.predict (uint8 array)"
    row(label, *measured(label, timed, lambda: model.predict(pixels_uint8, verbose=0), args.single))
    loaded = tf.saved_model.load(str(export_dir))
    by_bytes = loaded.signatures["serving_bytes"]
    by_array = loaded.signatures["serving_default"]
    jpeg_tensor = tf.constant([jpeg])
    float_tensor = tf.constant(pixels[None], tf.float32)
    label = "in process: SavedModel serving_bytes (JPEG)"
    in_process, part = measured(label, timed, lambda: by_bytes(image_bytes=jpeg_tensor)["probabilities"].numpy(),
                                args.single)
    row(label, in_process, part)
    label = "in process: SavedModel serving_default (float array)"
    row(label, *measured(label, timed, lambda: by_array(images=float_tensor)["probabilities"].numpy(), args.single))
    del loaded, by_bytes, by_array

    # The server in its own process.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(base)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        ready = server.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise SystemExit(f"server did not start: {ready}")
        port, grpc_port = int(ready[1]), int(ready[2])
        path = "/v1/models/bench:predict"
        bytes_body = json.dumps(
            {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(jpeg).decode()}]}
        ).encode()
        array_body = json.dumps({"instances": pixels[None].tolist()}).encode()

        results, failures = [], []
        rest_client(port, path, bytes_body, 10, [], failures)  # warm-up
        label = "1 client: REST b64 JPEG -> serving_bytes"
        _, part = measured(label, rest_client, port, path, bytes_body, args.single, results, failures)
        rest_p50 = percentiles(results)[0]
        row(label, results, part, f"overhead vs in process p50: {rest_p50 / percentiles(in_process)[0] - 1:+.0%}")
        results = []
        label = f"1 client: REST JSON array ({len(array_body) // 1024} KiB) -> serving_default"
        _, part = measured(label, rest_client, port, path, array_body, args.single, results, failures)
        row(label, results, part)

        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "bench"
        request.model_spec.signature_name = "serving_bytes"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg]))
        grpc_client(stub, request, 10, [], failures)
        results = []
        label = "1 client: gRPC JPEG -> serving_bytes"
        _, part = measured(label, grpc_client, stub, request, args.single, results, failures)
        row(label, results, part,
            f"overhead vs in process p50: {percentiles(results)[0] / percentiles(in_process)[0] - 1:+.0%}")

        load_rows = []
        for label, run_one in (
            ("REST", lambda n, r, f, b: rest_client(port, path, bytes_body, n, r, f, b)),
            ("gRPC", lambda n, r, f, b: grpc_client(stub, request, n, r, f, b)),
        ):
            (results, load_failures, elapsed), part = measured(f"load {label}", load, run_one, args.clients,
                                                               args.requests)
            p50, p99, _ = percentiles(results)
            total = args.clients * args.requests
            load_rows.append((label, total, len(load_failures), total / elapsed, p50, p99, text(part)))
            print(
                f"load {label}: {args.clients} clients x {args.requests} requests: {len(load_failures)} failures, "
                f"{total / elapsed:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, load {part}",
                flush=True,
            )
        if failures:
            print(f"failures in one-client runs: {failures[:3]}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    cpus = os.cpu_count()
    print(f"\n#### {described}, batch 1 — {datetime.date.today()}, {cpus} CPU cores, "
          f"{platform.processor() or platform.machine()}, TF {tf.__version__}\n")
    print("Load: the highest 1-minute load average while the row was measured.\n")
    print("| path | p50 ms | p99 ms | mean ms | note | load |\n|---|---|---|---|---|---|")
    for label, p50, p99, mean, extra, load_average in rows:
        print(f"| {label} | {p50:.2f} | {p99:.2f} | {mean:.2f} | {extra} | {load_average} |")
    print(f"\n| load ({args.clients} clients x {args.requests} requests, b64 JPEG) | failures | requests/s | p50 ms "
          f"| p99 ms | load average |")
    print("|---|---|---|---|---|---|")
    for label, total, failed, rate, p50, p99, load_average in load_rows:
        print(f"| {label} | {failed} / {total} | {rate:.0f} | {p50:.2f} | {p99:.2f} | {load_average} |")
    monitor.verdict()


if __name__ == "__main__":
    main()
