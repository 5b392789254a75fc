"""Does server-side batching (`zoo serve --enable_batching`) raise throughput under
concurrent single-image requests, and what does it cost in latency?

    PYTHONPATH=. python benchmarks/serving.py              # 1/8/32/128 clients, 10 s each
    PYTHONPATH=. python benchmarks/serving.py --smoke      # a few seconds, for CI
    PYTHONPATH=. python benchmarks/serving.py --seconds 20 --clients 32 --timeout-micros 2000
    PYTHONPATH=. python benchmarks/serving.py --model resnet50 --size 64   # compute-bound
    git worktree add /tmp/rest_old 5cfcb23                   # the REST stack before uvicorn
    PYTHONPATH=. python benchmarks/serving.py --compare-old /tmp/rest_old --clients 1,8,32,128

Exports LeNet-5 (random init, seed 0) and serves it twice, batching off and on, each
in a subprocess running the `ModelServer` that `zoo serve` runs (kept in reach so the
batcher's own figures can be read; `zoo serve --enable_batching
--batching_parameters_file` itself is started once and checked to answer). Batching
uses a TF Serving parameters file: max_batch_size 32, batch_timeout_micros
`--timeout-micros` (0 by default, TF Serving's advice for CPUs), num_batch_threads 1.

For each server and client count C, a separate client process (sharing neither the
server's interpreter nor its GIL) runs C threads, each with a persistent HTTP/1.1
connection sending one real digit (scikit-learn's; b64 PNG to `serving_bytes` by
default) per `:predict` request, for `--seconds` after a warm-up. Reported per run:
requests/s, p50/p99 latency, the on/off ratio, CPU ms per request of the server and the
client, and for batching on the mean batch size and the time requests spent in the
batcher; then the answers of the two servers compared (class ids, probabilities), and
one batch's compute (the served signature at batch 1 and 32, in process). Each run is
printed with the highest 1-minute load average seen while it ran (benchmarks/load.py).

`--compare-old TREE` measures the REST stack instead of batching: batching off on both
sides, the same model, bodies and client, this tree's server (uvicorn + httptools) and
the one in TREE (a checkout of another commit, e.g. 5cfcb23, the `http.server` stack,
run with PYTHONPATH and its working directory there), the sides alternating at each
client count.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.client
import socket
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

from benchmarks.load import Load, highest, text as load_text  # noqa: E402

MODEL = "bench"
SIGNATURES = {"uint8": "serving_uint8", "float": "serving_default", "png": "serving_bytes"}


# ------------------------------------------------------------------ client process
class Connection:
    """A lean HTTP/1.1 keep-alive client: the request bytes are built once, the answer
    read by Content-Length. `http.client` parses headers with the email package and
    costs the client process more CPU per request than the server's own parsing; on 2
    cores that CPU comes out of the server's share."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post(self, request):
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        while len(self.buffer) < length:
            self._recv()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self):
        self.sock.close()


def http_request(port, body):
    if not body:  # --status: the model's status, no model call (the HTTP stack alone)
        return f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    return (f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def drive(port, clients, seconds, warmup, bodies_file, out_file):
    """The client process: `clients` threads on kept-alive connections, each sending
    the request bodies in turn; writes latencies, CPU time and each image's first answer."""
    bodies = json.loads(Path(bodies_file).read_text())
    requests = [http_request(port, body.encode()) for body in bodies]
    lock = threading.Lock()
    latencies, failures, answers = [], [], {}
    barrier = threading.Barrier(clients + 1)
    state = {"measure_from": None, "stop_at": None, "completed": 0}

    def client(index):
        connection = Connection(port)
        mine, k = [], 0
        barrier.wait()
        while True:
            start = time.perf_counter()
            if start >= state["stop_at"]:
                break
            image = (index + k * clients) % len(requests)
            k += 1
            try:
                status, payload = connection.post(requests[image])
            except Exception as error:  # noqa: BLE001  (counted)
                with lock:
                    failures.append(repr(error))
                connection.close()
                connection = Connection(port)
                continue
            end = time.perf_counter()
            if status != 200:
                with lock:
                    failures.append(payload[:200].decode(errors="replace"))
                continue
            if start >= state["measure_from"]:
                mine.append(end - start)
            if image not in answers:
                with lock:
                    answers.setdefault(image, payload.decode())
        connection.close()
        with lock:
            latencies.extend(mine)
            state["completed"] += k

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    state["measure_from"], state["stop_at"] = start + warmup, start + warmup + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    Path(out_file).write_text(json.dumps({
        "latencies": latencies, "failures": failures[:20], "failed": len(failures),
        "seconds": seconds, "answers": answers, "cpu": time.process_time(), "completed": state["completed"],
    }))


def cpu_seconds(pid):
    """utime + stime of a process so far (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_clients(port, clients, seconds, warmup, bodies_file, server_pid=None):
    """Run the client process; adds rate, p50/p99 (ms) and CPU ms per request of the
    server and of the client process to its result."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as out:
        out_file = out.name
    before = cpu_seconds(server_pid) if server_pid else None
    subprocess.run([sys.executable, __file__, "--drive", str(port), str(clients), str(seconds), str(warmup),
                    bodies_file, out_file], check=True)
    after = cpu_seconds(server_pid) if server_pid else None
    result = json.loads(Path(out_file).read_text())
    completed = max(result["completed"], 1)
    result["server_cpu_ms"] = (after - before) * 1e3 / completed if before is not None and after is not None else None
    result["client_cpu_ms"] = result["cpu"] * 1e3 / completed
    os.unlink(out_file)
    ms = np.asarray(result["latencies"]) * 1000.0
    result["count"] = len(ms)
    result["rate"] = len(ms) / seconds
    result["p50"], result["p99"] = (float(np.percentile(ms, 50)), float(np.percentile(ms, 99))) if len(ms) else (0, 0)
    return result


# -------------------------------------------------------------------------- server
SERVER = """
import json, sys
from zoo.serving.server import ModelServer

base, config, signature, intra, inter = sys.argv[1], sys.argv[2] or None, sys.argv[3], *map(int, sys.argv[4:6])
# What `zoo serve BASE --port 0 --grpc-port -1 --poll-seconds 0 [--enable_batching
# --batching_parameters_file FILE]` runs, kept in reach to read the batcher's own figures.
server = ModelServer(base, port=0, grpc_port=None, poll_seconds=0, enable_batching=config is not None,
                     batching_parameters_file=config, intra_op_threads=intra, inter_op_threads=inter).start()
print("READY", server.port, flush=True)
for line in sys.stdin:
    servable = server.store.get("bench")
    if servable.batching is None:
        print(json.dumps({}), flush=True)
        continue
    batcher = servable.batcher(servable.signature(signature))
    stats = dict(batcher.stats, sizes=dict(batcher.stats["sizes"]), latencies=list(batcher.latencies))
    batcher.reset_stats()
    print(json.dumps(stats), flush=True)
"""


class Server:
    """The model server (`zoo serve`'s `ModelServer`) in a subprocess, on a free port;
    `batcher_stats()` returns (and zeroes) its batcher's figures."""

    def __init__(self, base, batching_file=None, signature="serving_default", threads=(0, 0), root=ROOT):
        env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
        command = [sys.executable, "-c", SERVER, str(base), str(batching_file or ""), signature, *map(str, threads)]
        # The working directory is the tree's too: `python -c` puts it first on sys.path.
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, env=env, cwd=str(root))
        ready = self.process.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise SystemExit(f"the server did not start (exit {self.process.wait()})")
        self.port = int(ready[1])

    def batcher_stats(self):
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_cli(base, batching_file, body):
    """`zoo serve --enable_batching --batching_parameters_file FILE` starts and answers."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "zoo", "serve", str(base), "--port", "0", "--grpc-port", "-1",
               "--poll-seconds", "0", "--enable_batching", "--batching_parameters_file", str(batching_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                               cwd=str(ROOT))
    try:
        for line in process.stdout:
            if line.startswith("REST on "):
                port = int(line.split()[2].rstrip(",").rsplit(":", 1)[1])
                return request(port, body)
        raise SystemExit(f"zoo serve did not start (exit {process.wait()}): {' '.join(command)}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def request(port, body):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", f"/v1/models/{MODEL}:predict", body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ---------------------------------------------------------------------------- main
def make_bodies(images, fmt):
    signature = SIGNATURES[fmt]
    bodies = []
    for image in images:
        if fmt == "png":
            from PIL import Image

            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "PNG")
            instance = {"b64": base64.b64encode(buffer.getvalue()).decode("ascii")}
        elif fmt == "float":
            instance = image.astype("float32").tolist()
        else:
            instance = image.tolist()
        bodies.append(json.dumps({"signature_name": signature, "instances": [instance]}))
    return bodies


def batch_compute(export_dir, images, fmt, repeats):
    """Seconds per call of the served signature at batch 1 and 32, in process
    (median of `repeats`)."""
    from zoo.serving.store import Servable

    servable = Servable(MODEL, 1, export_dir)
    signature = servable.signature(SIGNATURES[fmt])
    key = next(iter(signature.inputs))
    if fmt == "png":
        from PIL import Image

        def encode(image):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "PNG")
            return buffer.getvalue()

        feeds = np.array([encode(image) for image in images[:32]], dtype=object)
    else:
        feeds = images[:32].astype(signature.inputs[key].dtype)
    out = {}
    for size in (1, 32):
        feed = {key: feeds[:size]}
        for _ in range(10):
            servable.run(signature, feed)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            servable.run(signature, feed)
            times.append(time.perf_counter() - start)
        out[size] = float(np.median(times))
    servable.close()
    return out


def compare(answers_off, answers_on):
    """Both servers' first answer for each image: (images compared, class ids equal,
    bit-identical answers, max |probability difference|)."""
    common = sorted(set(answers_off) & set(answers_on))
    same_class = identical = 0
    worst = 0.0
    for image in common:
        a = json.loads(answers_off[image])["predictions"][0]
        b = json.loads(answers_on[image])["predictions"][0]
        same_class += a["class_ids"] == b["class_ids"]
        identical += answers_off[image] == answers_on[image]
        worst = max(worst, float(np.abs(np.float32(a["probabilities"]) - np.float32(b["probabilities"])).max()))
    return len(common), same_class, identical, worst


def _ms(value):
    return "?" if value is None else f"{value:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="8,32,128", help="client counts (default: 8,32,128)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default: 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run (default: 2)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="max_batch_size (default: 32)")
    parser.add_argument("--timeout-micros", type=int, default=0,
                        help="batch_timeout_micros (default: 0, TF Serving's advice for CPUs)")
    parser.add_argument("--batch-threads", type=int, default=1, help="num_batch_threads (default: 1)")
    parser.add_argument("--format", choices=sorted(SIGNATURES), default="png",
                        help="request body: a b64 PNG (serving_bytes; the default), uint8 pixels (serving_uint8) "
                             "or float pixels (serving_default)")
    parser.add_argument("--model", default="lenet5", help="registry model (default: lenet5); others weights=None")
    parser.add_argument("--size", type=int, default=64, help="input size for a model other than lenet5 (default: 64)")
    parser.add_argument("--threads", default="0,0",
                        help="the served model's intra-op,inter-op threads, as zoo serve's "
                             "--tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (default: 0,0: "
                             "TF's choice; -1 inter-op runs a call's ops on its own thread)")
    parser.add_argument("--old-threads", default="0,0",
                        help="with --compare-old: the old tree's model threads (default: 0,0, what it served with)")
    parser.add_argument("--compare-old", metavar="TREE",
                        help="compare this tree's REST stack with the one in TREE (another commit's checkout, "
                             "e.g. `git worktree add /tmp/rest_old 5cfcb23`), batching off, sides alternating")
    parser.add_argument("--status", action="store_true",
                        help="with --compare-old: GET the model's status instead of :predict (no model call: "
                             "the HTTP stack alone)")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: 8 and 32 clients, 1 s each")
    parser.add_argument("--drive", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        port, clients, seconds, warmup, bodies_file, out_file = args.drive
        drive(int(port), int(clients), float(seconds), float(warmup), bodies_file, out_file)
        return 0
    if args.smoke:
        args.clients, args.seconds, args.warmup = "8,32", 1.0, 0.5
    client_counts = [int(c) for c in args.clients.split(",") if int(c) != 1]  # one client is always run

    import keras
    import tensorflow as tf

    import zoo
    from zoo.data.digits import load_digits_28
    from zoo.serving.batching import BatchingParameters, format_batching_parameters

    images = load_digits_28()[0][:256]
    keras.utils.set_random_seed(0)
    if args.model == "lenet5":
        model, described = zoo.create("lenet5", weights=None, num_classes=10), "LeNet-5 (random init, 28 px)"
    else:  # a model whose compute is not negligible, for comparison
        from PIL import Image

        model = zoo.create(args.model, weights=None, input_shape=(args.size, args.size, 3))
        described = f"{args.model} (weights=None, {args.size} px)"
        images = np.stack([np.asarray(Image.fromarray(image).resize((args.size, args.size), Image.BILINEAR))
                           for image in images])
    work = Path(tempfile.mkdtemp(prefix="zoo-batching-bench-"))
    export_dir = zoo.export(model, work / "models", MODEL)
    del model
    keras.backend.clear_session()
    compute = batch_compute(export_dir, images, args.format, 50 if args.smoke else 300)
    parameters = BatchingParameters(max_batch_size=args.max_batch_size, batch_timeout_micros=args.timeout_micros,
                                    num_batch_threads=args.batch_threads,
                                    max_enqueued_batches=max(client_counts) // args.max_batch_size + 10)
    batching_file = work / "batching.config"
    batching_file.write_text(format_batching_parameters(parameters))
    bodies_file = work / "bodies.json"
    bodies = make_bodies(images, args.format)
    bodies_file.write_text(json.dumps(bodies))
    signature = SIGNATURES[args.format]
    print(f"{described} {signature}, {len(bodies[0])} B per request; in process: batch 1 "
          f"{compute[1] * 1e3:.2f} ms, batch 32 {compute[32] * 1e3:.2f} ms ({compute[32] / 32 * 1e3:.3f} ms/image)",
          flush=True)
    threads = tuple(int(n) for n in args.threads.split(","))
    if args.compare_old:
        return compare_stacks(args, work / "models", bodies, str(bodies_file), signature, threads, client_counts,
                              described, tf.__version__)
    print("batching parameters: " + " ".join(format_batching_parameters(parameters).split()), flush=True)
    status, _ = check_cli(work / "models", batching_file, bodies[0].encode())
    print(f"zoo serve --enable_batching --batching_parameters_file: answered {status}", flush=True)

    load = Load()
    results, lone, inside, loads = {}, {}, {}, {}
    for label, config in (("off", None), ("on", batching_file)):
        with Server(work / "models", config, signature, threads) as server:
            status, _ = request(server.port, bodies[0].encode())
            if status != 200:
                raise SystemExit(f"the {label} server answered {status}")
            for clients in [1] + client_counts:
                # One client alone: what batching costs a request with nobody to share it with.
                seconds, warmup = (args.seconds / 2, args.warmup / 2) if clients == 1 else (args.seconds, args.warmup)
                # The batcher's own figures cover the measured seconds, not the warm-up.
                timer = threading.Timer(warmup + 0.3, server.batcher_stats)
                timer.start()
                with load.timed(f"batching {label}, {clients} clients") as part:
                    result = run_clients(server.port, clients, seconds, warmup, str(bodies_file),
                                         server.process.pid)
                loads[label, clients] = part.max
                timer.join()
                stats = server.batcher_stats()
                if clients == 1:
                    lone[label] = result
                else:
                    results[label, clients] = result
                extra = ""
                if stats and stats["latencies"]:
                    ms = np.asarray(stats["latencies"]) * 1e3
                    inside[clients] = (stats["rows"] / max(stats["batches"], 1), max(map(int, stats["sizes"]), default=0),
                                       float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))
                    extra = (f"  | in the batcher: mean batch {inside[clients][0]:.1f} (max {inside[clients][1]}), "
                             f"p50 {inside[clients][2]:.2f} ms, p99 {inside[clients][3]:.2f} ms")
                cpu = (f"  CPU ms/request: server {result['server_cpu_ms']:.2f}, client {result['client_cpu_ms']:.2f}"
                       if result["server_cpu_ms"] is not None else "")
                print(f"batching {label:3s} {clients:3d} clients: {result['rate']:7.0f} req/s  "
                      f"p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms  load {part}  "
                      f"failures {result['failed']}{cpu}"
                      + (f" {result['failures'][:1]}" if result["failed"] else "") + extra, flush=True)

    bound = args.timeout_micros / 1000 + compute[32] * 1e3
    answers_off, answers_on = {}, {}
    for (label, _), result in results.items():
        for image, text in result["answers"].items():
            (answers_off if label == "off" else answers_on).setdefault(image, text)
    compared, same_class, identical, worst = compare(answers_off, answers_on)

    cpus = os.cpu_count()
    print(f"\n#### {described} `{signature}`, one digit per request — {datetime.date.today()}, {cpus} CPU cores, "
          f"{platform.processor() or platform.machine()}, TF {tf.__version__}, {args.seconds:g} s per run, "
          f"highest 1-minute load average during the runs {load_text(highest(loads.values()))} (last column: per run, "
          f"off / on)\n")
    print(f"max_batch_size {args.max_batch_size}, batch_timeout_micros {args.timeout_micros}, num_batch_threads "
          f"{args.batch_threads}; one batch of 32 in process: {compute[32] * 1e3:.2f} ms (batch 1: "
          f"{compute[1] * 1e3:.2f} ms); timeout + one batch = {bound:.2f} ms; model threads (intra, inter) "
          f"{threads}\n")
    print("| clients | off: req/s | off: p50 / p99 ms | on: req/s | on: p50 / p99 ms | **on/off** | "
          "on: mean (max) batch | on: in the batcher p50 / p99 ms | server CPU ms/request off / on | load off / on |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for clients in [1] + client_counts:
        off, on = (lone["off"], lone["on"]) if clients == 1 else (results["off", clients], results["on", clients])
        mean, biggest, in50, in99 = inside.get(clients, (0, 0, 0, 0))
        print(f"| {clients} | {off['rate']:.0f} | {off['p50']:.2f} / {off['p99']:.2f} | {on['rate']:.0f} | "
              f"{on['p50']:.2f} / {on['p99']:.2f} | **{on['rate'] / max(off['rate'], 1e-9):.2f}x** | "
              f"{mean:.1f} ({biggest}) | {in50:.2f} / {in99:.2f} | {_ms(off['server_cpu_ms'])} / "
              f"{_ms(on['server_cpu_ms'])} | {load_text(loads.get(('off', clients)))} / {load_text(loads.get(('on', clients)))} |")
    failed = sum(r["failed"] for r in results.values()) + lone["off"]["failed"] + lone["on"]["failed"]
    print(f"\nfailures: {failed}; answers compared on {compared} images: class ids equal {same_class}/{compared}, "
          f"bit-identical JSON {identical}/{compared}, max |probability difference| {worst:.1e}")
    if 32 in client_counts:
        ratio = results["on", 32]["rate"] / max(results["off", 32]["rate"], 1e-9)
        p99, in99 = results["on", 32]["p99"], inside.get(32, (0, 0, 0, 0))[3]
        print(f"acceptance at 32 clients: throughput {ratio:.2f}x (>= 2x: {'yes' if ratio >= 2 else 'NO'}); "
              f"p99 end to end {p99:.2f} ms, in the batcher {in99:.2f} ms, vs timeout + one batch {bound:.2f} ms")
    load.verdict()
    ok = failed == 0 and compared > 0 and same_class == compared
    return 0 if ok else 1


def compare_stacks(args, base, bodies, bodies_file, signature, threads, client_counts, described, tf_version):
    """This tree's REST stack against the one in `args.compare_old`, batching off, at
    each client count; the sides alternate (which goes first swaps at each count)."""
    old_root = Path(args.compare_old).resolve()
    if not (old_root / "zoo" / "serving" / "server.py").is_file():
        raise SystemExit(f"--compare-old {old_root}: not a zoo checkout")
    if args.status:
        bodies = [""]
        bodies_file = str(Path(bodies_file).with_name("status.json"))
        Path(bodies_file).write_text(json.dumps(bodies))
        described, signature = "GET /v1/models/bench (status, no model call)", "-"
    load = Load()
    sides = {"new": ROOT, "old": old_root}
    results, loads = {}, {}
    old_threads = tuple(int(t) for t in args.old_threads.split(","))
    with Server(base, None, signature, threads) as new, \
            Server(base, None, signature, old_threads, root=old_root) as old:
        servers = {"new": new, "old": old}
        for label, server in servers.items():
            status, _ = request(server.port, bodies[0].encode()) if bodies[0] else (200, None)
            if status != 200:
                raise SystemExit(f"the {label} server ({sides[label]}) answered {status}")
        for index, clients in enumerate([1] + client_counts):
            order = ("old", "new") if index % 2 == 0 else ("new", "old")
            for label in order:
                server = servers[label]
                with load.timed(f"{label}, {clients} clients") as part:
                    result = run_clients(server.port, clients, args.seconds, args.warmup, bodies_file,
                                         server.process.pid)
                results[label, clients], loads[label, clients] = result, part.max
                print(f"{label:3s} {clients:3d} clients: {result['rate']:7.0f} req/s  p50 {result['p50']:7.2f} ms  "
                      f"p99 {result['p99']:7.2f} ms  load {part}  failures {result['failed']}  CPU ms/request: "
                      f"server {_ms(result['server_cpu_ms'])}, client {result['client_cpu_ms']:.2f}"
                      + (f" {result['failures'][:1]}" if result["failed"] else ""), flush=True)
    print(f"\n#### REST stack: {described} `{signature}`, batching off — {datetime.date.today()}, "
          f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, TF {tf_version}, "
          f"{args.seconds:g} s per run, model threads (intra, inter) new {threads}, old {old_threads}, highest "
          f"1-minute load average "
          f"{load_text(highest(loads.values()))}\n")
    print(f"old: {old_root} (http.server); new: {ROOT} (uvicorn + httptools)\n")
    print("| clients | old: req/s | old: p50 / p99 ms | new: req/s | new: p50 / p99 ms | **new/old** | "
          "server CPU ms/request old / new | load old / new |")
    print("|---|---|---|---|---|---|---|---|")
    for clients in [1] + client_counts:
        o, n = results["old", clients], results["new", clients]
        print(f"| {clients} | {o['rate']:.0f} | {o['p50']:.2f} / {o['p99']:.2f} | {n['rate']:.0f} | "
              f"{n['p50']:.2f} / {n['p99']:.2f} | **{n['rate'] / max(o['rate'], 1e-9):.2f}x** | "
              f"{_ms(o['server_cpu_ms'])} / {_ms(n['server_cpu_ms'])} | "
              f"{load_text(loads['old', clients])} / {load_text(loads['new', clients])} |")
    failed = sum(r["failed"] for r in results.values())
    print(f"\nfailures: {failed}")
    if 32 in client_counts:
        o, n = results["old", 32], results["new", 32]
        ratio = n["rate"] / max(o["rate"], 1e-9)
        print(f"acceptance at 32 clients: throughput {ratio:.2f}x (>= 2x: {'yes' if ratio >= 2 else 'NO'}); "
              f"p99 {n['p99']:.2f} ms vs {o['p99']:.2f} ms (no worse: {'yes' if n['p99'] <= o['p99'] else 'NO'})")
    load.verdict()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
