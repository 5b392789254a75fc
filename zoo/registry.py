"""The model registry: specs as data, and `register`.

A `ModelSpec` is plain data. Each module in `zoo.architectures` defines its builders
and calls `register(...)`; nothing else in zoo changes when a model is added. This
module imports nothing of zoo above it (timm's `_registry`); the factory that lists,
describes and builds models — `list_models`, `info`, `create` — is `zoo.models`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

TASKS = (
    "image-classification",
    "text-generation",
    "autoencoder",
    "style-transfer",
    "gan",
)


@dataclass(frozen=True)
class ModelSpec:
    """Everything zoo knows about one model, as data.

    Attributes:
        name: str. Registry name, lower case (`"vgg19"`).
        family: str. Architecture family (`"vgg"`), also the module it lives in.
        task: str. One of `zoo.registry.TASKS`.
        builder: for an image classifier, a callable `(inputs, include_top, classes)
            -> outputs` taking the *preprocessed* float tensor and returning the output
            tensor (the factory adds the uint8 input and the preprocessing layer); for
            any other task, a callable `(**options) -> keras.Model` that builds the
            whole model (a text model takes token ids, a generator a latent vector).
        input_size: `(height, width)` the published weights expect.
        preprocessing: str. A `zoo.preprocessing.MODES` key; becomes the model's first
            layer, so the model takes raw uint8 RGB.
        labels: str or None. Name of the label set in `zoo/labels/` (`"imagenet"`).
        num_classes: int. Classes of the original head.
        num_params: int. Parameters of the full model with its original head (shown by
            `zoo list` without building anything; a test checks it).
        description: str. One line.
        default_weights: str or None. The weight tag `create()` loads by default.
        feature_layer: str or None. Last layer before the head, where `include_top=False`
            cuts a model that has no published no-top weights.
        paper: str. Link to the paper.
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
