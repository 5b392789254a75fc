"""Trust (issue 22, items 1-2): a hub module is code. A `.keras` file whose hub layer's
handle was edited to a URL is refused in one line by every loader (nothing fetched from
the local file server, nothing written by the module's graph) unless the user opts in
with `trust_remote_code` / `--trust-remote-code`; the first load of a module from outside
the TF Hub cache prints one line, once per process. No network: the "remote" module is
a tarball served from 127.0.0.1."""

import io as bytes_io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest

from helpers import forked_zoo  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from zoo import runs  # noqa: E402
from zoo.transfer import hub_layer  # noqa: E402
from zoo.transfer.hub import RemoteCodeError, trust_remote_code  # noqa: E402

NOTICE = "a module runs its own TensorFlow graph"


class Features(tf.Module):
    """An image feature-vector module; given a `marker`, its graph also writes that file
    on every call (what a hostile module's graph could do instead of computing)."""

    def __init__(self, marker=None):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 4], seed=[5, 6]), name="kernel")
        self.marker = marker

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images):
        if self.marker is not None:
            tf.io.write_file(self.marker, "written by the module's graph")
        return tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.kernel)


def _tarball(directory):
    buffer = bytes_io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for item in sorted(directory.iterdir()):
            archive.add(item, arcname=item.name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """`(benign directory, hostile module tarball, its marker path)`."""
    root = tmp_path_factory.mktemp("trust_hub")
    tf.saved_model.save(Features(), str(root / "benign"))
    marker = root / "marker.txt"
    tf.saved_model.save(Features(str(marker)), str(root / "hostile"))
    return root / "benign", _tarball(root / "hostile"), marker


@pytest.fixture(scope="module")
def saved_run(modules, tmp_path_factory):
    """A zoo image-classification run whose model holds a hub layer over a local module."""
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    features = hub_layer(modules[0])(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(features))
    return runs.save_run(tmp_path_factory.mktemp("trust_hub") / "run", model, classes=["a", "b"])


def hostile_copy(run_dir, destination, handle, path=None):
    """`run_dir` copied to `destination` with its hub layer's handle edited to `handle`
    and its recorded path removed (or set to `path`)."""
    destination.mkdir(parents=True)
    for item in run_dir.iterdir():
        if item.name != runs.MODEL_FILE:
            (destination / item.name).write_bytes(item.read_bytes())
    with zipfile.ZipFile(run_dir / runs.MODEL_FILE) as source, \
            zipfile.ZipFile(destination / runs.MODEL_FILE, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                [layer] = [la for la in config["config"]["layers"] if la["class_name"] == "HubLayer"]
                layer["config"]["handle"] = handle
                layer["config"].pop("local_path", None)
                if path is not None:
                    layer["config"]["local_path"] = str(path)
                data = json.dumps(config).encode()
            target.writestr(info, data)
    return destination


def serve(file_server, modules):
    """The hostile module's URL on the local file server (tensorflow-hub asks for it with
    `?tf-hub-format=compressed`)."""
    file_server.add("/hub/module.tar.gz?tf-hub-format=compressed", modules[1])
    return file_server.add("/hub/module.tar.gz", modules[1])


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty TF Hub cache for one test."""
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub_cache"))
    return tmp_path / "tfhub_cache"


def assert_refused(error, url):
    message = str(error)
    assert "\n" not in message and url in message
    assert "--trust-remote-code" in message and "trust_remote_code=True" in message


def test_a_model_file_naming_a_url_is_refused_by_every_loader_and_nothing_is_fetched(
        saved_run, modules, file_server, tmp_path, hub_cache):
    url = serve(file_server, modules)
    hostile = hostile_copy(saved_run, tmp_path / "hostile", url)
    gone = hostile_copy(saved_run, tmp_path / "gone", url, path=tmp_path / "no-longer-there")
    for load in (lambda: runs.load_model_file(hostile / runs.MODEL_FILE),
                 lambda: runs.load_model_file(hostile / runs.MODEL_FILE, trust_remote_code=False),
                 lambda: zoo.load_run(hostile),
                 lambda: zoo.load_run(gone),  # a recorded directory that is gone: the URL is not the fallback
                 lambda: keras.saving.load_model(hostile / runs.MODEL_FILE)):  # Keras' own loader too
        with pytest.raises(RemoteCodeError) as refused:
            load()
        assert_refused(refused.value, url)
    # Trust given to one call ends with it (a scoped flag, not global state).
    runs.load_model_file(saved_run / runs.MODEL_FILE, trust_remote_code=True)
    with pytest.raises(RemoteCodeError):
        runs.load_model_file(hostile / runs.MODEL_FILE)
    assert file_server.requests == []
    assert not modules[2].exists()


def test_the_refusal_names_the_file(saved_run, modules, file_server, tmp_path, hub_cache):
    url = serve(file_server, modules)
    hostile = hostile_copy(saved_run, tmp_path / "hostile", url)
    with pytest.raises(RemoteCodeError, match="^" + str(hostile / runs.MODEL_FILE).replace("\\", "\\\\") + ": "):
        runs.load_model_file(hostile / runs.MODEL_FILE)


def test_a_recorded_local_directory_loads_wherever_it_points_without_fetching(
        saved_run, modules, file_server, tmp_path, hub_cache):
    url = serve(file_server, modules)
    elsewhere = tmp_path / "elsewhere"
    tf.saved_model.save(Features(), str(elsewhere))
    edited = hostile_copy(saved_run, tmp_path / "edited", url, path=elsewhere)
    model = runs.load_model_file(edited / runs.MODEL_FILE)
    assert model.predict(np.zeros((1, 8, 8, 3), "uint8"), verbose=0).shape == (1, 2)
    assert file_server.requests == []


def test_trusted_the_module_is_fetched_and_its_graph_runs_then_comes_from_the_cache(
        saved_run, modules, file_server, tmp_path, hub_cache, capfd):
    url = serve(file_server, modules)
    hostile = hostile_copy(saved_run, tmp_path / "hostile", url)
    marker = modules[2]
    try:
        model = runs.load_model_file(hostile / runs.MODEL_FILE, trust_remote_code=True)
        assert len(file_server.requests) == 1
        model.predict(np.zeros((1, 8, 8, 3), "uint8"), verbose=0)
        assert marker.exists()  # the documented risk: the module's graph ran
        err = capfd.readouterr().err
        assert sum(NOTICE in line and f"downloaded from {url}" in line for line in err.splitlines()) == 1, err
        # The module fetched by the user's own (trusted) call is in the cache: the file
        # loads from there, untrusted, without a request and without a second notice.
        with trust_remote_code(False):
            zoo.load_run(hostile)
        assert len(file_server.requests) == 1
        assert NOTICE not in capfd.readouterr().err
    finally:
        marker.unlink(missing_ok=True)


def test_the_first_load_of_a_module_from_outside_the_cache_says_so_once(tmp_path, capfd):
    directory = tmp_path / "module"
    tf.saved_model.save(Features(), str(directory))
    capfd.readouterr()
    hub_layer(directory)
    lines = [line for line in capfd.readouterr().err.splitlines() if NOTICE in line]
    assert len(lines) == 1 and str(directory) in lines[0], lines
    hub_layer(directory)
    assert NOTICE not in capfd.readouterr().err


def _zoo(*args, env=None):
    return forked_zoo.run(args, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def _image(path):
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 128, "uint8")).save(path)
    return path


def test_zoo_predict_refuses_in_one_line(saved_run, modules, file_server, tmp_path):
    url = serve(file_server, modules)
    hostile = hostile_copy(saved_run, tmp_path / "hostile", url)
    done = _zoo("predict", hostile, _image(tmp_path / "x.png"), env={"TFHUB_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo predict: error: "), done.stderr
    assert_refused(lines[0], url)
    assert file_server.requests == [] and not modules[2].exists()


@pytest.mark.large
def test_zoo_export_and_explain_refuse_and_predict_with_trust_remote_code_runs_the_module(
        saved_run, modules, file_server, tmp_path):
    url = serve(file_server, modules)
    hostile = hostile_copy(saved_run, tmp_path / "hostile", url)
    image = _image(tmp_path / "x.png")
    env = {"TFHUB_CACHE_DIR": str(tmp_path / "cache")}
    for command, args in (("export", [hostile, "--out", tmp_path / "models"]),
                          ("explain", [image, "--run", hostile / runs.MODEL_FILE, "--out", tmp_path / "explain"])):
        done = _zoo(command, *args, env=env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"zoo {command}: error: "), \
            done.stderr
        assert_refused(lines[0], url)
    assert file_server.requests == [] and not modules[2].exists()
    try:
        done = _zoo("predict", hostile, image, "--trust-remote-code", env=env)
        assert done.returncode == 0, done.stderr
        assert len(file_server.requests) == 1 and modules[2].exists()
        assert [line for line in done.stderr.splitlines() if NOTICE in line] == [
            line for line in done.stderr.splitlines() if f"downloaded from {url}" in line] != []
    finally:
        modules[2].unlink(missing_ok=True)
