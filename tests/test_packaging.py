"""The wheel carries what zoo needs at run time: the ImageNet labels and the shipped
weights (manifest + LeNet-5 files under share/zoo/weights), and an installed zoo finds
them from outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from: copied to tmp, so the build leaves nothing (build/,
# *.egg-info) in a checkout other people are working in.
SOURCES = ["setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in", "setup.py", "zoo", "weights"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(out.glob("zoo-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_labels_and_shipped_weights(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        data = [n for n in names if ".data/data/share/zoo/weights/" in n]
        assert {Path(n).name for n in data} >= {
            "manifest.json", "lenet5_digits.weights.h5", "lenet5_digits04.weights.h5"}
        assert "zoo/architectures/labels/imagenet.json" in names
        assert "zoo/architectures/labels/digits.json" in names
        # The web page (zoo serve --ui) is the package's own files, byte for byte.
        for page_file in (ROOT / "zoo" / "serving" / "ui").iterdir():
            assert archive.read(f"zoo/serving/ui/{page_file.name}") == page_file.read_bytes()
        assert len(json.loads(archive.read("zoo/architectures/labels/imagenet.json"))) == 1000
        # Every file the manifest ships is in the wheel, byte for byte.
        manifest_name = next(n for n in data if n.endswith("manifest.json"))
        manifest = json.loads(archive.read(manifest_name))
        shipped = [v["file"] for v in manifest["variants"] if v.get("file") and not v.get("url")]
        assert shipped
        for file in shipped:
            member = next(n for n in data if n.endswith("/" + file))
            assert archive.read(member) == (ROOT / "weights" / file).read_bytes()
        assert any(n.endswith("entry_points.txt") and b"zoo = zoo.cli:main" in archive.read(n) for n in names)
        # No tests or benchmarks in the wheel.
        assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.mark.large
def test_installed_wheel_classifies_a_digit_offline(wheel, tmp_path):
    """Install the wheel into a throwaway venv (dependencies from this environment via
    a path entry) and run its `zoo classify --model lenet5` from a folder outside the
    checkout, with an empty cache: the weights are found under <prefix>/share/zoo."""
    from PIL import Image

    from zoo.data.digits import load_digits_28, train_test_split_digits

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # This environment's packages (TensorFlow, Keras ...) come after the venv's own
    # site-packages; a plain path line is not scanned for .pth files, so the editable
    # zoo of this checkout stays out and the venv's installed zoo is the one imported.
    (site / "zz_outer_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--no-cache-dir", "-q", str(wheel)] if _pip_has_python_option() else
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir", "-q",
         "--prefix", str(venv), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (venv / "share" / "zoo" / "weights" / "manifest.json").is_file()

    images, labels = load_digits_28()
    _, x_test, _, y_test = train_test_split_digits(images, labels)
    index = int(np.flatnonzero(y_test == 4)[0])
    work = tmp_path / "elsewhere"
    work.mkdir()
    Image.fromarray(x_test[index][..., 0], "L").save(work / "digit.png")
    Image.fromarray(255 - x_test[index][..., 0], "L").save(work / "digit_on_paper.png")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ZOO_MANIFEST")}
    env.update(ZOO_HOME=str(tmp_path / "empty_home"), TF_CPP_MIN_LOG_LEVEL="3",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    where = subprocess.run([str(python), "-c", "import zoo, zoo.weights as w; print(zoo.__file__); print(w.shipped_dir())"],
                           capture_output=True, text=True, cwd=work, env=env, timeout=120)
    assert where.returncode == 0, where.stderr
    module_file, shipped = where.stdout.split()
    assert Path(module_file).is_relative_to(venv), module_file  # not the checkout
    assert Path(shipped) == venv / "share" / "zoo" / "weights"

    result = subprocess.run([str(bindir / "zoo"), "classify", "digit.png", "digit_on_paper.png", "--model",
                             "lenet5", "--top", "1", "--json"],
                            capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert [r["predictions"][0]["label"] for r in output] == ["4", "4"]


def _pip_has_python_option():
    out = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    try:
        major, minor = (int(x) for x in out.stdout.split()[1].split(".")[:2])
    except (IndexError, ValueError):
        return False
    return (major, minor) >= (22, 3)
