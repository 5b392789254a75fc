"""`zoo serve`'s REST side against hostile clients (issue 23): what a careful server does
with request smuggling, header floods, slow clients, over-size bodies, slow model calls,
and with SIGINT, SIGTERM and SIGKILL of its process.

Each test talks raw bytes over a socket, so that what the server answers (and whether it
answers at all) is seen as a client sees it. The in-process server serves TF Serving's
half_plus_two test model (tests/helpers/tf_serving_models.py) with short timeouts; the
signal tests run `zoo serve` itself in a subprocess (large tier).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from helpers.processes import group_processes, wait_for_no_group  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = "half"
PREDICT = f"/v1/models/{NAME}:predict"
SMUGGLED = b"GET /v1/models/SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"
HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from helpers.tf_serving_models import half_plus_two

    base = tmp_path_factory.mktemp("hostile") / "models"
    half_plus_two(base / NAME / "1")
    return base


@pytest.fixture(scope="module")
def server(models):
    from zoo.serving.server import ModelServer

    with ModelServer(models, port=0, grpc_port=None, poll_seconds=0, max_body_bytes=1 << 20,
                     header_timeout=HEADER_TIMEOUT, idle_timeout=IDLE_TIMEOUT) as running:
        yield running


def exchange(port, data, timeout=20.0):
    """Send `data`, then read until the server closes the connection. Returns
    `(everything read, closed by the server)`; `closed` is False where `timeout`
    seconds passed first."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        try:
            conn.sendall(data)
        except OSError:  # the server refused and closed while we were still sending
            pass
        return read_to_close(conn, timeout)


def read_to_close(conn, timeout):
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        conn.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def statuses(reply):
    """The status codes of every answer in `reply`, in order (a status line may follow
    the previous answer's body on the same line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", reply)]


def error_of(reply):
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), reply[:500]
    parsed = json.loads(body)
    assert set(parsed) == {"error"} and parsed["error"], parsed
    return parsed["error"]


def predict_ok(server):
    body = b'{"instances": [1.0, 2.0]}'
    reply, _ = exchange(server.port, b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert statuses(reply) == [200], reply[:500]
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"predictions": [2.5, 3.0]}


# ------------------------------------------------------------------------ smuggling
FRAMINGS = {
    # CL.TE: a front end reading Content-Length forwards all of it; one reading chunked
    # sees an empty body, then a second request.
    "content-length and chunked": b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "two content-lengths": b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "a space before the colon": b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                                b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
}


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_a_smuggled_request_is_never_answered(server, framing):
    """Ambiguous framing is a 400 (JSON) on a closed connection: the request hidden in
    the body is neither parsed nor answered (before: a 400, then a 404 for SMUGGLED)."""
    reply, closed = exchange(server.port, FRAMINGS[framing])
    assert closed, reply[:500]
    assert statuses(reply) == [400], reply.decode("latin-1")
    assert b"SMUGGLED" not in reply
    assert error_of(reply).startswith("Malformed HTTP request")
    predict_ok(server)


@pytest.mark.parametrize("request_bytes", [
    b"GET\r\n\r\n",
    b"GET /v1/models/half HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /v1/models/half HTTP/9.9\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello to the plain port
], ids=["no target", "no colon", "bad version", "tls"])
def test_what_the_http_parser_refuses_is_a_json_400_and_the_connection_closes(server, request_bytes):
    reply, closed = exchange(server.port, request_bytes + SMUGGLED)
    assert closed and statuses(reply) == [400], reply[:500]
    assert b"SMUGGLED" not in reply
    error_of(reply)


def test_pipelined_requests_are_answered_in_order(server):
    body = b'{"instances": [4.0]}'
    one = b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    last = b"GET /v1/models/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply, closed = exchange(server.port, one * 3 + last)
    assert closed and statuses(reply) == [200, 200, 200, 404], reply[:1000]


# ---------------------------------------------------------------------- header limits
def _rss_and_reset_peak():
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM := VmRSS (Linux >= 4.0)
    return _status("VmRSS")


def _status(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def test_one_requests_headers_are_bounded_with_a_431(server):
    reply, closed = exchange(server.port, b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\nX-Big: "
                             + b"a" * 70_000 + b"\r\n\r\n")
    assert closed and statuses(reply) == [431], reply[:500]
    assert "65536" in error_of(reply)
    # Just under the limit is served.
    reply, _ = exchange(server.port, b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
                        + b"a" * 60_000 + b"\r\n\r\n")
    assert statuses(reply) == [200], reply[:500]


def test_a_header_flood_does_not_grow_the_server(server):
    """100 connections each sending 99 header lines of 60 KB and never the blank line
    (before: +560 MiB and 119 threads). Each gets a 431 once past 64 KiB."""
    line = b"X-Flood: " + b"f" * 60_000 + b"\r\n"
    answers, lock = [], threading.Lock()

    def flood():
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
            try:
                conn.sendall(b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\n")
                for _ in range(99):
                    conn.sendall(line)
            except OSError:  # refused and closed mid-flood, as it should be
                pass
            reply, closed = read_to_close(conn, 30)
        with lock:
            answers.append((statuses(reply), closed))

    threads_before = threading.active_count()
    before = _rss_and_reset_peak()
    floods = [threading.Thread(target=flood) for _ in range(100)]
    for thread in floods:
        thread.start()
    for thread in floods:
        thread.join(120)
    growth = _status("VmHWM") - before
    assert growth < 100, f"the server grew by {growth:.0f} MiB under the header flood"
    assert len(answers) == 100 and all(closed for _, closed in answers), answers
    # A 431 each, unless the reset beat the answer to the client.
    assert sum(codes == [431] for codes, _ in answers) >= 90, answers
    assert threading.active_count() <= threads_before + 1
    predict_ok(server)


def test_a_flood_of_made_up_model_names_leaves_the_metrics_page_small(models):
    """Issue 23 as found, end to end: 2,000 REST requests for unknown models, 96 more
    whose names are 60 KB, and one gRPC Predict naming a 4 MiB model (before: the page
    grew from 47 KiB to 360 MiB, a scrape took 2 s, RSS +1.1 GiB). Each is refused as
    before (404 / NOT_FOUND); the page stays under 1 MiB and the served model's own
    counter is exact."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from zoo.serving.server import ModelServer

    with ModelServer(models, port=0, grpc_port=0, poll_seconds=0, max_body_bytes=8 << 20) as server:
        before = _rss_and_reset_peak()
        names = [f"nope{i}" for i in range(2000)] + [f"{i:02d}" + "n" * 60_000 for i in range(96)]
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
            for name in names:
                conn.sendall(f"GET /v1/models/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                assert statuses(head) == [404], head[:300]
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
                body = head.partition(b"\r\n\r\n")[2]
                while len(body) < length:
                    body += conn.recv(65536)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "g" * (4 << 20)
        channel = grpc.insecure_channel(server.grpc_target, options=[("grpc.max_send_message_length", 8 << 20)])
        with pytest.raises(grpc.RpcError) as refused:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
        # Its own status, its details cut to fit a status (not 4 MiB echoed back).
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND, refused.value
        assert len(refused.value.details()) <= 4096
        channel.close()
        predict_ok(server)

        started = time.monotonic()
        reply, _ = exchange(server.port, b"GET /monitoring/prometheus/metrics HTTP/1.1\r\nHost: x\r\n"
                                         b"Connection: close\r\n\r\n")
        scrape = time.monotonic() - started
        page = reply.partition(b"\r\n\r\n")[2].decode()
        growth = _status("VmHWM") - before
    assert statuses(reply) == [200]
    assert len(page) < 1 << 20, f"the metrics page is {len(page)} bytes"
    assert scrape < 1.0, scrape
    assert growth < 100, f"the server grew by {growth:.0f} MiB under the metrics flood"
    assert "nope" not in page and "nnnnnnnn" not in page and "gggggggg" not in page
    assert f':tensorflow:serving:request_count{{model_name="{NAME}",status="OK"}} 1' in page
    assert re.search(r':tensorflow:serving:request_count\{model_name="",status="NOT_FOUND"\} (\d+)', page)


def test_header_bytes_in_flight_over_all_connections_are_bounded_with_a_503(models):
    from zoo.serving.server import ModelServer

    with ModelServer(models, port=0, grpc_port=None, poll_seconds=0,
                     max_header_bytes_in_flight=200_000) as small:
        held = []
        try:
            for _ in range(3):  # 3 x 60 KB held: under the limit
                conn = socket.create_connection(("127.0.0.1", small.port), timeout=30)
                conn.sendall(b"GET /v1/models/half HTTP/1.1\r\nX-Held: " + b"h" * 60_000)
                held.append(conn)
            time.sleep(0.2)  # (let the server read them; the 503 below does not depend on it)
            reply, closed = exchange(small.port, b"GET /v1/models/half HTTP/1.1\r\nX-Held: " + b"h" * 60_000)
            assert closed and statuses(reply) == [503], reply[:500]
            assert "--rest_api_max_header_bytes_in_flight" in error_of(reply)
        finally:
            for conn in held:
                conn.close()
        # Once they are gone, the room is back.
        deadline = time.monotonic() + 10
        while True:
            reply, _ = exchange(small.port, b"GET /v1/models/half HTTP/1.1\r\nConnection: close\r\n\r\n")
            if statuses(reply) == [200] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert statuses(reply) == [200], reply[:500]


# ----------------------------------------------------------------------- slow clients
def test_slowloris_is_closed_with_a_408(server):
    """A client sending its headers a line at a time, forever, is cut off once
    `header_timeout` has passed since its first byte."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"GET /v1/models/half HTTP/1.1\r\n")
        reply = b""
        while time.monotonic() - started < 10 * HEADER_TIMEOUT + 10:
            try:
                conn.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            conn.settimeout(0.2)
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
        reply += read_to_close(conn, 5)[0]
    elapsed = time.monotonic() - started
    assert statuses(reply) == [408], reply[:500]
    assert "--rest_api_header_timeout_in_ms" in error_of(reply)
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + 5, elapsed


def test_an_idle_connection_and_a_stalled_body_are_closed(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        reply, closed = read_to_close(conn, IDLE_TIMEOUT + 10)  # never sends a byte
    assert closed and reply == b"" and time.monotonic() - started < IDLE_TIMEOUT + 5
    started = time.monotonic()
    reply, closed = exchange(server.port, b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 100\r\n\r\n{\"instances\"", timeout=IDLE_TIMEOUT + 10)
    assert closed and statuses(reply) == [408], reply[:500]
    assert time.monotonic() - started < IDLE_TIMEOUT + 5


# ----------------------------------------------------------------------- bodies, time
def test_an_over_size_body_is_refused_before_it_is_sent_with_expect_100_continue(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % (64 << 20))
        reply, closed = read_to_close(conn, 20)
    assert closed and statuses(reply) == [413], reply[:500]  # no 100 Continue first
    assert "limit of 1048576 bytes" in error_of(reply)
    # Within the limit, the 100 Continue comes and the request is served.
    body = b'{"instances": [1.0]}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert conn.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(body)
        reply, _ = read_to_close(conn, 20)
    assert statuses(reply) == [200], reply[:500]


def test_a_request_past_its_deadline_gets_a_504_and_is_counted(models, monkeypatch):
    from zoo.serving import rest
    from zoo.serving.server import ModelServer

    original = rest._serve

    def slow(*args):
        time.sleep(1.5)
        return original(*args)

    monkeypatch.setattr(rest, "_serve", slow)
    with ModelServer(models, port=0, grpc_port=None, poll_seconds=0, request_timeout=0.3) as timed:
        body = b'{"instances": [1.0]}'
        started = time.monotonic()
        reply, _ = exchange(timed.port, b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nConnection: close\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert statuses(reply) == [504], reply[:500]
        assert time.monotonic() - started < 1.4
        assert "--rest_api_timeout_in_ms" in error_of(reply)
        metrics, _ = exchange(timed.port, b"GET /monitoring/prometheus/metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert b':tensorflow:serving:request_count{model_name="half",status="DEADLINE_EXCEEDED"} 1' in metrics


# --------------------------------------------------------------------- zoo serve: stop
def _start_zoo_serve(models, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "zoo", "serve", str(models), "--port", "0", "--grpc-port", "-1",
                                "--poll-seconds", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    first = process.stdout.readline()
    if not first.startswith("REST on http://127.0.0.1:"):
        process.kill()
        pytest.fail(first + process.communicate()[1][-3000:])
    return process, int(first.split()[2].rstrip(",").rsplit(":", 1)[1])


def _large_body():
    """A predict body over 1 MiB: parsed in a worker process, so the server has children."""
    values = [float(i % 100) for i in range(200_000)]
    body = json.dumps({"instances": values}).encode()
    assert len(body) > 1 << 20
    return body, [v / 2 + 2 for v in values]


@pytest.mark.large
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_zoo_serve_stopped_answers_the_request_in_flight_and_leaves_no_child(models, signal_number):
    process, port = _start_zoo_serve(models)
    try:
        body, expected = _large_body()
        with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
            conn.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body))
            # The 100 Continue says the request is in the application: in flight.
            assert conn.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            process.send_signal(signal_number)
            conn.sendall(body)
            reply, closed = read_to_close(conn, 120)
        assert statuses(reply) == [200], reply[:500]
        assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"predictions": expected}
        assert closed
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert wait_for_no_group(process.pid) == []
        # ... and nothing listens any more.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


@pytest.mark.large
def test_sigkill_of_zoo_serve_leaves_no_child(models):
    process, port = _start_zoo_serve(models)
    try:
        body, expected = _large_body()
        reply, _ = exchange(port, b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nConnection: close\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body, timeout=120)
        assert statuses(reply) == [200], reply[:500]
        children = [pid for pid in group_processes(process.pid) if pid != process.pid]
        assert children, "the large body should have started the parser processes"
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
        assert wait_for_no_group(process.pid) == [], "children outlived the SIGKILLed server"
    finally:
        if group_processes(process.pid):
            os.killpg(process.pid, signal.SIGKILL)


def test_zoo_serve_takes_the_limits_as_tf_serving_style_flags():
    import argparse

    from zoo.serving.cli import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    defaults = parser.parse_args(["serve", "models"])
    assert (defaults.max_connections, defaults.max_header_bytes, defaults.max_header_bytes_in_flight,
            defaults.timeout_ms, defaults.header_timeout_ms, defaults.idle_timeout_ms, defaults.grace_seconds) == \
        (256, 65536, 16 << 20, 30000, 10000, 60000, 10.0)
    given = parser.parse_args(["serve", "models", "--rest_api_max_connections", "9", "--rest_api_max_header_bytes",
                               "1000", "--rest_api_max_header_bytes_in_flight", "5000", "--rest_api_timeout_in_ms",
                               "0", "--rest_api_header_timeout_in_ms", "500", "--rest_api_idle_timeout_in_ms",
                               "700", "--rest_api_num_threads", "3", "--grace_period_seconds", "2"])
    assert (given.max_connections, given.max_header_bytes, given.max_header_bytes_in_flight, given.timeout_ms,
            given.header_timeout_ms, given.idle_timeout_ms, given.rest_threads, given.grace_seconds) == \
        (9, 1000, 5000, 0, 500, 700, 3, 2.0)
    assert parser.parse_args(["serve", "models", "--max-connections", "7"]).max_connections == 7
    serve = next(action for action in parser._subparsers._group_actions[0].choices.items() if action[0] == "serve")[1]
    text = serve.format_help()
    for flag in ("--rest_api_max_header_bytes", "--rest_api_max_header_bytes_in_flight", "--rest_api_timeout_in_ms",
                 "--rest_api_header_timeout_in_ms", "--rest_api_idle_timeout_in_ms", "--rest_api_max_connections",
                 "--grace_period_seconds"):
        assert flag in text, flag
    for status in ("413", "431", "503", "504", "408"):
        assert status in text, status
