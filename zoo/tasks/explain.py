"""`zoo.explain`: where a classifier looked, for a registry model, a run or a model file.

    >>> import zoo
    >>> result = zoo.explain("runs/birds", ["robin.jpg"], method="gradcam")
    >>> result.maps.shape                   # (images, H, W): the model's input size, 0..1
    (1, 224, 224)
    >>> result.results[0]["label"], result.results[0]["peak"]
    ('robin', {'x': 412, 'y': 118, 'value': 1.0})
    >>> result.save("explain/")              # an overlay PNG per image

Methods and their papers: `zoo.interpret.attribution`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.interpret import attribution


@dataclass
class Explanation:
    """What `explain` found, for the images that could be read.

    Attributes:
        method: str. The method's name.
        maps: float32 `(N, H, W)`, one map per readable image at the model's input size,
            each scaled to [0, 1] (1 = where the class's evidence is strongest).
        images: uint8 `(N, H, W, 3)`: the images as the model saw them.
        results: one dict per input image, in input order: `image`, `class_id`,
            `label`, `probability` (of that class), `predicted`, `predicted_probability`,
            `peak` (`x`, `y` in the original image's pixels, and `value`), or
            `image`, `error` for an image that could not be read.
        originals: the images as given (paths or arrays), for the overlays.
    """

    method: str
    maps: np.ndarray
    images: np.ndarray
    results: list
    originals: list = field(default_factory=list, repr=False)
    layer: str | None = None

    def __array__(self, dtype=None, copy=None):
        return self.maps if dtype is None else self.maps.astype(dtype)

    def __len__(self):
        return len(self.maps)

    def save(self, out_dir, overwrite=False):
        """An overlay PNG per image in `out_dir` (`NAME.METHOD.png`: the photo, the
        heat map over it, the label and probability). An existing file is kept unless
        `overwrite`: its image gets an `error` in the returned list instead.

        Returns:
            One dict per readable image: `{"image", "overlay"}` or `{"image", "error"}`.
        """
        from zoo.plots import plot_explanation

        out_dir = Path(out_dir)
        check_out_dir(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written, used = [], set()
        row = 0
        for index, result in enumerate(self.results):
            if "error" in result:
                continue
            name = _overlay_name(result["image"], index, self.method, used)
            path = out_dir / name
            heatmap = self.maps[row]
            photo = _display_image(self.originals[index], self.images[row])
            row += 1
            if path.exists() and not overwrite:
                written.append({"image": result["image"],
                                "error": f"{path} exists: pass --overwrite to replace it"})
                continue
            title = (f"{result['label']}  p={result['probability']:.3f}  ·  {self.method}"
                     + (f" ({self.layer})" if self.layer else ""))
            if result["class_id"] != result["predicted_id"]:
                title += f"\npredicted: {result['predicted']} p={result['predicted_probability']:.3f}"
            y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
            peak = ((x + 0.5) / heatmap.shape[1], (y + 0.5) / heatmap.shape[0])
            plot_explanation(photo, heatmap, title, path, peak=peak)
            written.append({"image": result["image"], "overlay": str(path)})
        return written


def check_out_dir(out_dir):
    """Refuse an `--out` that is a file: the overlays go into a folder."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ZooError(f"{out_dir} is a file: --out names the folder the overlays go to")


def resolve_model(model_or_run, weights="default"):
    """`(model, class names or None, registry name or None)` for a `keras.Model`, a run
    directory, a `.keras` file or a registry name."""
    import keras

    if isinstance(model_or_run, keras.Model):
        return model_or_run, None, None
    if hasattr(model_or_run, "model") and hasattr(model_or_run, "path"):  # a loaded Run
        return model_or_run.model, list(getattr(model_or_run, "classes", None) or []) or None, None
    if not isinstance(model_or_run, (str, os.PathLike)):
        raise TypeError("`model_or_run` must be a keras.Model, a run directory, a .keras file or a registry "
                        f"model name. Received: {model_or_run!r}")
    path = Path(model_or_run)
    if path.is_dir():
        from zoo.tasks import load_run

        run = load_run(path)
        classes = getattr(run, "classes", None)
        return run.model, list(classes) if classes else None, None
    if path.suffix == ".keras" or path.is_file():
        from zoo.runs import load_model_file

        return load_model_file(path), None, None
    from zoo.tasks.classify import registry_model, require_pretrained

    name = str(model_or_run).lower()
    if weights == "default":
        # Maps of random weights would explain nothing.
        require_pretrained(name)
    return registry_model(name, os.fspath(weights) if isinstance(weights, os.PathLike) else weights), None, name


def is_model_path(path):
    """Whether `path` is a run directory (holding model.keras) or a `.keras` file."""
    path = Path(path)
    return (path / "model.keras").is_file() or (path.suffix == ".keras" and path.is_file())


def split_run(arguments):
    """`zoo explain IMAGE... RUN` (or `RUN IMAGE...`): `(run, images)`, the run being the
    first or last argument that is one (`is_model_path`); `(None, arguments)` otherwise."""
    arguments = list(arguments)
    found = [a for a in (arguments[-1], arguments[0]) if is_model_path(a)] if len(arguments) > 1 else []
    if not found:
        return None, arguments
    return found[0], [a for a in arguments if a != found[0]]


def image_model(source, weights="default", size=None):
    """An image model to look inside: a registry name (with `weights`: a variant, a file
    or `"none"`; with `size`, built without its top at `size` x `size`), or a run
    directory or `.keras` file (`weights` and `size` do not apply)."""
    from zoo import models

    if not is_model_path(source):
        chosen = models.weights_choice(weights)
        if size:
            return models.create(source, weights=chosen, include_top=False, input_shape=(size, size, 3))
        if chosen is None:
            return models.create(source, weights=None)
    return resolve_model(source, weights)[0]


def class_index(class_, names):
    """A class given as an index or a label, as an index."""
    if isinstance(class_, (int, np.integer)) and not isinstance(class_, bool):
        index = int(class_)
    elif isinstance(class_, str) and class_ in names:
        index = names.index(class_)
    elif isinstance(class_, str) and class_.strip().lstrip("-").isdigit():
        index = int(class_)
    else:
        import difflib

        close = difflib.get_close_matches(str(class_), names, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ZooError(f"`class` must be a class index or one of the model's labels.{hint} Received: class={class_!r}")
    if not 0 <= index < len(names):
        raise ZooError(f"`class` must be an index from 0 to {len(names) - 1}. Received: class={class_!r}")
    return index


def explain(model_or_run, images, method="gradcam", class_=None, layer=None, weights="default", labels=None,
            batch_size=16, samples=25, noise=0.15, steps=32, seed=0):
    """Where the model looked to score a class, for each image.

    Args:
        model_or_run: a `keras.Model` (uint8 or float RGB in, class scores out), a run
            directory (`zoo finetune`), a `.keras` file, or a registry model name.
        images: a path, a folder, or a list of paths, PIL images or `(H, W, 3)` arrays.
        method: str. `"gradcam"`, `"gradcam++"`, `"saliency"`, `"smoothgrad"` or
            `"integrated-gradients"`. Defaults to `"gradcam"`.
        class_: int, str, a list of them (one per image) or None. The class to
            explain, as an index or a label. Defaults to each image's predicted class.
        layer: str or None. The layer Grad-CAM looks at (any depth of nesting).
            Defaults to the last convolutional block.
        weights: the registry weights for a named model. Defaults to its default.
        labels: list of str or None. Class names; defaults to the run's or registry's.
        batch_size: int. Images (or noisy copies, path points) per gradient. Defaults
            to `16`.
        samples, noise: SmoothGrad's copies (25) and noise σ as a fraction of the
            pixel range (0.15).
        steps: int. Integrated gradients' points on the path from black. Defaults to `32`.
        seed: int. SmoothGrad's noise. Defaults to `0`.

    Returns:
        An `Explanation`; `np.asarray(result)` is the maps `(N, H, W)` in [0, 1].
    """
    from zoo.data.pillow import image_items, load_many, results_in_order
    from zoo.tasks.classify import class_names, file_loader

    method = attribution.check_method(method)
    model, run_classes, name = resolve_model(model_or_run, weights)
    images = image_items(images)
    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    num_outputs = int(model.outputs[0].shape[-1])
    names = class_names(model, name, labels if labels is not None else run_classes, num_outputs)

    loaded, errors = {}, {}
    for index, array, error in load_many(images, size, load_file=file_loader()):
        if error is not None:
            errors[index] = error
        else:
            loaded[index] = array
    order = [i for i in range(len(images)) if i in loaded]
    pixels = np.stack([loaded[i] for i in order]) if order else np.zeros((0, *size, 3), "uint8")
    layer_name = None
    if not order:
        maps = np.zeros((0, *size), "float32")
        probabilities = np.zeros((0, num_outputs), "float32")
    else:
        forward = attribution.Forward(model)
        probabilities = forward.probabilities(pixels.astype("float32"), batch_size=batch_size)
        predicted = probabilities.argmax(axis=-1)
        if class_ is None:
            chosen = predicted
        elif isinstance(class_, (list, tuple, np.ndarray)):
            if len(class_) != len(images):
                raise ZooError(f"`class_` as a list needs one class per image ({len(images)}). "
                               f"Received: {len(class_)} classes")
            chosen = np.asarray([class_index(class_[i], names) for i in order])
        else:
            chosen = np.full(len(order), class_index(class_, names))
        if method in attribution.CAM_METHODS:
            from zoo.interpret.graph import find_layer, last_conv_layer, output_rank, spatial_layer_names

            layer = find_layer(model, layer) if layer is not None else last_conv_layer(model)
            if output_rank(layer) != 4:  # a CAM weighs the channels of a map: a Dense output has none
                raise ZooError(f"`layer` {layer.name} has no spatial output (rank {output_rank(layer)}); "
                               f"{method} needs a 4-D layer, e.g. {', '.join(spatial_layer_names(model)[-4:])}")
            layer_name = layer.name
        raw = attribution.attribute(model, pixels.astype("float32"), chosen, method=method, layer=layer,
                                    samples=samples, noise=noise, steps=steps, batch_size=batch_size, seed=seed)
        maps = attribution.normalise(attribution.resize_maps(raw, size))

    def explained(row, index, item):
        scores, heatmap = probabilities[row], maps[row]
        class_id = int(chosen[row])
        best = int(np.argmax(scores))
        y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
        width, height = _original_size(item, size)
        return {
            "method": method,
            "class_id": class_id,
            "label": names[class_id],
            "probability": float(scores[class_id]),
            "predicted_id": best,
            "predicted": names[best],
            "predicted_probability": float(scores[best]),
            # Pixel centres scaled to the original image (zoo resizes without cropping).
            "peak": {"x": int((x + 0.5) * width / size[1]), "y": int((y + 0.5) * height / size[0]),
                     "value": float(heatmap[y, x])},
        }

    results = results_in_order(images, errors, explained)
    return Explanation(method=method, maps=maps, images=pixels, results=results, originals=list(images),
                       layer=layer_name)


def _original_size(item, size):
    """`(width, height)` of the image as given (read from the file's header only)."""
    if isinstance(item, (str, os.PathLike)):
        try:
            from PIL import Image

            with Image.open(item) as image:
                return image.size
        except Exception:  # noqa: BLE001 - it was readable a moment ago; fall back to the model's size
            return size[1], size[0]
    if isinstance(item, np.ndarray):
        return item.shape[1], item.shape[0]
    if hasattr(item, "size"):
        return tuple(item.size)
    return size[1], size[0]


MAX_DISPLAY = 512


def _display_image(original, model_view):
    """The photo to draw the map on: the original, at most `MAX_DISPLAY` pixels a side
    (the map is stretched to it; zoo resizes without cropping, so they line up)."""
    from PIL import Image

    try:
        if isinstance(original, (str, os.PathLike)):
            from zoo.data.pillow import load_rgb

            image = Image.fromarray(load_rgb(original))
        elif isinstance(original, np.ndarray):
            image = Image.fromarray(np.asarray(original, "uint8"))
        elif isinstance(original, Image.Image):
            image = original.convert("RGB")
        else:
            return model_view
    except Exception:  # noqa: BLE001 - what the model saw is still worth showing
        return model_view
    if max(image.size) > MAX_DISPLAY:
        image.thumbnail((MAX_DISPLAY, MAX_DISPLAY), Image.BILINEAR)
    return np.asarray(image)


def _overlay_name(image, index, method, used):
    stem = Path(str(image)).stem if not str(image).startswith("#") else f"image{index}"
    name = f"{stem}.{method}.png"
    number = 2
    while name in used:  # two photos called cat.jpg in different folders
        name = f"{stem}-{number}.{method}.png"
        number += 1
    used.add(name)
    return name
