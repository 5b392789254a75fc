"""The README's Python blocks run as written, offline, in a fresh directory holding what
they name: `examples/digit-7.png` (shipped) and `photos/`, a user's folder with one
sub-folder per class (here: real handwritten digits)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.digit_folders import write_folder
import pytest

pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)


ROOT = Path(__file__).resolve().parents[1]


def python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 4


def test_readme_python_blocks_run_as_written(tmp_path, digits):
    x_train, _, y_train, _ = digits
    write_folder(tmp_path / "photos", x_train, y_train, classes=(1, 7), per_class=20)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for index, block in enumerate(python_blocks()):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ZOO_HOME": str(tmp_path / "zoo_home")}
        done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                              env=env, timeout=600)
        assert done.returncode == 0, f"README python block {index + 1}:\n{block}\n{done.stderr[-3000:]}"
    assert (tmp_path / "runs" / "digits" / "model.keras").is_file()
    assert (tmp_path / "runs" / "a" / "metrics.json").is_file()
