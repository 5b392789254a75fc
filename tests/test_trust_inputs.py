"""Hostile inputs that must cost neither memory nor minutes (issue 22, items 3-5): a
38-byte WebP claiming 12000 x 12000, a 60-frame GIF of 4000 x 4000 frames, served
generation asked for too much, and a lone surrogate in a JSON string.

Memory is the growth of the peak resident size (VmHWM, reset through clear_refs just
before each call, so an allocation freed again before the call returns still counts),
measured in a fresh process (the hostile files) or in the `zoo serve` process (served
requests), where nothing earlier left freed memory for the call to reuse unseen.
"""

import io
import json
import math
import os
import struct
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from helpers.processes import stop_with_ctrl_c

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import zoo  # noqa: E402
from zoo.data.images import claimed_pixels, decode_resize_bytes  # noqa: E402
from zoo.data.pillow import DEFAULT_MAX_PIXELS, load_item, load_rgb  # noqa: E402
from zoo.errors import OptionError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIMIT = DEFAULT_MAX_PIXELS
GROWTH_MIB = 200  # the bound on what one hostile request may cost


# ------------------------------------------------------------------- hostile files
def encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def webp_bomb(width=12000, height=12000):
    """38 bytes: a real lossless WebP of one colour (a one-colour palette costs 0 bits a
    pixel, so the bitstream does not grow with the size) whose header says `width` x
    `height`; libwebp decodes it to width x height pixels."""
    data = bytearray(encode(Image.new("RGB", (64, 64), (200, 30, 30)), "WEBP", lossless=True, method=0))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
    data[21:25] = struct.pack("<I", bits | (width - 1) | ((height - 1) << 14))
    return bytes(data)


def animated_gif(frames=60, side=4000):
    """A GIF of `frames` one-colour frames of `side` x `side` (each under the pixel
    limit; together 60 x 16 Mpx): Pillow encodes one frame, the rest are copies of it."""
    one = encode(Image.new("P", (side, side), 1), "GIF")
    table = 3 << ((one[10] & 7) + 1) if one[10] & 0x80 else 0
    head, image = one[:13 + table], one[13 + table:-1]
    assert image[:1] == b"," and one[-1:] == b";"
    return head + image * frames + b";"


def gif_with_a_large_first_frame(screen=100, frame=9000):
    """A GIF whose logical screen is small but whose first frame's descriptor claims
    `frame` x `frame` pixels (giflib allocates the frame's size)."""
    one = bytearray(encode(Image.new("P", (screen, screen), 1), "GIF"))
    at = one.index(b",", 13)
    one[at + 5:at + 9] = struct.pack("<HH", frame, frame)
    return bytes(one)



def jpeg_xl_files():
    """The two ways a JPEG XL file starts (a bare codestream, the ISO BMFF container)."""
    return [b"\xff\x0a" + b"\0" * 64, b"\0\0\0\x0cJXL \r\n\x87\n" + b"\0" * 64]


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def claimed(encoded):
    return claimed_pixels(encoded)


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def decode_like_serving_bytes(image_bytes):
    """What the exported image signatures run on their files (image_classifier_export)."""
    return tf.map_fn(lambda e: decode_resize_bytes(e, (28, 28), max_pixels=LIMIT), image_bytes,
                     fn_output_signature=tf.TensorSpec([28, 28, 3], tf.uint8))


# ------------------------------------------------------------------- memory
def _status(key, pid="self"):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":")) / 1024


def reset_peak(pid="self"):
    """Set the peak resident size (VmHWM) of `pid` to its resident size now; returns that."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # Linux >= 4.0
    return _status("VmRSS", pid)


def measured(function):
    """`function()` with the growth of this process's peak resident size while it ran:
    `{"growth_mib", "value" (its result's repr) or "error" (the error's type and line)}`."""
    before = reset_peak()
    try:
        outcome = {"value": repr(function())}
    except tf.errors.OpError as error:
        outcome = {"error": f"{type(error).__name__}: {_graph_line(error)}"}
    except Exception as error:  # noqa: BLE001 — the tests read what happened
        outcome = {"error": f"{type(error).__name__}: {error}"}
    return {"growth_mib": round(_status("VmHWM") - before, 1), **outcome}


def _graph_line(error):
    """The line of a graph error that says what was wrong: its assertion's, as
    `zoo serve` answers it (zoo.serving.store), else the last."""
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("assertion failed")), lines[-1])


def measure_hostile_files(folder):
    """Each hostile file through the graph's decode, as the exported `serving_bytes` and
    `explain` signatures run it, and through Pillow, as `zoo classify`, `zoo explain` and
    the training scan read files. Run in a fresh process by the `hostile` fixture."""
    folder = Path(folder)
    results = {}
    for name, make, requests in (("webp", webp_bomb, 4), ("gif", animated_gif, 1),
                                 ("gif-large-frame", gif_with_a_large_first_frame, 1)):
        data = make()
        path = folder / f"{name}.{name.split('-')[0]}"
        path.write_bytes(data)
        results[f"{name} graph"] = measured(lambda: tuple(decode_like_serving_bytes(tf.constant([data] * requests)).shape))
        results[f"{name} pillow"] = measured(lambda: load_rgb(str(path), (28, 28)).shape)
    results["webp pillow image"] = measured(lambda: load_item(Image.open(io.BytesIO(webp_bomb())), (28, 28)).shape)
    return results


@pytest.fixture(scope="module", autouse=True)
def _hostile_process(tmp_path_factory):
    """`measure_hostile_files` in a fresh process, started with the module so that it
    runs beside the other tests; `hostile` waits for it."""
    folder = tmp_path_factory.mktemp("hostile")
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_trust_inputs as t; "
            f"print(json.dumps(t.measure_hostile_files({str(folder)!r})))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("ZOO_MAX_IMAGE_PIXELS", None)
    process = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    yield process, folder
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def hostile(_hostile_process):
    """What `measure_hostile_files` saw: `{case: {"growth_mib", "value" or "error"}}`."""
    process, folder = _hostile_process
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return {**json.loads(out.strip().splitlines()[-1]), "folder": folder}


# ---------------------------------------------------------- item 3: WebP headers
@pytest.mark.parametrize("kind", ["lossy", "lossless", "extended"])
def test_webp_headers_are_read_in_the_graph(kind):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    options = {"lossy": {"quality": 80}, "lossless": {"lossless": True},
               "extended": {"exif": b"Exif\0\0II*\0\x08\0\0\0\0\0"}}[kind]
    data = encode(photo, "WEBP", **options)
    assert data[12:16] == {"lossy": b"VP8 ", "lossless": b"VP8L", "extended": b"VP8X"}[kind]
    assert int(claimed(data)) == 53 * 37
    assert decode_like_serving_bytes(tf.constant([data])).shape == (1, 28, 28, 3)


def test_a_38_byte_webp_claiming_12000x12000_is_refused_before_decoding(hostile):
    bomb = webp_bomb()
    assert len(bomb) == 38 and int(claimed(bomb)) == 12000 * 12000
    graph = hostile["webp graph"]  # before the check: +497 MiB a file
    assert graph["error"].startswith("InvalidArgumentError: "), graph
    assert "the image claims more pixels than the limit of 50,000,000" in graph["error"]
    assert "width x height = 144000000" in graph["error"]
    assert graph["growth_mib"] < GROWTH_MIB, graph
    # Pillow reads the same header (zoo classify / explain / the training scan).
    path = hostile["folder"] / "webp.webp"
    pillow = hostile["webp pillow"]
    assert pillow["error"] == (f"DataError: {path}: claims 12000x12000 = 144,000,000 pixels, more than the limit "
                               "of 50,000,000 (set ZOO_MAX_IMAGE_PIXELS to allow more)"), pillow
    assert pillow["growth_mib"] < GROWTH_MIB, pillow
    image = hostile["webp pillow image"]  # an opened PIL image handed to zoo.classify
    assert image["error"].startswith("DataError: image #0: claims 12000x12000"), image
    assert image["growth_mib"] < GROWTH_MIB, image


def test_jpeg_xl_is_refused_in_the_graph():
    for data in jpeg_xl_files():  # TensorFlow decodes it, zoo cannot read its size first
        with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG XL, which zoo does not decode"):
            decode_like_serving_bytes(tf.constant([data]))


# ---------------------------------------------------- item 4: animated GIFs
def test_a_60_frame_gif_costs_one_frame(hostile):
    gif = animated_gif()
    assert len(gif) < 800 * 1024
    assert int(claimed(gif)) == 4000 * 4000  # the first frame: the only one decoded
    graph = hostile["gif graph"]  # before: TF's decoder read all 60 frames, +920 MiB
    assert graph.get("value") == "(1, 28, 28, 3)", graph
    assert graph["growth_mib"] < GROWTH_MIB, graph
    pillow = hostile["gif pillow"]  # Pillow decodes the current frame only
    assert pillow.get("value") == "(28, 28, 3)", pillow
    assert pillow["growth_mib"] < GROWTH_MIB, pillow


def test_the_first_frame_of_an_animated_gif_is_what_tensorflow_decodes():
    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)) for _ in range(5)]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], comment=b"zoo", loop=0, duration=40)
    assert gif.count(b"\x2c\x00\x00\x00\x00") >= 5  # five image descriptors
    assert int(claimed(gif)) == 53 * 37
    ours = decode_resize_bytes(tf.constant(gif), (37, 53)).numpy()
    first = tf.io.decode_image(gif, channels=3, expand_animations=False).numpy()
    np.testing.assert_array_equal(ours, first)


def test_a_gif_frame_larger_than_its_screen_counts(hostile):
    assert int(claimed(gif_with_a_large_first_frame())) == 9000 * 9000
    graph = hostile["gif-large-frame graph"]
    assert graph["error"].startswith("InvalidArgumentError: ") and "width x height = 81000000" in graph["error"]
    pillow = hostile["gif-large-frame pillow"]  # Pillow grows the image to the frame
    assert pillow["error"].endswith("claims 9000x9000 = 81,000,000 pixels, more than the limit of 50,000,000 "
                                    "(set ZOO_MAX_IMAGE_PIXELS to allow more)"), pillow
    assert max(graph["growth_mib"], pillow["growth_mib"]) < GROWTH_MIB, (graph, pillow)


# ---------------------------------------------------- item 5: generation
CHARACTERS = list("\n abcdefghijklmnopqrstuvwxyz.,")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An untrained char-LSTM run (16 units): what generation refuses does not depend on
    what the model learned, and it builds in seconds."""
    from zoo.runs import save_run

    path = tmp_path_factory.mktemp("runs") / "tiny"
    model = zoo.create("char_lstm", vocabulary_size=len(CHARACTERS), units=16, num_layers=1, embedding_dim=8,
                       dropout=0.0)
    save_run(path, model, config={"model": "char_lstm"}, kind="text-generation")
    (path / "vocabulary.json").write_text(json.dumps(CHARACTERS))
    return zoo.load_run(path)


REFUSED = {  # what zoo generate refuses, and the rule its message states
    "temperature below 0": ({"temperature": -0.5}, "`temperature` must be >= 0"),
    "temperature NaN": ({"temperature": math.nan}, "`temperature` must be >= 0"),
    "length 0": ({"length": 0}, "`length` must be from 1 to 10000"),
    "length over the maximum": ({"length": 10_001}, "`length` must be from 1 to 10000"),
    "top_k below 0": ({"top_k": -1}, "`top_k` must be >= 0"),
    "a prompt over the maximum": ({"prompt": "a" * 10_001}, "`prompt` must be at most 10000 characters"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_generation_graph_refuses_what_zoo_generate_refuses(tiny_run, case):
    from zoo.tasks.char_lstm import generation_function

    given, rule = REFUSED[case]
    request = {"prompt": "ab", "temperature": 1.0, "length": 5, "seed": 0, "top_k": 0, **given}
    with pytest.raises(OptionError, match=rule.replace("`", ".")):
        tiny_run.generate(**request)
    generate = tiny_run._generator or generation_function(tiny_run.model, tiny_run.vocabulary)
    tiny_run._generator = generate
    with pytest.raises(tf.errors.InvalidArgumentError) as refused:
        generate(*(tf.constant([request[key]], dtype) for key, dtype in (
            ("prompt", tf.string), ("temperature", tf.float32), ("length", tf.int32), ("seed", tf.int64),
            ("top_k", tf.int32))))
    assert _graph_line(refused.value).startswith(f"assertion failed: [{rule}"), refused.value.message


def test_a_request_over_the_budget_is_refused_before_any_work(tiny_run):
    from zoo.tasks.char_lstm import MAX_REQUEST_CHARACTERS, generation_function

    generate = generation_function(tiny_run.model, tiny_run.vocabulary)
    n = 64  # x 10,000 characters: minutes of work before
    started = time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError) as refused:
        generate(tf.fill([n], "ab"), tf.fill([n], 1.0), tf.fill([n], 10_000), tf.zeros([n], tf.int64),
                 tf.zeros([n], tf.int32))
    assert time.perf_counter() - started < 20
    assert _graph_line(refused.value) == (
        f"assertion failed: [a request may read and write at most {MAX_REQUEST_CHARACTERS} characters in all "
        "(prompt characters plus length, summed over its instances). Received: 640128]")
    # The shortest request allowed still writes.
    assert tiny_run.generate("ab", length=1, seed=3)[:2] == "ab" and len(tiny_run.generate("ab", length=1)) == 3


def test_a_lone_surrogate_in_a_json_string_is_a_400_naming_it():
    from zoo.serving.errors import ServingError
    from zoo.serving.rest import parse_predict
    from zoo.serving.store import TensorInfo

    servable = types.SimpleNamespace(signatures={"serving_default": types.SimpleNamespace(inputs={
        "prompt": TensorInfo("prompt", np.dtype(object), (-1,), "DT_STRING", "prompt:0")})})
    for body in ('{"instances": [{"prompt": "\\ud800"}]}', '{"inputs": {"prompt": ["ok", "x\\udfff"]}}'):
        with pytest.raises(ServingError) as refused:
            parse_predict(body.encode(), servable)
        assert refused.value.status == 400
        assert str(refused.value).startswith("JSON Parse error: The surrogate pair in string is invalid: a string "
                                             "holds the lone surrogate \\u"), str(refused.value)
    # A pair is a character.
    _, arrays, _ = parse_predict('{"instances": [{"prompt": "\\ud83d\\ude00"}]}'.encode(), servable)
    assert arrays["prompt"][0] == "\U0001F600".encode()


# ------------------------------------------------------------ served (large tier)
@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_run):
    """`zoo serve` in its own process (its peak memory is read from /proc) with the tiny
    text generator as `writer` and an untrained LeNet-5 as `digits` (its `serving_bytes`
    and `explain` signatures take image files)."""
    from zoo.runs import save_run

    base = tmp_path_factory.mktemp("models")
    zoo.export(tiny_run.path, base, "writer")
    lenet = tmp_path_factory.mktemp("runs") / "lenet"
    save_run(lenet, zoo.create("lenet5", weights=None, num_classes=3), ["a", "b", "c"],
             config={"model": "lenet5", "image_size": [28, 28]})
    zoo.export(lenet, base, "digits")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("ZOO_MAX_IMAGE_PIXELS", None)
    process = subprocess.Popen([sys.executable, "-m", "zoo", "serve", str(base), "--port", "0", "--grpc-port", "-1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = process.stdout.readline()
        assert first.startswith("REST on http://127.0.0.1:"), first + process.stderr.read()[-3000:]
        yield types.SimpleNamespace(url=first.split()[2].rstrip(","), pid=process.pid, base=base)
    finally:
        # Ctrl-C: the server stops and its JSON parser processes (spawned for bodies over
        # 1 MiB) exit with it; SIGTERM would leave them holding the pipes open.
        _, err = stop_with_ctrl_c(process)
    assert "Traceback" not in err, err[-3000:]


def post(served, model, body, timeout=120):
    """`(status, JSON answer, seconds, server's peak memory growth in MiB)`."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{served.url}/v1/models/{model}:predict", data=data,
                                     headers={"Content-Type": "application/json"})
    before = reset_peak(served.pid)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return status, json.loads(text), time.perf_counter() - started, _status("VmHWM", served.pid) - before


def _instance(**given):
    return {"prompt": "ab", "temperature": 1.0, "length": 5, "seed": 0, **given}


@pytest.mark.large
def test_served_generation_refuses_what_zoo_generate_refuses(served):
    for case, (given, rule) in sorted(REFUSED.items()):
        signature = "generate_top_k" if "top_k" in given else "serving_default"
        # A NaN goes as the bare word NaN, which TF Serving's JSON parser takes, as zoo's does.
        body = json.dumps({"signature_name": signature, "instances": [_instance(**given)]})
        status, answer, _, _ = post(served, "writer", body.encode())
        assert status == 400 and answer["error"].startswith(f"assertion failed: [{rule}"), (case, answer)
    status, answer, _, _ = post(served, "writer", {"instances": [_instance(length=1)]})
    assert status == 200 and len(answer["predictions"][0]) == 3


@pytest.mark.large
def test_a_served_request_is_bounded_before_its_work_starts(served):
    from zoo.tasks.char_lstm import MAX_REQUEST_CHARACTERS

    body = json.dumps({"instances": [_instance(length=10_000)] * 64}).encode()
    assert len(body) < 5000  # 64 x 10,000 characters: minutes of work before
    status, answer, seconds, _ = post(served, "writer", body)
    assert status == 400 and seconds < 10, (status, seconds)
    assert answer["error"] == (
        f"assertion failed: [a request may read and write at most {MAX_REQUEST_CHARACTERS} characters in all "
        "(prompt characters plus length, summed over its instances). Received: 640128]")
    # A 10 MiB prompt: refused from its length, before it is decoded or primes anything.
    status, answer, seconds, growth = post(served, "writer", {"instances": [_instance(prompt="a" * (10 * 1024 * 1024))]})
    assert status == 400 and answer["error"] == (
        "assertion failed: [`prompt` must be at most 10000 characters. Received: a prompt of [10485760] characters]")
    assert seconds < 30 and growth < GROWTH_MIB, (seconds, growth)  # before: +764 MiB and minutes of CPU
    status, _, _, _ = post(served, "writer", {"instances": [_instance()]})
    assert status == 200


@pytest.mark.large
def test_a_lone_surrogate_gets_a_400_from_the_server(served):
    for body in ('{"instances": [{"prompt": "\\ud800", "temperature": 1.0, "length": 5, "seed": 0}]}',
                 # over 1 MiB: parsed in a worker process
                 '{"instances": [{"prompt": "' + "a" * (1 << 20) + '\\udc00", "temperature": 1.0, "length": 5, '
                 '"seed": 0}]}'):
        status, answer, _, _ = post(served, "writer", body.encode())
        assert status == 400 and "lone surrogate" in answer["error"] and "Traceback" not in answer["error"], answer


@pytest.mark.large
def test_served_image_signatures_refuse_the_webp_bomb_and_decode_one_gif_frame(served):
    import base64

    def files(data, count=1):
        return [{"b64": base64.b64encode(data).decode()}] * count

    for signature in ("serving_bytes", "explain"):
        status, answer, _, growth = post(served, "digits", {"signature_name": signature,
                                                            "instances": files(webp_bomb(), 4)})
        assert status == 400 and "the image claims more pixels than the limit" in answer["error"], answer
        assert growth < GROWTH_MIB, (signature, growth)  # before: +467 MiB
        status, answer, _, growth = post(served, "digits", {"signature_name": signature,
                                                            "instances": files(animated_gif())})
        assert status == 200 and len(answer["predictions"]) == 1, answer
        assert growth < GROWTH_MIB, (signature, growth)  # before: +920 MiB
    # The checks are the SavedModel's own: what a real TF Serving runs refuses as well.
    loaded = tf.saved_model.load(str(served.base / "digits" / "1"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="claims more pixels"):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([webp_bomb()]))
    writer = tf.saved_model.load(str(served.base / "writer" / "1"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`length` must be from 1 to 10000"):
        writer.signatures["serving_default"](prompt=tf.constant(["ab"]), temperature=tf.constant([1.0]),
                                             length=tf.constant([0]), seed=tf.constant([0], tf.int64))
