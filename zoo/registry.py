"""The model registry: specs as data, and `register`.

A `ModelSpec` is plain data. Each module in `zoo.architectures` defines its builders
and calls `register(...)`; nothing else in zoo changes when a model is added. This
module imports nothing of zoo above it (timm's `_registry`); the factory that lists,
describes and builds models — `list_models`, `info`, `create` — is `zoo.models`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

# The task names: what `zoo list` shows and what `zoo train TASK` takes (zoo.tasks).
TASKS = (
    "image-classification",
    "image-segmentation",
    "text-generation",
    "autoencoder",
    "style-transfer",
    "gan",
)
# Names `zoo train` took before the tasks and the registry shared one word; they still work.
OLD_TASK_NAMES = {"classifier": "image-classification", "char-lstm": "text-generation", "dcgan": "gan"}
# Other names a task answers to, as much its own as its name (`zoo train segmenter`).
TASK_ALIASES = {"segmenter": "image-segmentation", "segmentation": "image-segmentation"}


def canonical_task(name):
    """`name` with an old task name (`"classifier"`) or an alias (`"segmenter"`)
    replaced by today's name; others unchanged."""
    return TASK_ALIASES.get(name, OLD_TASK_NAMES.get(name, name))


class Builder:
    """A builder named by reference, `"package.module:function"`, imported on its first call.

    So a spec is data: reading the registry (`zoo list`, `zoo info`) imports no
    architecture module, hence no Keras.
    """

    __slots__ = ("target", "_resolved")

    def __init__(self, target):
        module, _, attribute = str(target).partition(":")
        if not module or not attribute:
            raise ValueError(f"`builder` must be a callable or a 'module:function' reference. Received: {target!r}")
        self.target = str(target)
        self._resolved = None

    def resolve(self):
        """The function itself (imports its module)."""
        if self._resolved is None:
            module, _, attribute = self.target.partition(":")
            function = importlib.import_module(module)
            for part in attribute.split("."):
                function = getattr(function, part)
            self._resolved = function
        return self._resolved

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __eq__(self, other):
        return isinstance(other, Builder) and other.target == self.target

    def __hash__(self):
        return hash(self.target)

    def __repr__(self):
        return f"Builder({self.target!r})"


@dataclass(frozen=True)
class ModelSpec:
    """Everything zoo knows about one model, as data.

    Attributes:
        name: str. Registry name, lower case (`"vgg19"`).
        family: str. Architecture family (`"vgg"`), also the module it lives in.
        task: str. One of `zoo.registry.TASKS`.
        builder: a callable, or a `"module:function"` reference to one (imported when
            a model is first built: see `Builder`). For an image classifier, a callable `(inputs, include_top, classes)
            -> outputs` taking the *preprocessed* float tensor and returning the output
            tensor (the factory adds the uint8 input and the preprocessing layer); for
            any other task, a callable `(**options) -> keras.Model` that builds the
            whole model (a text model takes token ids, a generator a latent vector).
        input_size: `(height, width)` the published weights expect.
        preprocessing: str. A `zoo.architectures.preprocessing.MODES` key; becomes the model's first
            layer, so the model takes raw uint8 RGB.
        labels: str or None. Name of the label set in `zoo/architectures/labels/` (`"imagenet"`).
        num_classes: int. Classes of the original head.
        num_params: int. Parameters of the full model with its original head (shown by
            `zoo list` without building anything; a test checks it).
        description: str. One line.
        default_weights: str or None. The weight tag `create()` loads by default.
        feature_layer: str or None. Last layer before the head, where `include_top=False`
            cuts a model that has no published no-top weights.
        paper: str. Link to the paper.
        top1: float or None. ImageNet-1k top-1 accuracy (%) of the published weights as
            Keras documents it (keras.io/api/applications), None where it documents none.
    """

    name: str
    family: str
    task: str
    builder: Callable
    input_size: tuple | None = None
    preprocessing: str | None = None
    labels: str | None = None
    num_classes: int = 0
    num_params: int = 0
    description: str = ""
    default_weights: str | None = "imagenet"
    feature_layer: str | None = None
    paper: str = ""
    channels: int = field(default=3)
    top1: float | None = None

    def __post_init__(self):
        if isinstance(self.builder, str):
            object.__setattr__(self, "builder", Builder(self.builder))

    @property
    def input_shape(self):
        return (*self.input_size, self.channels) if self.input_size else None


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry. A name can be registered once."""
    if spec.task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}. Received: task={spec.task!r}")
    if spec.name in _REGISTRY:
        raise ValueError(
            f"A model named {spec.name!r} is already registered "
            f"(by zoo.architectures.{_REGISTRY[spec.name].family})."
        )
    _REGISTRY[spec.name] = spec
    return spec


def lookup(name):
    """The spec registered as `name` (case-insensitive), or None."""
    return _REGISTRY.get(str(name).lower())


def registered():
    """`{name: spec}` of everything registered so far (a copy)."""
    return dict(_REGISTRY)
