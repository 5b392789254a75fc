"""Server-side request batching (`zoo.serving.batching`), as TF Serving's
`--enable_batching --batching_parameters_file` does it.

Unit tests drive a `Batcher` with a numpy `run` that works row by row (so a row's
answer cannot depend on the batch it ran in, and batched answers must be bit-for-bit
the unbatched ones); the end-to-end test serves a LeNet-5 export with batching on
and off and sends 32 concurrent single-image requests.
"""

import http.client
import inspect
import json
import os
import threading
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from zoo.errors import ZooError  # noqa: E402
from zoo.serving.batching import (  # noqa: E402
    Batcher,
    BatchingParameters,
    Overloaded,
    format_batching_parameters,
    read_batching_parameters,
)
from zoo.serving.store import ServingError  # noqa: E402


def rowwise(inputs):
    """A model whose answer for a row depends on that row only (elementwise ops and
    short per-row sums), with two outputs of different shapes and dtypes."""
    x = inputs["x"]
    return {
        "y": np.tanh(x * np.float32(1.5) + np.float32(0.25)),
        "total": x.reshape(len(x), -1).sum(axis=1),
        "index": np.argmax(x.reshape(len(x), -1), axis=1),
    }


class Recorder:
    """`run` that records the batch sizes (and inputs) it saw, optionally slow."""

    def __init__(self, fn=rowwise, delay=0.0):
        self.fn, self.delay = fn, delay
        self.sizes, self.inputs = [], []
        self.lock = threading.Lock()

    def __call__(self, inputs):
        with self.lock:
            self.sizes.append(len(next(iter(inputs.values()))))
            self.inputs.append(inputs)
        if self.delay:
            time.sleep(self.delay)
        return self.fn(inputs)


def params(**kwargs):
    kwargs.setdefault("num_batch_threads", 2)
    return BatchingParameters(**kwargs)


def hammer(batcher, clients, calls, make_input, results=None, errors=None):
    """`clients` threads, each making `calls` calls; returns [(input, output)]."""
    results = [] if results is None else results
    errors = [] if errors is None else errors
    barrier = threading.Barrier(clients)

    def client(i):
        rng = np.random.default_rng(i)
        barrier.wait()
        for j in range(calls):
            x = make_input(rng, i, j)
            try:
                results.append((x, batcher({"x": x})))
            except Exception as error:  # noqa: BLE001  (the test looks at them)
                errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# ------------------------------------------------------------------------- answers
def test_concurrent_callers_get_bit_identical_answers_and_batches_stay_within_max():
    """40 callers x 25 calls of 1-5 rows: every answer is exactly what the unbatched
    call gives, the batches really were merged, and none was over max_batch_size."""
    run = Recorder(delay=0.001)
    errors = []
    with Batcher(run, params(max_batch_size=16, batch_timeout_micros=2000), name="unit/1/rows") as batcher:
        results = hammer(batcher, 40, 25, lambda rng, i, j: rng.standard_normal(
            (1 + (i + j) % 5, 4, 3)).astype("float32"), errors=errors)
    assert errors == []
    assert len(results) == 1000
    for x, answer in results:
        expected = rowwise({"x": x})
        assert set(answer) == set(expected)
        for key in expected:
            assert answer[key].dtype == expected[key].dtype
            assert answer[key].shape == expected[key].shape
            assert np.array_equal(answer[key], expected[key]), key
    assert max(run.sizes) <= 16
    assert max(run.sizes) > 1 and len(run.sizes) < 1000 / 2  # merged, not one call per request
    assert sum(run.sizes) == sum(len(x) for x, _ in results)  # no padding without allowed sizes
    assert batcher.stats["requests"] == 1000 and batcher.stats["batches"] == len(run.sizes)


def test_padding_to_allowed_batch_sizes_is_stripped_from_the_answers():
    run = Recorder(delay=0.002)
    with Batcher(run, params(max_batch_size=8, batch_timeout_micros=5000, allowed_batch_sizes=(2, 4, 8))) as batcher:
        results = hammer(batcher, 12, 10, lambda rng, i, j: rng.standard_normal((1 + (i * j) % 3, 2)).astype("float32"))
        lone = batcher({"x": np.arange(6, dtype="float32").reshape(3, 2)})
    assert len(results) == 120
    for x, answer in results:
        assert len(answer["y"]) == len(x)
        assert np.array_equal(answer["y"], rowwise({"x": x})["y"])
    assert set(run.sizes) <= {2, 4, 8}
    # A lone 3-row request ran as 4 rows, padded with a copy of its own first row.
    assert run.sizes[-1] == 4
    assert np.array_equal(run.inputs[-1]["x"][3], [0, 1])
    assert lone["y"].shape == (3, 2) and lone["total"].tolist() == [1, 5, 9]
    assert batcher.stats["padding"] > 0


def test_a_request_larger_than_max_batch_size_is_refused_as_tf_serving_does():
    run = Recorder()
    with Batcher(run, params(max_batch_size=8)) as batcher:
        with pytest.raises(ServingError, match="Task size 9 is larger than maximum input batch size 8") as caught:
            batcher({"x": np.zeros((9, 2), "float32")})
        assert caught.value.status == 400
        assert batcher({"x": np.ones((8, 2), "float32")})["total"].tolist() == [2.0] * 8
    assert run.sizes == [8]


def test_large_batch_splitting_runs_a_big_request_in_pieces():
    """enable_large_batch_splitting: a request over max_execution_batch_size is split
    over batches (the first piece filling the open batch) and put back together."""
    run = Recorder(delay=0.01)
    p = params(max_batch_size=64, max_execution_batch_size=8, enable_large_batch_splitting=True,
               batch_timeout_micros=200_000, num_batch_threads=1)
    with Batcher(run, p) as batcher:
        x = np.random.default_rng(0).standard_normal((21, 3)).astype("float32")
        small = threading.Thread(target=batcher, args=({"x": x[:3]},))
        small.start()
        time.sleep(0.005)  # the 3-row request opens a batch; 5 rows of room are left
        answer = batcher({"x": x})
        small.join()
    assert np.array_equal(answer["y"], rowwise({"x": x})["y"])
    assert max(run.sizes) <= 8 and sum(run.sizes) == 24
    assert run.sizes[0] == 8  # 3 rows of the small request + the first 5 of the big one


def test_requests_whose_shapes_differ_beyond_axis_0_never_share_a_batch():
    run = Recorder(delay=0.002)
    with Batcher(run, params(max_batch_size=32, batch_timeout_micros=5000)) as batcher:
        results = hammer(batcher, 16, 8, lambda rng, i, j: rng.standard_normal((1, 2 + i % 3)).astype("float32"))
    for x, answer in results:
        assert np.array_equal(answer["y"], rowwise({"x": x})["y"])
    assert all(len({row.shape for row in inputs["x"]}) == 1 for inputs in run.inputs)
    assert max(run.sizes) > 1


def test_pad_variable_length_inputs_pads_with_each_inputs_first_value():
    """TF Serving's pad_variable_length_inputs: inputs of different lengths share a
    batch, padded at the end of each axis with the tensor's first value."""
    seen = []

    def run(inputs):
        seen.append(inputs["x"].copy())
        time.sleep(0.05)
        return {"y": inputs["x"] * 10}

    with Batcher(run, params(max_batch_size=8, batch_timeout_micros=200_000, pad_variable_length_inputs=True,
                             num_batch_threads=1)) as batcher:
        answers = {}
        threads = [threading.Thread(target=lambda n=n: answers.__setitem__(
            n, batcher({"x": np.arange(1, n + 1, dtype="int32")[None]}))) for n in (2, 4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(seen) == 1 and sorted(seen[0].tolist()) == [[1, 2, 1, 1], [1, 2, 3, 4]]
    assert answers[2]["y"].tolist() == [[10, 20, 10, 10]]
    assert answers[4]["y"].tolist() == [[10, 20, 30, 40]]


def test_one_long_request_cannot_pad_its_neighbours_to_its_length():
    """pad_variable_length_inputs: a request 100,000 long among 31 of length 4 would
    pad the batch to 32 x 100,000 (TF Serving does); here a batch is padded to at most
    twice the elements its requests sent, and every answer is still exact."""
    run = Recorder(fn=lambda inputs: {"y": inputs["x"] * 2}, delay=0.001)
    sent, answers = {}, {}
    barrier = threading.Barrier(32)

    def client(i):
        x = np.arange(1, (100_000 if i == 7 else 4) + 1, dtype="int32")[None] + i
        sent[i] = x
        barrier.wait()
        answers[i] = batcher({"x": x})

    with Batcher(run, params(max_batch_size=32, batch_timeout_micros=20_000, pad_variable_length_inputs=True,
                             num_batch_threads=1)) as batcher:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    for i, x in sent.items():  # each answer is its own row (padded as TF Serving pads)
        assert answers[i]["y"][:, :x.shape[1]].tolist() == (x * 2).tolist()
    assert max(run.sizes) > 1  # the short ones still share batches
    # At most one short request ran beside the long one (2 x 100,000 <= twice what they sent).
    assert sum(answers[i]["y"].shape[1] > 4 for i in answers if i != 7) <= 1
    for inputs in run.inputs:
        long_rows = int((inputs["x"][:, -1] == 100_000 + 7).sum())
        assert inputs["x"].size <= 2 * (100_000 * long_rows + 4 * (len(inputs["x"]) - long_rows)), inputs["x"].shape


# -------------------------------------------------------------------------- timing
def test_a_lone_request_waits_about_batch_timeout_micros_and_no_more():
    run = Recorder()
    with Batcher(run, params(max_batch_size=32, batch_timeout_micros=50_000)) as batcher:
        batcher({"x": np.zeros((1, 2), "float32")})  # threads started, warm
        latencies = []
        for _ in range(3):
            start = time.perf_counter()
            batcher({"x": np.zeros((1, 2), "float32")})
            latencies.append(time.perf_counter() - start)
    assert 0.045 <= min(latencies) and sorted(latencies)[1] < 0.050 + 0.1, latencies
    with Batcher(run, params(max_batch_size=32, batch_timeout_micros=0)) as batcher:
        batcher({"x": np.zeros((1, 2), "float32")})
        latencies = []
        for _ in range(3):
            start = time.perf_counter()
            batcher({"x": np.zeros((1, 2), "float32")})
            latencies.append(time.perf_counter() - start)
        assert min(latencies) < 0.02, latencies  # no timeout: no wait


def test_a_full_batch_runs_without_waiting_for_the_timeout():
    run = Recorder()
    with Batcher(run, params(max_batch_size=8, batch_timeout_micros=10_000_000)) as batcher:
        start = time.perf_counter()
        hammer(batcher, 8, 1, lambda rng, i, j: np.full((1, 2), i, "float32"))
        assert time.perf_counter() - start < 2.0
    assert run.sizes == [8]


# -------------------------------------------------------------------------- errors
def test_an_error_from_run_reaches_only_the_request_that_caused_it_and_the_batcher_recovers():
    """One caller of ten sends a negative row: TF Serving would fail all ten; here the
    batch runs again in halves and only that caller gets the error."""
    def run(inputs):
        time.sleep(0.02)
        if (inputs["x"] < 0).any():
            raise ServingError("negative input")
        return rowwise(inputs)

    calls = Recorder(fn=run)
    errors, results = [], []
    with Batcher(calls, params(max_batch_size=10, batch_timeout_micros=2_000_000, num_batch_threads=1)) as batcher:
        hammer(batcher, 10, 1, lambda rng, i, j: np.full((1, 2), -1 if i == 0 else i, "float32"),
               results=results, errors=errors)
        assert calls.sizes[0] == 10  # merged first, then split: 10 -> 5 + 5 -> ...
        assert len(errors) == 1 and isinstance(errors[0], ServingError) and "negative input" in str(errors[0])
        assert len(results) == 9
        for x, answer in results:
            assert np.array_equal(answer["y"], rowwise({"x": x})["y"])
        assert batcher.stats["retries"] == len(calls.sizes) - 1 <= 2 * 10 - 2
        assert batcher({"x": np.ones((10, 2), "float32")})["total"].tolist() == [2.0] * 10  # a full batch


def test_wrong_output_rows_are_an_error_for_the_batch():
    with Batcher(lambda inputs: {"y": np.zeros(3)}, params(max_batch_size=8)) as batcher:
        with pytest.raises(ServingError, match="0th dimension does not equal"):
            batcher({"x": np.zeros((2, 2))})


IMAGE_MAGIC = b"\x89IMG"


def decode_then_rowwise(inputs):
    """A model whose graph decodes image bytes first, as the `serving_bytes` signature
    does: bytes that are not an image fail the whole call, naming what they were."""
    rows = []
    for encoded in inputs["image_bytes"]:
        if not encoded.startswith(IMAGE_MAGIC) or len(encoded) != len(IMAGE_MAGIC) + 4 * 6:
            raise ServingError(f"Unknown image file format: {encoded[:12]!r}")
        rows.append(np.frombuffer(encoded[len(IMAGE_MAGIC):], "float32").reshape(2, 3))
    return rowwise({"x": np.stack(rows)})


def image_bytes(x):
    return np.array([IMAGE_MAGIC + row.astype("float32").tobytes() for row in x], dtype=object)


def test_bad_neighbours_64_clients_16_sending_non_image_bytes():
    """Issue 23: 64 clients with batching on, 16 of them sending bytes that are not
    images to a signature that decodes images in its graph. Every good request gets
    exactly its unbatched answer and every bad one its own error (its own bytes named),
    and the batches really were merged first."""
    run = Recorder(fn=decode_then_rowwise, delay=0.002)
    good, bad, errors = [], [], []
    barrier = threading.Barrier(64)

    def client(i):
        rng = np.random.default_rng(i)
        barrier.wait()
        for j in range(3):
            if i % 4 == 0:  # 16 hostile clients
                garbage = np.array([b"not an image %d/%d" % (i, j)], dtype=object)
                try:
                    batcher({"image_bytes": garbage})
                    errors.append(f"client {i} got an answer for garbage")
                except ServingError as error:
                    bad.append((garbage[0], error))
            else:
                x = rng.standard_normal((1 + (i + j) % 2, 2, 3)).astype("float32")
                try:
                    good.append((x, batcher({"image_bytes": image_bytes(x)})))
                except Exception as error:  # noqa: BLE001
                    errors.append(f"client {i}: {type(error).__name__}: {error}")

    with Batcher(run, params(max_batch_size=32, batch_timeout_micros=5000, num_batch_threads=2)) as batcher:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stats = dict(batcher.stats)
    assert errors == []
    assert len(good) == 48 * 3 and len(bad) == 16 * 3
    for x, answer in good:
        expected = rowwise({"x": x})
        for key in expected:
            assert answer[key].dtype == expected[key].dtype and np.array_equal(answer[key], expected[key]), key
    for garbage, error in bad:
        assert str(error) == f"Unknown image file format: {garbage[:12]!r}"  # its own bytes, no neighbour's
    assert len({id(error) for _, error in bad}) == len(bad)
    assert max(stats["sizes"]) > 1 and stats["batches"] < 192  # merged
    assert stats["retries"] > 0 and max(run.sizes) <= 32
    # At most 2N - 1 calls for a batch of N requests (all bad); one bad in N about 2 log2 N.
    assert len(run.sizes) <= 2 * 192 - stats["batches"]


def test_retried_pieces_are_padded_to_allowed_batch_sizes_and_the_padding_stripped():
    run = Recorder(fn=decode_then_rowwise, delay=0.002)
    answers = {}

    def client(i):
        if i == 5:
            payload = np.array([b"garbage"], dtype=object)
        else:
            payload = image_bytes(np.full((1 + i % 3, 2, 3), i, "float32"))
        try:
            answers[i] = batcher({"image_bytes": payload})
        except ServingError as error:
            answers[i] = error

    # 9 clients of 16 rows in all: the batch runs as soon as it is full.
    with Batcher(run, params(max_batch_size=16, batch_timeout_micros=5_000_000, num_batch_threads=1,
                             allowed_batch_sizes=(2, 4, 8, 16))) as batcher:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        stats = dict(batcher.stats)
    assert isinstance(answers[5], ServingError) and "garbage" in str(answers[5])
    assert run.sizes[0] == 16
    for i in set(range(9)) - {5}:
        assert answers[i]["total"].tolist() == [6.0 * i] * (1 + i % 3)
    assert set(run.sizes) <= {2, 4, 8, 16} and stats["retries"] > 0
    assert stats["padding"] > 0 and sum(stats["sizes"].values()) == len(run.sizes) == 1 + stats["retries"]


def test_errors_about_the_server_are_not_retried_in_pieces():
    """Unavailable (overloaded, unloading) would meet every piece: the batch fails once."""
    from zoo.serving.errors import Unavailable

    def run(inputs):
        time.sleep(0.01)
        raise Unavailable("the model is being unloaded")

    calls = Recorder(fn=run)
    errors = []
    with Batcher(calls, params(max_batch_size=8, batch_timeout_micros=1_000_000, num_batch_threads=1)) as batcher:
        hammer(batcher, 8, 1, lambda rng, i, j: np.full((1, 2), i, "float32"), errors=errors)
    assert calls.sizes == [8] and len(errors) == 8
    assert all(isinstance(e, Unavailable) for e in errors)


def test_an_answer_of_the_wrong_rows_fails_the_batch_once():
    """The model's own fault, not a request's: not retried."""
    calls = Recorder(fn=lambda inputs: {"y": np.zeros(3)}, delay=0.01)
    errors = []
    with Batcher(calls, params(max_batch_size=4, batch_timeout_micros=1_000_000, num_batch_threads=1)) as batcher:
        hammer(batcher, 4, 1, lambda rng, i, j: np.full((1, 2), i, "float32"), errors=errors)
    assert calls.sizes == [4] and len(errors) == 4
    assert all("0th dimension does not equal" in str(e) for e in errors)


def test_unequal_leading_dims_are_refused():
    with Batcher(rowwise, params(max_batch_size=8)) as batcher:
        with pytest.raises(ServingError, match="must have equal 0th-dimension size"):
            batcher({"x": np.zeros((2, 2)), "z": np.zeros((3, 2))})


def test_a_full_queue_refuses_with_503_unavailable():
    """max_enqueued_batches=2, one thread busy: two more batches wait, the next
    request is turned away at once with Overloaded (HTTP 503, gRPC UNAVAILABLE)."""
    release = threading.Event()
    started = threading.Event()

    def run(inputs):
        started.set()
        release.wait(10)
        return rowwise(inputs)

    batcher = Batcher(run, params(max_batch_size=1, max_enqueued_batches=2, num_batch_threads=1))
    try:
        threads = [threading.Thread(target=batcher, args=({"x": np.zeros((1, 2))},))]
        threads[0].start()
        assert started.wait(5)  # the only thread is busy now
        threads += [threading.Thread(target=batcher, args=({"x": np.zeros((1, 2))},)) for _ in range(2)]
        for thread in threads[1:]:
            thread.start()
        deadline = time.time() + 5
        while len(batcher._batches) < 2 and time.time() < deadline:
            time.sleep(0.01)
        start = time.perf_counter()
        with pytest.raises(Overloaded, match="batch scheduling queue .* is full") as caught:
            batcher({"x": np.zeros((1, 2))})
        assert time.perf_counter() - start < 1.0
        assert caught.value.status == 503 and caught.value.code == "UNAVAILABLE"
        assert isinstance(caught.value, ServingError)
    finally:
        release.set()
        for thread in threads:
            thread.join(10)
        batcher.close()
    assert batcher.stats["requests"] == 3


def test_close_runs_what_is_queued_then_refuses_and_stops_the_threads():
    run = Recorder(delay=0.05)
    batcher = Batcher(run, params(max_batch_size=4, batch_timeout_micros=10_000_000, num_batch_threads=1,
                                  thread_pool_name="close_test"))
    threads_before = {t.name for t in threading.enumerate() if t.name.startswith("zoo-close_test")}
    assert len(threads_before) == 1
    answer = []
    waiter = threading.Thread(target=lambda: answer.append(batcher({"x": np.ones((1, 2))})))
    waiter.start()
    time.sleep(0.05)
    batcher.close()  # the waiting request runs now, not after 10 s
    waiter.join(5)
    assert answer and answer[0]["total"].tolist() == [2.0]
    with pytest.raises(ServingError, match="unloaded"):
        batcher({"x": np.ones((1, 2))})
    assert not [t for t in threading.enumerate() if t.name.startswith("zoo-close_test")]


def test_batchers_with_the_same_threads_share_one_pool():
    """TF Serving has one SharedBatchScheduler per server: queues (model versions,
    signatures) take turns on num_batch_threads threads instead of each bringing
    their own."""
    p = params(num_batch_threads=3, thread_pool_name="shared_test")

    def pool():
        return [t for t in threading.enumerate() if t.name.startswith("zoo-shared_test")]

    a, b = Batcher(rowwise, p, name="a"), Batcher(rowwise, p, name="b")
    assert len(pool()) == 3
    assert a({"x": np.ones((1, 2))})["total"].tolist() == [2.0]
    a.close()
    assert b({"x": np.ones((1, 2))})["total"].tolist() == [2.0]
    b.close()
    assert pool() == []


# ---------------------------------------------------------------------- parameters
def test_defaults_are_tf_servings():
    p = BatchingParameters()
    assert (p.max_batch_size, p.batch_timeout_micros, p.max_enqueued_batches) == (1000, 0, 10)
    assert p.num_batch_threads == (os.cpu_count() or 1)
    assert p.allowed_batch_sizes == () and p.pad_variable_length_inputs is False


def test_read_batching_parameters_file(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text(
        "# TF Serving's format\n"
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 2 }\n"
        'thread_pool_name { value: "model_batch_threads" }\n'
        "allowed_batch_sizes: 8\n"
        "allowed_batch_sizes: 32\n"
        "pad_variable_length_inputs: true\n"
    )
    p = read_batching_parameters(path)
    assert p == BatchingParameters(max_batch_size=32, batch_timeout_micros=2000, max_enqueued_batches=100,
                                   num_batch_threads=2, thread_pool_name="model_batch_threads",
                                   allowed_batch_sizes=(8, 32), pad_variable_length_inputs=True)
    # Fields left out keep TF Serving's defaults; written back, the file reads the same.
    path.write_text("max_batch_size { value: 16 }\n")
    assert read_batching_parameters(path) == BatchingParameters(max_batch_size=16)
    path.write_text(format_batching_parameters(p))
    assert read_batching_parameters(path) == p


@pytest.mark.parametrize("text, field", [
    ("max_batch_size { value: 32 }\nmax_batch_sise { value: 8 }\n", "max_batch_sise"),
    ("max_batch_size: 32\n", "max_batch_size"),  # a wrapper field needs { value: N }
    ("max_batch_size { value: 0 }\n", "max_batch_size"),
    ("num_batch_threads { value: -2 }\n", "num_batch_threads"),
    ("batch_timeout_micros { value: -1 }\n", "batch_timeout_micros"),
    ("max_enqueued_batches { value: 0 }\n", "max_enqueued_batches"),
    ("max_batch_size { value: 32 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n", "allowed_batch_sizes"),
    ("max_batch_size { value: 32 }\nallowed_batch_sizes: 16\nallowed_batch_sizes: 8\n"
     "allowed_batch_sizes: 32\n", "allowed_batch_sizes"),
    ("max_batch_size { value: 32 }\nallowed_batch_sizes: 0\nallowed_batch_sizes: 32\n", "allowed_batch_sizes"),
    ("max_batch_size { value: thirty-two }\n", "value"),
    ("max_batch_size { value: 32 \n", "max_batch_size"),
    ("enable_large_batch_splitting { value: true }\nmax_batch_size { value: 8 }\n"
     "max_execution_batch_size { value: 16 }\n", "max_execution_batch_size"),
])
def test_a_bad_parameters_file_is_one_clear_error_naming_file_and_field(tmp_path, text, field):
    path = tmp_path / "batching.config"
    path.write_text(text)
    with pytest.raises(ZooError) as caught:
        read_batching_parameters(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and field in message, message


def test_a_missing_parameters_file_is_a_clear_error(tmp_path):
    with pytest.raises(ZooError, match="Cannot read the batching parameters file .*nope.config"):
        read_batching_parameters(tmp_path / "nope.config")


ABSURD = [
    # Issue 23: each of these was accepted and then hung, padded 1 row to 100,000 or
    # failed the first request; now each is one line naming field, value and limit.
    (dict(max_batch_size=10**9, batch_timeout_micros=10**12),
     "max_batch_size must be at most 100000 rows. Received: 1000000000"),
    (dict(batch_timeout_micros=10**12),
     "batch_timeout_micros must be at most 60000000 (1 minute). Received: 1000000000000"),
    (dict(num_batch_threads=10**9),
     "num_batch_threads must be at most {threads} (the larger of 256 and 4 per core). Received: 1000000000"),
    (dict(max_batch_size=100_000, allowed_batch_sizes=(100_000,)),
     "allowed_batch_sizes must each be at most twice the one before or 1024 more (the first at most 1024), so "
     "padding stays small; 100000 after 0 would run a batch of 1 row as 100000. Received: [100000]"),
    (dict(max_batch_size=4096, allowed_batch_sizes=(8, 2048, 4096)),
     "allowed_batch_sizes must each be at most twice the one before or 1024 more (the first at most 1024), so "
     "padding stays small; 2048 after 8 would run a batch of 9 rows as 2048. Received: [8, 2048, 4096]"),
    (dict(max_execution_batch_size=10**9),
     "max_execution_batch_size must be at most 100000 rows. Received: 1000000000"),
    (dict(max_enqueued_batches=10**9),
     "max_enqueued_batches must be at most 100000 batches. Received: 1000000000"),
    (dict(max_enqueued_batches=100_000),  # of TF Serving's default 1000 rows
     "max_enqueued_batches times the rows of a batch must be at most 10000000, so a full queue stays bounded in "
     "memory; 100000 times 1000 is 100000000. Received: max_enqueued_batches=100000"),
]


@pytest.mark.parametrize("values, message", ABSURD, ids=lambda v: None if isinstance(v, str) else ",".join(v))
def test_absurd_parameters_are_refused_in_one_line_naming_field_value_and_limit(values, message):
    from zoo.serving.batching import max_batch_threads

    with pytest.raises(ZooError) as caught:
        BatchingParameters(**values)
    assert str(caught.value) == "Batching parameters: " + message.format(threads=max_batch_threads())


@pytest.mark.parametrize("values, message", ABSURD, ids=lambda v: None if isinstance(v, str) else ",".join(v))
def test_absurd_parameters_in_a_file_are_refused_in_one_line(tmp_path, values, message):
    from zoo.serving.batching import max_batch_threads

    path = tmp_path / "batching.config"
    lines = []
    for name, value in values.items():
        if name == "allowed_batch_sizes":
            lines += [f"allowed_batch_sizes: {size}" for size in value]
        else:
            lines.append(f"{name} {{ value: {str(value).lower()} }}")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ZooError) as caught:
        read_batching_parameters(path)
    assert str(caught.value) == f"Batching parameters file {path}: " + message.format(threads=max_batch_threads())


def test_the_bounds_leave_what_tf_serving_users_write():
    """TF Serving's guide and users' configs: all still accepted."""
    for values in (dict(max_batch_size=128, batch_timeout_micros=0, max_enqueued_batches=1_000_000 // 1000,
                        num_batch_threads=8, allowed_batch_sizes=(8, 16, 32, 64, 128)),
                   dict(max_batch_size=512, allowed_batch_sizes=(512,)),
                   dict(max_batch_size=100_000, batch_timeout_micros=60_000_000, max_enqueued_batches=100),
                   dict(max_batch_size=8, max_enqueued_batches=100_000, num_batch_threads=256),
                   dict(max_batch_size=4096, allowed_batch_sizes=(1024, 2048, 3072, 4096))):
        BatchingParameters(**values)


def test_a_flood_past_max_enqueued_batches_is_refused_and_the_queue_stays_bounded():
    """300 callers at once against one busy thread, 4 batches of 2 rows allowed to
    wait: the rest are refused at once with Overloaded (503), the queue never holds
    more than 4 batches, and every request let in gets its answer."""
    release = threading.Event()
    started = threading.Event()
    longest = []

    def run(inputs):
        started.set()
        release.wait(10)
        return rowwise(inputs)

    batcher = Batcher(run, params(max_batch_size=2, max_enqueued_batches=4, num_batch_threads=1,
                                  batch_timeout_micros=0))
    answers, refused, other = [], [], []

    def client(i):
        try:
            answers.append((i, batcher({"x": np.full((1, 2), i, "float32")})))
        except Overloaded:
            refused.append(i)
        except Exception as error:  # noqa: BLE001
            other.append(error)

    try:
        first = threading.Thread(target=client, args=(0,))
        first.start()
        assert started.wait(5)  # the only thread is busy now
        threads = [threading.Thread(target=client, args=(i,)) for i in range(1, 300)]
        for thread in threads:
            thread.start()
            with batcher._cond:
                longest.append(sum(len(batch.tasks) for batch in batcher._batches))
                assert len(batcher._batches) <= 4
        deadline = time.time() + 10
        while len(refused) + len(answers) < 299 - 8 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        release.set()
        for thread in [first] + threads:
            thread.join(10)
        batcher.close()
    assert other == []
    assert max(longest) <= 8  # 4 batches x 2 rows: what the queue holds, whatever arrives
    assert len(answers) + len(refused) == 300 and len(answers) <= 1 + 8 and len(refused) >= 300 - 9
    for i, answer in answers:
        assert answer["total"].tolist() == [2.0 * i]


def test_last_allowed_batch_size_must_equal_max_batch_size_as_tf_serving_checks():
    with pytest.raises(ZooError, match="Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                                       "16; expected 1000"):
        BatchingParameters(allowed_batch_sizes=(8, 16))


# --------------------------------------------------------------------- end to end
def _server_supports_batching():
    from zoo.serving.server import ModelServer

    return "enable_batching" in inspect.signature(ModelServer).parameters


@pytest.fixture(scope="module")
def lenet_base(tmp_path_factory):
    import keras

    import zoo

    keras.utils.set_random_seed(0)
    model = zoo.create("lenet5", weights=None, num_classes=10)
    base = tmp_path_factory.mktemp("models")
    zoo.export(model, base, "lenet")
    return base


def _predict_concurrently(port, images, signature="serving_default"):
    """One client thread per image, all POSTing at once; returns the answers in order."""
    return _post_concurrently(port, [{"signature_name": signature, "instances": images[i:i + 1].tolist()}
                                     for i in range(len(images))])


@pytest.mark.large
def test_end_to_end_lenet_served_with_batching_answers_as_without(lenet_base, tmp_path):
    """32 concurrent clients each POST one digit: the batching server merges them
    (its batches are > 1) and answers what the unbatched server answers.

    Bit-for-bit, each answer is its row of the merged batch the model ran. Against
    the unbatched server the class ids are identical and the probabilities agree to
    float32 round-off: TF's CPU kernels sum in a batch-size-dependent order, so
    LeNet-5 itself gives a row ~1e-8 apart at batch 1 and batch 32 (TF Serving's
    batching has the same property)."""
    if not _server_supports_batching():
        pytest.skip("ModelServer has no enable_batching yet")
    from zoo.data.digits import load_digits_28
    from zoo.serving.server import ModelServer

    images = load_digits_28()[0][:32].astype("float32")
    config = tmp_path / "batching.config"
    config.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 20000 }\n"
                      "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n")
    with ModelServer(lenet_base, port=0, grpc_port=None, poll_seconds=0) as plain:
        unbatched = _predict_concurrently(plain.port, images)
    with ModelServer(lenet_base, port=0, grpc_port=None, poll_seconds=0, enable_batching=True,
                     batching_parameters_file=config) as server:
        servable = server.store.get("lenet")
        batcher = servable.batcher(servable.signature("serving_default"))
        ran = []
        real_run = batcher.run
        batcher.run = lambda feeds: ran.append((feeds, real_run(feeds))) or ran[-1][1]
        batched = _predict_concurrently(server.port, images)
        stats = dict(batcher.stats)
    assert all(status == 200 for status, _ in unbatched + batched), (unbatched[:1], batched[:1])
    assert stats["requests"] == 32 and max(stats["sizes"]) > 1 and stats["batches"] < 32, stats
    assert max(stats["sizes"]) <= 32
    # Bit-for-bit: every answer is its own row of the batch the model ran it in.
    rows = {}
    for feeds, outputs in ran:
        for j, image in enumerate(feeds["images"]):
            rows[image.tobytes()] = {key: value[j] for key, value in outputs.items()}
    for image, (_, answer) in zip(images, batched):
        (prediction,) = answer["predictions"]
        row = rows[image.tobytes()]
        assert np.array_equal(np.float32(prediction["probabilities"]), row["probabilities"])
        assert prediction["class_ids"] == row["class_ids"]
    # Against the unbatched server: same classes, probabilities to float32 round-off.
    for (_, with_batching), (_, without) in zip(batched, unbatched):
        (a,), (b,) = with_batching["predictions"], without["predictions"]
        assert a["class_ids"] == b["class_ids"]
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-5, atol=1e-6)


def _post_concurrently(port, bodies, path="/v1/models/lenet:predict"):
    """One client thread per JSON body, all POSTing at once; returns (status, answer)s."""
    answers = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def client(i):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            barrier.wait()
            connection.request("POST", path, body=json.dumps(bodies[i]), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answers[i] = (response.status, json.loads(response.read()))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


@pytest.mark.large
def test_end_to_end_non_image_bytes_fail_alone_with_batching_on(lenet_base, tmp_path):
    """Issue 23 as found: 64 clients POST to serving_bytes (the graph decodes the image
    files), 16 of them bytes that are not images. With batching on, every good request
    gets 200 and the unbatched server's classes (probabilities to float32 round-off),
    every bad one the 400 and the error the unbatched server gives it."""
    import base64
    import io

    from PIL import Image

    if not _server_supports_batching():
        pytest.skip("ModelServer has no enable_batching yet")
    from zoo.data.digits import load_digits_28
    from zoo.serving.server import ModelServer

    images = load_digits_28()[0][:48]
    bodies = []
    for i in range(64):
        if i % 4 == 0:
            payload = b"this is not an image %d" % i
        else:
            buffer = io.BytesIO()
            Image.fromarray(images[i - 1 - i // 4]).save(buffer, format="PNG")
            payload = buffer.getvalue()
        bodies.append({"signature_name": "serving_bytes",
                       "instances": [{"image_bytes": {"b64": base64.b64encode(payload).decode()}}]})
    config = tmp_path / "batching.config"
    config.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 50000 }\n"
                      "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n")
    with ModelServer(lenet_base, port=0, grpc_port=None, poll_seconds=0) as plain:
        unbatched = [_post_concurrently(plain.port, [body])[0] for body in bodies]
    with ModelServer(lenet_base, port=0, grpc_port=None, poll_seconds=0, enable_batching=True,
                     batching_parameters_file=config) as server:
        batched = _post_concurrently(server.port, bodies)
        servable = server.store.get("lenet")
        stats = dict(servable.batcher(servable.signature("serving_bytes")).stats)
    assert stats["requests"] == 64 and stats["batches"] < 64 and stats["retries"] > 0, stats
    for i, ((status, answer), (plain_status, plain_answer)) in enumerate(zip(batched, unbatched)):
        if i % 4 == 0:
            assert status == plain_status == 400, (status, answer)
            assert answer == plain_answer  # its own error, word for word
        else:
            assert status == plain_status == 200, (i, status, answer)
            (a,), (b,) = answer["predictions"], plain_answer["predictions"]
            assert a["class_ids"] == b["class_ids"]
            np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-5, atol=1e-6)


@pytest.mark.large
def test_zoo_serve_refuses_an_absurd_batching_file_in_one_line(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "batching.config"
    config.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000000000000 }\n")
    (tmp_path / "models").mkdir()
    done = subprocess.run([sys.executable, "-m", "zoo", "serve", str(tmp_path / "models"), "--port", "0",
                           "--grpc-port", "-1", "--batching_parameters_file", str(config)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 1, done
    assert done.stderr.strip() == (f"zoo serve: error: Batching parameters file {config}: batch_timeout_micros "
                                   "must be at most 60000000 (1 minute). Received: 1000000000000"), done.stderr
