"""The weights store: manifest, cache, fetch (resume, hash, lock), import and verify.

Every download goes to the 127.0.0.1 `file_server` fixture (tests/conftest.py); the
files are small random bytes, so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import forked_zoo

from zoo import weights
from zoo.errors import HashMismatchError, WeightsError

REPO = Path(__file__).resolve().parent.parent
PAYLOAD = np.random.default_rng(0).bytes(300_000)  # a few chunks of the server's 64 KiB


def cache_files(zoo_home, model):
    folder = zoo_home / "weights" / model
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def served_entry(file_server, weights_manifest, data=PAYLOAD, name="toy.h5", hash=None, **faults):
    url = file_server.add(name, data, **faults)
    weights_manifest(weights_manifest.variant("toy", "v1", url, data, hash=hash))
    return weights.resolve("toy", "v1")


# ------------------------------------------------------------------------- fetching
def test_fetch_downloads_verifies_and_stamps(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest)
    path = Path(weights.fetch(entry, progress=False))
    assert path == zoo_home / "weights" / "toy" / "toy.h5"
    assert path.read_bytes() == PAYLOAD
    assert cache_files(zoo_home, "toy") == ["toy.h5", "toy.h5.lock", "toy.h5.verified"]
    assert [r.range for r in file_server.requests_for("toy.h5")] == [None]


def test_fetch_reuses_a_verified_file_without_network_or_rehash(
    file_server, weights_manifest, zoo_home, monkeypatch
):
    entry = served_entry(file_server, weights_manifest)
    first = weights.fetch(entry, progress=False)
    # The stamp must spare both the network and a re-hash of a big file.
    monkeypatch.setattr(weights, "file_hash", lambda *a, **k: pytest.fail("re-hashed"))
    monkeypatch.setattr(weights, "download", lambda *a, **k: pytest.fail("re-downloaded"))
    assert weights.fetch(entry, progress=False) == first
    assert len(file_server.requests_for("toy.h5")) == 1


def test_fetch_rehashes_a_file_changed_since_its_stamp(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest)
    path = Path(weights.fetch(entry, progress=False))
    path.write_bytes(b"x" * len(PAYLOAD))  # corrupted: mtime moves, the stamp no longer fits
    assert Path(weights.fetch(entry, progress=False)).read_bytes() == PAYLOAD
    assert len(file_server.requests_for("toy.h5")) == 2


def test_connection_cut_mid_file_is_resumed_with_range(file_server, weights_manifest, zoo_home):
    cut = 100_000
    entry = served_entry(file_server, weights_manifest, cut_after=cut)
    path = Path(weights.fetch(entry, progress=False))
    assert path.read_bytes() == PAYLOAD  # byte-identical after the resume
    ranges = [r.range for r in file_server.requests_for("toy.h5")]
    assert ranges == [None, f"bytes={cut}-"]
    assert not path.with_name("toy.h5.part").exists()


def test_repeated_cuts_are_each_resumed_with_backoff(file_server, weights_manifest, zoo_home, monkeypatch):
    slept = []
    monkeypatch.setattr(weights, "time", type("FakeTime", (), {"sleep": staticmethod(slept.append)}))
    entry = served_entry(file_server, weights_manifest, cut_after=70_000, cut_times=3)
    assert Path(weights.fetch(entry, progress=False)).read_bytes() == PAYLOAD
    assert len(slept) == 3 and slept == sorted(slept) and slept[0] > 0
    ranges = [r.range for r in file_server.requests_for("toy.h5")]
    assert ranges == [None, "bytes=70000-", "bytes=140000-", "bytes=210000-"]


def test_too_many_cuts_give_up_and_the_next_fetch_resumes(
    file_server, weights_manifest, zoo_home, monkeypatch
):
    monkeypatch.setattr(weights, "time", type("FakeTime", (), {"sleep": staticmethod(lambda s: None)}))
    entry = served_entry(file_server, weights_manifest, cut_after=10_000, cut_times=weights._RETRIES)
    with pytest.raises(WeightsError, match=re.escape(entry["url"]) + r".*connection closed after"):
        weights.fetch(entry, progress=False)
    partial = weights.local_path(entry).with_name("toy.h5.part")
    assert partial.stat().st_size == 10_000 * weights._RETRIES  # kept for the next try
    assert Path(weights.fetch(entry, progress=False)).read_bytes() == PAYLOAD
    assert file_server.requests_for("toy.h5")[-1].range == f"bytes={10_000 * weights._RETRIES}-"


def test_partial_file_of_an_earlier_run_is_resumed(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest)
    partial = weights.local_path(entry).with_name("toy.h5.part")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(PAYLOAD[:123_456])
    assert Path(weights.fetch(entry, progress=False)).read_bytes() == PAYLOAD
    assert [r.range for r in file_server.requests_for("toy.h5")] == ["bytes=123456-"]


def test_server_ignoring_range_restarts_from_zero(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest, cut_after=100_000, ignore_range=True)
    assert Path(weights.fetch(entry, progress=False)).read_bytes() == PAYLOAD
    assert len(file_server.requests_for("toy.h5")) == 2


def test_complete_partial_file_answered_416_is_downloaded_again(
    file_server, weights_manifest, zoo_home
):
    # A run killed between the last byte and the rename leaves a whole `.part`; the
    # server answers its Range request with 416, which must not wedge the cache.
    entry = served_entry(file_server, weights_manifest)
    partial = weights.local_path(entry).with_name("toy.h5.part")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(PAYLOAD)
    assert Path(weights.fetch(entry, progress=False)).read_bytes() == PAYLOAD
    assert not partial.exists()


def test_wrong_hash_is_rejected_and_nothing_is_kept(file_server, weights_manifest, zoo_home):
    wrong = "sha256:" + "0" * 64
    entry = served_entry(file_server, weights_manifest, hash=wrong)
    with pytest.raises(HashMismatchError) as caught:
        weights.fetch(entry, progress=False)
    message = str(caught.value)
    actual = weights.parse_hash(weights_manifest.hash_of(PAYLOAD))[1]
    assert entry["url"] in message
    assert wrong in message
    assert actual in message
    # Only the (empty) lock file may stay: no final file, no partial, no stamp.
    assert cache_files(zoo_home, "toy") == ["toy.h5.lock"]


def test_wrong_md5_is_rejected(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest, hash="md5:" + "f" * 32)
    with pytest.raises(HashMismatchError, match="expected md5:f{32}, got md5:[0-9a-f]{32}"):
        weights.fetch(entry, progress=False)


def test_http_404_is_a_clear_weights_error(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest, status=404)
    with pytest.raises(WeightsError) as caught:
        weights.fetch(entry, progress=False)
    message = str(caught.value)
    assert entry["url"] in message
    assert "404" in message
    assert "zoo weights import FILE --model toy --variant v1" in message
    assert cache_files(zoo_home, "toy") == ["toy.h5.lock"]
    assert len(file_server.requests_for("toy.h5")) == 1  # a 404 is not retried


def test_server_error_is_retried(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest, status=503)
    # Serve the real file after the first 503.
    original = file_server.files["/toy.h5"]

    def heal():
        original.status = 200

    import threading

    threading.Timer(0.1, heal).start()
    assert Path(weights.fetch(entry, progress=False)).read_bytes() == PAYLOAD
    assert len(file_server.requests_for("toy.h5")) >= 2


def test_refused_connection_is_one_clear_weights_error(weights_manifest, zoo_home, closed_port_url):
    weights_manifest(weights_manifest.variant("toy", "v1", closed_port_url, PAYLOAD))
    entry = weights.resolve("toy", "v1")
    started = time.monotonic()
    with pytest.raises(WeightsError) as caught:
        weights.fetch(entry, progress=False)
    assert time.monotonic() - started < 5  # fails at once: no retry loop without network
    message = str(caught.value)
    assert closed_port_url in message
    assert str(zoo_home / "weights" / "toy" / "weights.h5") in message
    assert "zoo weights import FILE --model toy --variant v1" in message
    assert "refused" in message.lower()


def test_create_without_network_fails_before_building(weights_manifest, zoo_home, closed_port_url):
    import zoo

    weights_manifest(weights_manifest.variant("resnet50", "imagenet", closed_port_url, PAYLOAD))
    with pytest.raises(WeightsError, match=r"(?s)resnet50.imagenet.*" + re.escape(closed_port_url)
                       + r".*zoo weights import FILE --model resnet50 --variant imagenet"):
        zoo.create("resnet50")


_FETCH_IN_CHILD = """
import time
from zoo import weights
entry = weights.resolve("toy", "v1")
print(time.time())
print(weights.fetch(entry, progress=False))
"""


def test_two_processes_fetching_at_once_share_one_download(file_server, weights_manifest, zoo_home):
    # Throttled to ~1.5 s, so the second process asks while the first one downloads.
    entry = served_entry(file_server, weights_manifest, throttle=0.3)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start():
        return subprocess.Popen([sys.executable, "-c", _FETCH_IN_CHILD], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start()
    deadline = time.monotonic() + 30
    while not file_server.requests_for("toy.h5"):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.02)
    second = start()
    outputs = []
    for child in (first, second):
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(out.split())
    (request,) = file_server.requests_for("toy.h5")  # the second reused the first's file
    while request.finished is None:  # the server thread may lag the client by a moment
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second_asked_at = float(outputs[1][0])
    assert second_asked_at < request.finished, "the fetches did not overlap; raise the throttle"
    path = weights.local_path(entry)
    assert [out[1] for out in outputs] == [str(path), str(path)]
    assert path.read_bytes() == PAYLOAD
    assert cache_files(zoo_home, "toy") == ["toy.h5", "toy.h5.lock", "toy.h5.verified"]


def test_download_function_directly(file_server, tmp_path):
    url = file_server.add("direct.bin", PAYLOAD, cut_after=1000)
    dest = tmp_path / "sub" / "direct.bin"
    expected = f"md5:{__import__('hashlib').md5(PAYLOAD).hexdigest()}"
    assert weights.download(url, dest, expected, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["direct.bin"]


def test_progress_bar_does_not_break_a_download(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest, cut_after=50_000)
    assert Path(weights.fetch(entry, progress=True)).read_bytes() == PAYLOAD


# ---------------------------------------------------------------------- import/verify
def test_import_file_verifies_and_stores_at_the_cache_path(tmp_path, weights_manifest, zoo_home):
    weights_manifest(weights_manifest.variant("toy", "v1", "https://example.invalid/toy.h5", PAYLOAD))
    source = tmp_path / "copied_by_hand.h5"
    source.write_bytes(PAYLOAD)
    stored = weights.import_file(source, "toy", "v1")
    entry = weights.resolve("toy", "v1")
    assert stored == weights.local_path(entry) == zoo_home / "weights" / "toy" / "toy.h5"
    assert stored.read_bytes() == PAYLOAD
    assert source.exists()
    # Imported means usable offline: fetch returns it without touching the (bogus) URL.
    assert weights.fetch(entry, progress=False) == str(stored)
    assert weights.verify(entry) == stored


def test_import_file_rejects_a_bad_file_and_stores_nothing(tmp_path, weights_manifest, zoo_home):
    weights_manifest(weights_manifest.variant("toy", "v1", "https://example.invalid/toy.h5", PAYLOAD))
    source = tmp_path / "bad.h5"
    source.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(HashMismatchError, match=re.escape(str(source))):
        weights.import_file(source, "toy", "v1")
    assert not weights.is_available(weights.resolve("toy", "v1"))
    assert cache_files(zoo_home, "toy") == []


def test_import_file_names_unknown_variants_and_missing_files(tmp_path, weights_manifest, zoo_home):
    weights_manifest(weights_manifest.variant("toy", "v1", "https://example.invalid/toy.h5", PAYLOAD))
    with pytest.raises(WeightsError, match=r"known variant of toy \(v1\).*variant='v2'"):
        weights.import_file(tmp_path / "x.h5", "toy", "v2")
    with pytest.raises(WeightsError, match="No such file"):
        weights.import_file(tmp_path / "missing.h5", "toy", "v1")


def test_verify_detects_a_corrupted_cached_file(file_server, weights_manifest, zoo_home):
    entry = served_entry(file_server, weights_manifest)
    path = Path(weights.fetch(entry, progress=False))
    assert weights.verify(entry) == path
    # Flip one byte but keep size and mtime: only a re-hash can tell.
    stat = path.stat()
    corrupted = bytearray(PAYLOAD)
    corrupted[1000] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(HashMismatchError, match=re.escape(str(path))):
        weights.verify(entry)
    # Once verify has seen the damage, fetch must not trust the old stamp.
    assert Path(weights.fetch(entry, progress=False)).read_bytes() == PAYLOAD
    assert len(file_server.requests_for("toy.h5")) == 2


def test_verify_of_a_missing_file_says_where_it_looked(weights_manifest, zoo_home):
    weights_manifest(weights_manifest.variant("toy", "v1", "https://example.invalid/toy.h5", PAYLOAD))
    with pytest.raises(WeightsError, match=re.escape(str(zoo_home / "weights" / "toy" / "toy.h5"))):
        weights.verify(weights.resolve("toy", "v1"))


def test_entry_without_url_or_file_is_a_manifest_error(weights_manifest, zoo_home):
    path = weights_manifest(weights_manifest.variant("toy", "v1", None, PAYLOAD))
    with pytest.raises(WeightsError, match=re.escape(str(path)) + r".*needs a 'url'.* or a 'file'"):
        weights.resolve("toy", "v1")


def test_shipped_file_that_is_missing_says_reinstall(tmp_path, weights_manifest, zoo_home):
    weights_manifest(weights_manifest.variant("toy", "v1", None, PAYLOAD, file="gone.weights.h5"))
    with pytest.raises(WeightsError, match=r"toy.v1: the shipped file .*gone.weights.h5 is missing"):
        weights.fetch(weights.resolve("toy", "v1"), progress=False)


# ------------------------------------------------------------------------- manifest
def test_extra_manifests_override_in_order(weights_manifest):
    weights_manifest(weights_manifest.variant("toy", "v1", "https://a.invalid/toy.h5", b"a"))
    weights_manifest(
        weights_manifest.variant("toy", "v1", "https://b.invalid/toy.h5", b"b"),
        weights_manifest.variant("vgg19", "imagenet", "https://b.invalid/vgg19.h5", b"b"),
    )
    assert weights.resolve("toy", "v1")["url"] == "https://b.invalid/toy.h5"
    assert weights.resolve("vgg19", "imagenet")["url"] == "https://b.invalid/vgg19.h5"
    assert weights.resolve("vgg16", "imagenet")["url"].startswith("https://storage.googleapis.com/")


def test_resolve_prefers_notop_without_the_head(zoo_home):
    assert weights.resolve("resnet50", "imagenet", include_top=False)["variant"] == "imagenet_notop"
    assert weights.resolve("resnet50", "imagenet")["variant"] == "imagenet"
    assert weights.resolve("lenet5", "digits", include_top=False)["variant"] == "digits"
    with pytest.raises(WeightsError, match=r"variant of resnet50 \(imagenet, imagenet_notop\).*weights='nope'"):
        weights.resolve("resnet50", "nope")


def test_a_broken_manifest_names_its_file_and_field(tmp_path, monkeypatch, zoo_home):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"variants": [{"model": "toy", "variant": "v1"}]}))
    monkeypatch.setenv("ZOO_MANIFEST", str(path))
    with pytest.raises(WeightsError, match=re.escape(str(path)) + r".*variants\[0\] needs a 'hash'"):
        weights.manifest()
    path.write_text("{not json")
    with pytest.raises(WeightsError, match="Cannot read weights manifest " + re.escape(str(path))):
        weights.manifest()


def test_parse_hash():
    assert weights.parse_hash("sha256:AB" + "0" * 62) == ("sha256", "ab" + "0" * 62)
    assert weights.parse_hash("0" * 32) == ("md5", "0" * 32)
    assert weights.parse_hash("0" * 64) == ("sha256", "0" * 64)
    with pytest.raises(WeightsError, match="sha256:HEX or md5:HEX"):
        weights.parse_hash("sha1:" + "0" * 40)


SHIPPED_MANIFEST = json.loads((REPO / "weights" / "manifest.json").read_text())


@pytest.mark.parametrize(
    "entry", SHIPPED_MANIFEST["variants"], ids=lambda e: f"{e['model']}.{e['variant']}"
)
def test_shipped_manifest_entries_are_complete(entry):
    for field in ("model", "variant", "hash", "license", "origin"):
        assert isinstance(entry.get(field), str) and entry[field].strip(), field
    assert re.fullmatch(r"md5:[0-9a-f]{32}|sha256:[0-9a-f]{64}", entry["hash"]), entry["hash"]
    assert isinstance(entry.get("include_top"), bool)
    if entry.get("url"):
        assert entry["url"].startswith("https://"), entry["url"]
    else:
        assert entry.get("file"), "a variant needs a url or a shipped file"
        assert (REPO / "weights" / entry["file"]).is_file()
    if entry.get("size") is not None:
        assert isinstance(entry["size"], int) and entry["size"] > 0


def test_shipped_manifest_has_no_duplicates():
    keys = [(e["model"], e["variant"]) for e in SHIPPED_MANIFEST["variants"]]
    assert len(keys) == len(set(keys))


def test_every_default_weights_tag_has_a_variant(zoo_home):
    from zoo.models import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        if spec.default_weights:
            assert spec.default_weights in weights.variants_for(name), name
    for entry in SHIPPED_MANIFEST["variants"]:
        get_spec(entry["model"])  # no variant for a model that does not exist


# -------------------------------------------------------------------- shipped files
def test_shipped_lenet5_hash_and_size_match_the_manifest(zoo_home):
    entry = weights.resolve("lenet5", "digits")
    path = weights.local_path(entry)
    assert path == REPO / "weights" / "lenet5_digits.weights.h5"
    assert weights.verify(entry) == path
    assert path.stat().st_size == entry["size"]
    assert not path.with_name(path.name + ".verified").exists()  # never writes into weights/


def test_lenet5_loads_shipped_weights_without_network(zoo_home, monkeypatch):
    import urllib.request

    import keras

    import zoo
    from zoo.data.digits import load_digits_28, train_test_split_digits

    def no_network(*args, **kwargs):
        raise AssertionError("zoo.create('lenet5') tried the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    model = zoo.create("lenet5")
    images, labels = load_digits_28()
    _, x_test, _, y_test = train_test_split_digits(images, labels)
    predicted = np.argmax(model.predict(x_test, verbose=0, batch_size=360), axis=-1)
    accuracy = float(np.mean(predicted == y_test))
    # The manifest records what the shipped file scored on this same held-out split.
    assert accuracy == pytest.approx(weights.resolve("lenet5", "digits")["held_out_accuracy"], abs=0.005)
    assert not (zoo_home / "weights").exists()
    keras.backend.clear_session()


def test_lenet5_without_top_cuts_the_shipped_full_weights(zoo_home):
    import keras

    import zoo
    from zoo.data.digits import load_digits_28

    images = load_digits_28()[0][:8]
    full = zoo.create("lenet5")
    headless = zoo.create("lenet5", include_top=False)
    assert headless.output.shape == (None, 84)
    expected = keras.Model(full.inputs, full.get_layer("f6").output).predict(images, verbose=0)
    np.testing.assert_allclose(headless.predict(images, verbose=0), expected, rtol=1e-6, atol=1e-6)
    keras.backend.clear_session()


# ------------------------------------------------------------------ hostile stores
def test_manifest_file_names_cannot_reach_outside_zoo_home(file_server, weights_manifest, zoo_home, tmp_path):
    url = file_server.add("evil.h5", PAYLOAD)
    for field, value in (("file", "../../escaped.h5"), ("model", "../toy"), ("file", "/etc/escaped.h5")):
        entry = weights_manifest.variant("toy", "v1", url, PAYLOAD)
        entry[field] = value
        weights_manifest(entry)
        with pytest.raises(WeightsError, match=f"{field} must be a plain file name"):
            weights.manifest()
        os.environ["ZOO_MANIFEST"] = ""  # the next write starts a clean list
    assert not list(tmp_path.rglob("escaped.h5"))


def test_a_read_only_zoo_home_is_one_clear_error(file_server, weights_manifest, zoo_home, monkeypatch):
    entry = served_entry(file_server, weights_manifest)
    zoo_home.mkdir(parents=True, exist_ok=True)
    zoo_home.chmod(0o500)
    try:
        if os.access(zoo_home, os.W_OK):  # root writes anywhere: make the write fail as it would
            def refuse(path):
                raise PermissionError(13, "Permission denied", str(path))

            monkeypatch.setattr(weights, "_file_lock", refuse)
        with pytest.raises(WeightsError, match="Set ZOO_HOME to a folder you can write"):
            weights.fetch(entry, progress=False)
    finally:
        zoo_home.chmod(0o700)



@pytest.mark.parametrize("how", ["read-only folder", "below a regular file"])
def test_import_into_a_zoo_home_that_cannot_be_written_is_one_line(tmp_path, weights_manifest, zoo_home, how):
    """`zoo weights import` into a ZOO_HOME it cannot write says so in one line naming
    ZOO_HOME, as fetch does (the same words: one place says it), not a traceback. Root
    writes into a read-only folder, so the other case puts ZOO_HOME below a regular
    file, which fails for everyone."""
    weights_manifest(weights_manifest.variant("lenet5", "hand_copied", "https://example.invalid/x.h5", PAYLOAD))
    source = tmp_path / "copied_by_hand.h5"
    source.write_bytes(PAYLOAD)
    if how == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        zoo_home.mkdir(parents=True)
        zoo_home.chmod(0o500)
        home = zoo_home
    else:
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        home = blocker / "zoo_home"
    env = {**os.environ, "ZOO_HOME": str(home)}
    try:
        done = forked_zoo.run(["weights", "import", source, "--model", "lenet5", "--variant", "hand_copied"], env=env,
                              cwd=REPO, timeout=120)
    finally:
        if how == "read-only folder":
            zoo_home.chmod(0o700)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("zoo weights: error: Cannot write lenet5.hand_copied's weights to "), lines[0]
    assert f"ZOO_HOME is {home}" in lines[0] and "Set ZOO_HOME to a folder you can write" in lines[0], lines[0]
    # In Python: the same error, and fetch words it the same way.
    os.environ["ZOO_HOME"] = str(home)  # zoo_home's monkeypatch restores it
    try:
        if how == "read-only folder":
            zoo_home.chmod(0o500)
        with pytest.raises(WeightsError, match="Set ZOO_HOME to a folder you can write") as raised:
            weights.import_file(source, "lenet5", "hand_copied")
        assert str(raised.value) == lines[0].removeprefix("zoo weights: error: ")
    finally:
        if how == "read-only folder":
            zoo_home.chmod(0o700)


def _endless_server(send_length=None, chunk=b"x" * 65536):
    """A server that sends bytes for as long as the client reads."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            if send_length is not None:
                self.send_header("Content-Length", str(send_length))
            self.end_headers()
            try:
                while True:
                    self.wfile.write(chunk)
            except OSError:
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("size, announced", [(len(PAYLOAD), None), (None, None), (len(PAYLOAD), 10 ** 12)])
def test_an_endless_sender_is_cut_off_at_the_files_size(tmp_path, monkeypatch, size, announced):
    monkeypatch.setenv("ZOO_MAX_DOWNLOAD_BYTES", str(4 << 20))
    server = _endless_server(send_length=announced)
    dest = tmp_path / "w.h5"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/w.h5"
        with pytest.raises(WeightsError, match="Refusing it"):
            weights.download(url, dest, "sha256:" + "0" * 64, size=size, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert not dest.exists() and not dest.with_name("w.h5.part").exists()


def test_a_small_file_behind_a_stalling_connection_keeps_every_byte_and_resumes(tmp_path):
    """A 300 KB file sent 100 KB at a time, then the connection stalls: each attempt
    keeps what arrived and the next resumes there (reading a MiB at a time lost it)."""
    import hashlib
    import http.server
    import threading

    data = np.random.default_rng(1).integers(0, 255, 300_000, dtype="uint8").tobytes()
    ranges = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            start = int(self.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)
            ranges.append(start)
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            self.wfile.write(data[start:start + 100_000])
            self.wfile.flush()
            time.sleep(3)  # stall, longer than the client's timeout

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/small.h5"
        path = weights.download(url, tmp_path / "small.h5", "sha256:" + hashlib.sha256(data).hexdigest(),
                                size=len(data), progress=False, timeout=0.5)
    finally:
        server.shutdown()
        server.server_close()
    assert path.read_bytes() == data
    assert ranges[:3] == [0, 100_000, 200_000]
