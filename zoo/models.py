"""The model factory: list, describe and build registered models (timm's `_factory`).

    >>> import zoo
    >>> zoo.list_models("res*")
    ['resnet50', 'resnet101', 'resnet152']
    >>> model = zoo.create("vgg19")            # uint8 RGB in, ImageNet probabilities out
    >>> model = zoo.create("resnet50", num_classes=5)   # ImageNet base, new 5-way head

The specs are data in `zoo.registry`; this module sits above the registry and the
architecture families, and `create` dispatches on a spec's task, so a text model or a
generator is not forced through the image input.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re

from zoo.errors import UnknownModelError, WeightsError
from zoo.registry import TASKS, ModelSpec, canonical_task, lookup, registered


def _ensure_loaded():
    # Importing the package registers every spec (data only: no family module, no
    # Keras); the registry itself imports none.
    import zoo.architectures  # noqa: F401


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern=None, task=None, exclude=(), max_params=None):
    """Names of registered models, sorted naturally (resnet50 before resnet101).

    Args:
        pattern: str or None. fnmatch wildcard such as `"res*"`. Defaults to all.
        task: str or None. Keep only models of this task (a `zoo train` task name; the
            old names such as `"classifier"` too).
        exclude: iterable of patterns to leave out.
        max_params: int or None. Keep only models of at most this many parameters
            (with their original head), e.g. `10_000_000`.
    """
    _ensure_loaded()
    task = canonical_task(task)
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}. Received: task={task!r}")
    names = [
        name
        for name, spec in registered().items()
        if (pattern is None or fnmatch.fnmatch(name, pattern.lower()))
        and (task is None or spec.task == task)
        and (max_params is None or spec.num_params <= max_params)
        and not any(fnmatch.fnmatch(name, ex) for ex in exclude)
    ]
    return sorted(names, key=_natural_key)


HUB_PREFIX = "hub:"
HUB_WEIGHTS = "hub"  # a hub module carries its own weights


def hub_spec(name) -> ModelSpec:
    """The spec of `"hub:HANDLE"`: an image feature-vector module from TF Hub (or a
    SavedModel directory) as the base of a classifier. Hub image modules take float
    RGB in [0, 1] (the `unit` preprocessing) at 224 x 224 unless told otherwise; the
    module's weights are its own. Built through `zoo.transfer.hub_layer`."""
    handle = str(name)[len(HUB_PREFIX):]
    if not handle:
        raise UnknownModelError(f"`hub:` needs a handle or a SavedModel path after it. Received: name={name!r}")

    def builder(features, include_top=False, classes=0):
        if include_top:
            raise WeightsError(f"{name} is a feature extractor with no classification head: pass num_classes=N "
                               "(or include_top=False).")
        from zoo.transfer import hub_layer

        # Trainable, so unfreezing the base fine-tunes the module; `freeze` makes it
        # not trainable, and then it runs in inference mode (batch norm included).
        return hub_layer(handle, trainable=True, name="hub_module")(features)

    return ModelSpec(name=f"{HUB_PREFIX}{handle}", family="hub", task="image-classification", builder=builder,
                     input_size=(224, 224), preprocessing="unit", num_classes=0,
                     description=f"TF Hub module {handle}", default_weights=HUB_WEIGHTS)


def keras_name(spec):
    """The spec's name as a Keras model may be named (`hub:/models/effnet` → `hub_effnet`)."""
    name = spec.name
    if spec.family == "hub":
        name = "hub_" + (name[len(HUB_PREFIX):].rstrip("/").rsplit("/", 1)[-1] or "module")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def get_spec(name) -> ModelSpec:
    if str(name).startswith(HUB_PREFIX):
        return hub_spec(name)
    _ensure_loaded()
    spec = lookup(name)
    if spec is None:
        close = difflib.get_close_matches(str(name).lower(), registered(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"`name` must be a registered model.{hint} See zoo.list_models() or "
            f"`zoo list` for all of them. Received: name={name!r}"
        )
    return spec


def info(name) -> dict:
    """A plain-data description of a model, its weights and where they are cached."""
    from zoo import weights

    spec = get_spec(name)
    variants = {}
    for variant, entry in weights.variants_for(spec.name).items():
        variants[variant] = {
            # Keys starting with "_" are the store's own bookkeeping, not the user's business.
            **{k: v for k, v in entry.items() if k not in ("model", "variant") and not k.startswith("_")},
            "cached": weights.is_available(entry),
            "path": str(weights.local_path(entry)),
        }
    return {
        "name": spec.name,
        "family": spec.family,
        "task": spec.task,
        "description": spec.description,
        "input_shape": list(spec.input_shape) if spec.input_shape else None,  # None: any size
        "preprocessing": spec.preprocessing,
        "num_classes": spec.num_classes,
        "num_params": spec.num_params,
        "imagenet_top1": spec.top1,
        "labels": spec.labels,
        "default_weights": spec.default_weights,
        "paper": spec.paper,
        "weights": variants,
    }


def labels(name):
    """Class names of a model's original head (a list of str), or None."""
    from zoo.architectures.labels import load_labels

    spec = get_spec(name)
    return load_labels(spec.labels) if spec.labels else None


def _is_path(weights):
    return isinstance(weights, os.PathLike) or (
        isinstance(weights, str) and (os.sep in weights or weights.endswith(".h5"))
    )


def weights_choice(weights):
    """`weights` with the spelling of "no weights" settled: `None`, or the string
    `"none"` in any case (as a CLI flag gives it), is `None`; anything else is kept."""
    return None if weights is None or (isinstance(weights, str) and weights.lower() == "none") else weights


def create(name, weights="default", **options):
    """Build a registered model; how depends on its task.

    An image classifier takes raw uint8 RGB images (see `create_image_model` for its
    options: `num_classes`, `include_top`, `input_shape`, `head_dropout`); a model of
    another task is built by its spec's builder from `options`, as it documents.
    """
    spec = get_spec(name)
    weights = weights_choice(weights)
    builder = TASK_BUILDERS.get(spec.task)
    if builder is None:
        return _create_other(spec, weights, **options)
    return builder(spec, weights, **options)


def _create_other(spec, weights="default", **options):
    from zoo.errors import ZooError

    if weights not in ("default", None) or (weights == "default" and spec.default_weights):
        raise ZooError(f"{spec.name} has no loadable weights variants yet. Received: weights={weights!r}")
    return spec.builder(**options)


def create_image_model(
    spec,
    weights="default",
    num_classes=None,
    include_top=True,
    input_shape=None,
    head_dropout=0.0,
    task="classification",
):
    """Build a registered image model that takes raw uint8 RGB images.

    Args:
        spec: ModelSpec. A registered image model's spec.
        weights: `"default"` (the model's default variant, e.g. `"imagenet"`), a
            variant name such as `"imagenet"`, `None` for random initialisation, or the
            path of a weights file. Defaults to `"default"`.
        num_classes: int or None. With the original head's weights, a different number
            of classes gets a new head (pooling, dense) on the pretrained base.
            Defaults to the original head's classes.
        include_top: bool. Keep the classification head. Defaults to `True`.
        input_shape: tuple or None. `(H, W, 3)`; defaults to the model's input size.
            Another size needs `include_top=False` or a new head.
        head_dropout: float. Dropout before a new head. Defaults to `0.0`.
        task: `"classification"`, or `"segmentation"`: the model's stages under a U-Net
            decoder (`zoo.transfer.replace_head(..., task="segmentation")`), a softmax
            over `num_classes` per pixel. Defaults to `"classification"`.

    Returns:
        A `keras.Model` named after the model, input uint8 `(None, H, W, 3)`.
    """
    if task == "segmentation":
        if num_classes is None:
            raise ValueError("A segmentation model needs `num_classes` (the background is a class).")
        from zoo.transfer import replace_head

        base = create_image_model(spec, weights, include_top=False, input_shape=input_shape)
        return replace_head(base, num_classes, name=keras_name(spec), task="segmentation")
    if task != "classification":
        raise ValueError(f"`task` must be 'classification' or 'segmentation'. Received: task={task!r}")
    import keras

    from zoo import weights as weights_store
    from zoo.architectures.preprocessing import Preprocess

    if weights == "default":
        weights = spec.default_weights
    if input_shape is None:
        input_shape = spec.input_shape
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            "`input_shape` must be (height, width, 3): models take RGB images. "
            f"Received: input_shape={input_shape}"
        )

    new_head = num_classes is not None and num_classes != spec.num_classes
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1. Received: num_classes={num_classes}")
    # A new head or another input size rebuilds the top; the base still loads weights.
    build_top = include_top and not new_head
    if build_top and input_shape[:2] != tuple(spec.input_size) and weights is not None:
        raise ValueError(
            f"{spec.name}'s pretrained head needs input_shape={spec.input_shape}. "
            "Pass include_top=False or num_classes=N to use another size. "
            f"Received: input_shape={input_shape}"
        )

    entry = None
    weights_file = None
    if spec.family == "hub":
        if weights not in (HUB_WEIGHTS, None):
            raise WeightsError(f"{spec.name} carries its own weights: leave `weights` as 'default'. "
                               f"Received: weights={weights!r}")
        weights = None  # nothing to load: the module's variables are the weights
    elif weights is not None and _is_path(weights):
        weights_file = os.fspath(weights)
        if not os.path.exists(weights_file):
            raise WeightsError(f"Weights file not found: {weights_file}")
    elif weights is not None:
        entry = weights_store.resolve(spec.name, weights, include_top=build_top)
        weights_file = weights_store.fetch(entry)

    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    features = Preprocess(spec.preprocessing, name="preprocess")(inputs)

    # A variant may have been trained with its own head size (e.g. LeNet on digits 0-4).
    head_classes = (entry or {}).get("num_classes", spec.num_classes)

    def build(with_top):
        outputs = spec.builder(features, include_top=with_top, classes=head_classes)
        return keras.Model(inputs, outputs, name=keras_name(spec))

    if weights_file is None:
        model = build(build_top)
    elif entry is not None:
        # Own models publish only full weights: build the full model, load, then cut.
        cut = not build_top and entry["include_top"]
        model = _load(build(build_top or cut), weights_file, spec)
        if cut:
            model = _cut_head(model, spec)
    else:
        # A user's file may or may not hold the head: try it as asked, then the other way.
        try:
            model = _load(build(build_top), weights_file, spec)
        except WeightsError:
            if build_top:
                raise
            model = _cut_head(_load(build(True), weights_file, spec), spec)

    if new_head:
        from zoo.transfer import replace_head

        model = replace_head(model, num_classes, dropout=head_dropout, name=keras_name(spec),
                             feature_layer=spec.feature_layer)
    return model


def _load(model, weights_file, spec):
    try:
        model.load_weights(weights_file)
    except (ValueError, KeyError, OSError) as error:
        raise WeightsError(f"{weights_file} does not fit {spec.name}: {error}") from error
    return model


def _cut_head(model, spec):
    import keras

    if not spec.feature_layer:
        raise WeightsError(f"{spec.name} has no feature layer to cut its head at.")
    return keras.Model(model.inputs[0], model.get_layer(spec.feature_layer).output, name=keras_name(spec))


# How each task's models are built; a task missing here is built by its spec's builder.
TASK_BUILDERS = {"image-classification": create_image_model}
