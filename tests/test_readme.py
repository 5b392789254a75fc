"""The README's Python blocks run as written, offline, in a fresh directory holding what
they name: `examples/digit-7.png` (shipped) and `photos/`, a user's folder with one
sub-folder per class (here: real handwritten digits)."""

import os
import re
import shutil
from pathlib import Path

from helpers.digit_folders import write_folder
import pytest

from helpers import forked_zoo

pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)


ROOT = Path(__file__).resolve().parents[1]


def python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 4


RUNNER = """
import sys, traceback
blocks = {blocks!r}
for index, block in enumerate(blocks):
    try:
        exec(compile(block, f"README python block {{index + 1}}", "exec"), {{"__name__": "__main__"}})
    except BaseException:
        print(f"README python block {{index + 1}}:\\n{{block}}", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def test_readme_python_blocks_run_as_written(tmp_path, digits):
    """Every block, in order, each in its own namespace, in one interpreter: a reader
    runs them one after another, and one start of TensorFlow serves them all."""
    x_train, _, y_train, _ = digits
    write_folder(tmp_path / "photos", x_train, y_train, classes=(1, 7), per_class=20)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ZOO_HOME": str(tmp_path / "zoo_home")}
    done = forked_zoo.python_run(["-c", RUNNER.format(blocks=python_blocks())], cwd=tmp_path, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "runs" / "digits" / "model.keras").is_file()
    assert (tmp_path / "runs" / "a" / "metrics.json").is_file()
