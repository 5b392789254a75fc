"""PNG plots of what people would rather see than read: curves, confusions, top losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    """Lay out, write atomically, and free the figure."""
    import matplotlib.pyplot as plt

    from zoo import io

    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def image_array(path):
    """A PNG written here as a uint8 `(H, W, 3)` array (for TensorBoard image summaries)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def curve_series(history, metric, step_history=None):
    """What one panel of `plot_history` draws: `{label: (x, y)}` in epochs — the
    per-epoch train and validation values of `metric` at `epoch`, and its per-step
    train values (`step_history`, see `zoo.training.HistoryWriter`) inside the epochs,
    at `at` — so a run of one epoch still draws a curve, not a lone point."""
    series = {}
    steps = [s for s in step_history or () if s.get(metric) is not None]
    if steps:
        series[f"train {metric} (per step)"] = ([s["at"] for s in steps], [s[metric] for s in steps])
    for prefix in ("", "val_"):
        points = [(h["epoch"], h[prefix + metric]) for h in history if h.get(prefix + metric) is not None]
        if points:
            series[("validation " if prefix else "train ") + metric] = tuple(map(list, zip(*points)))
    return series


def plot_history(history, path, best_epoch=None, metrics=("loss", "accuracy"), step_history=None):
    """`metrics` per epoch (train and validation; loss and accuracy unless a task plots
    others) with the training values within each epoch (`step_history`) drawn between
    them, the unfreeze and the kept (best) epoch marked."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, (x, y) in curve_series(history, metric, step_history).items():
            if label.endswith("(per step)"):
                ax.plot(x, y, "-", color="tab:blue", lw=0.8, alpha=0.45, label=label)
            elif label.startswith("validation"):
                ax.plot(x, y, "--s", color="tab:orange", label=label)
            else:
                ax.plot(x, y, "-o", color="tab:blue", label=label)
        unfrozen = [h["epoch"] for h in history if h.get("phase") == 2]
        if unfrozen and len(unfrozen) < len(epochs):
            ax.axvline(unfrozen[0] - (1.0 if step_history else 0.5), color="gray", lw=1, ls=":")
            ax.text(unfrozen[0] - (0.95 if step_history else 0.45), ax.get_ylim()[1], " unfrozen", va="top",
                    fontsize=8, color="gray")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="seagreen", lw=1, ls="--", label=f"kept: epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, path)


def confusion_matrix(y_true, y_pred, num_classes):
    matrix = np.zeros((num_classes, num_classes), dtype="int64")
    np.add.at(matrix, (np.asarray(y_true, "int64"), np.asarray(y_pred, "int64")), 1)
    return matrix


def plot_confusion_matrix(matrix, classes, path):
    plt = _pyplot()
    n = len(classes)
    size = max(3.5, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black", fontsize=9)
    ax.set_title(f"confusion matrix ({int(np.trace(matrix))}/{int(matrix.sum())} right)")
    return _save(fig, path)


def heat_overlay(image, heatmap, alpha=0.45, cmap="jet"):
    """`image` (uint8 `(H, W, 3)`) with `heatmap` (`(h, w)`, 0..1, stretched to the
    image) blended over it in `cmap` colours, weighted by the heat, as uint8."""
    import matplotlib
    from PIL import Image

    image = np.asarray(image, dtype="uint8")
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    height, width = image.shape[:2]
    heat = np.asarray(Image.fromarray(np.asarray(heatmap, "float32"), mode="F").resize((width, height),
                                                                                        Image.BILINEAR))
    heat = np.clip(heat, 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](heat)[..., :3] * 255.0
    # Cold regions stay mostly photo, hot ones mostly colour: the photo stays readable.
    weight = alpha * (0.35 + 0.65 * heat)[..., None]
    return np.clip(image * (1.0 - weight) + colours * weight, 0, 255).astype("uint8")


def plot_explanation(image, heatmap, title, path, peak=None):
    """The photo beside the photo with its heat map, the map's peak (`(x, y)` as
    fractions of the width and height) marked with a cross."""
    plt = _pyplot()
    image = np.asarray(image, dtype="uint8")
    aspect = image.shape[1] / max(1, image.shape[0])
    fig, axes = plt.subplots(1, 2, figsize=(2 * 3.6 * aspect + 0.6, 3.9))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(heat_overlay(image, heatmap))
    axes[1].set_title("where it looked", fontsize=9)
    if peak is not None:  # as fractions of the width and height
        axes[1].plot([peak[0] * image.shape[1]], [peak[1] * image.shape[0]], "w+", markersize=12,
                     markeredgewidth=2)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_top_losses(images, y_true, probabilities, classes, path, k=9, heatmaps=None, names=None):
    """The `k` validation images the model got most wrong, with predicted/actual labels;
    with `heatmaps`, each drawn over its image (where the model looked for the class it
    predicted); with `names`, each titled `class/file` (`file_title`)."""
    plt = _pyplot()
    probabilities = np.asarray(probabilities)
    y_true = np.asarray(y_true, "int64")
    losses = -np.log(np.clip(probabilities[np.arange(len(y_true)), y_true], 1e-12, 1.0))
    order = np.argsort(-losses)[:k]
    cols = min(3, len(order)) or 1
    rows = int(np.ceil(len(order) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, (4.0 if names is not None else 3.4) * rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, index in zip(axes.ravel(), order):
        predicted = int(np.argmax(probabilities[index]))
        image = np.asarray(images[index], dtype="uint8")
        ax.imshow(heat_overlay(image, heatmaps[index]) if heatmaps is not None else image)
        name = f"{file_title(names[index])}\n" if names is not None else ""
        ax.set_title(
            f"{name}{classes[predicted]} / {classes[y_true[index]]}\n"
            f"loss {losses[index]:.2f}, p={probabilities[index, y_true[index]]:.2f}",
            fontsize=8, color="black" if predicted == y_true[index] else "firebrick",
        )
    heat = "; Grad-CAM of the predicted class" if heatmaps is not None else ""
    fig.suptitle(f"top losses: predicted / actual, loss, probability of actual{heat}", fontsize=9)
    return _save(fig, path)


def file_title(name):
    """An image's title: its folder and file name (`photos/cat/10.jpg` -> `cat/10.jpg`),
    which tells `cat/10.jpg` from `coffee/10.jpg`; a name without a folder stays as it is."""
    path = Path(str(name))
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def plot_lr_find(result, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    labels = {"valley": "valley (suggested)", "minimum": "lowest loss ÷ 10", "steep": "steepest descent"}
    for name, lr in result.suggestions.items():
        ax.axvline(lr, ls="--", lw=1, color={"valley": "red", "minimum": "green", "steep": "orange"}.get(name, "gray"),
                   label=f"{labels.get(name, name)}: {lr:.1e}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def tile(images, columns=None, pad=2):
    """uint8 images `(N, H, W, C)` laid out as one uint8 `(rows*H, columns*W, 3)` array
    (a sample grid; also what TensorBoard gets)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    count, height, width = images.shape[:3]
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), 255, dtype="uint8")
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top:top + height, left:left + width] = image
    return grid


def save_image(array, path, scale=1):
    """Write a uint8 image array as a PNG, atomically, enlarged `scale` times (nearest:
    28-pixel digits stay crisp)."""
    from PIL import Image

    from zoo import io

    image = Image.fromarray(np.asarray(array, dtype="uint8"))
    if scale != 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    with io.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def plot_image_rows(rows, path, title=None):
    """Labelled rows of images (e.g. noisy / denoised / clean), one PNG."""
    plt = _pyplot()
    names = list(rows)
    columns = max(len(np.asarray(rows[n])) for n in names)
    fig, axes = plt.subplots(len(names), columns, figsize=(1.1 * columns, 1.2 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        images = np.asarray(rows[name])
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                image = images[c]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
        axes[r][0].text(-0.1, 0.5, name, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_batch(images, labels, classes, path, title=None):
    """A grid of training images titled with their labels (fastai's `show_batch`):
    `labels` are class ids, or label distributions (MixUp, CutMix), titled with each
    class that has a share, largest first (`cat 0.70 / dog 0.30`)."""
    plt = _pyplot()
    images, labels = np.asarray(images), np.asarray(labels)
    cols = min(4, len(images)) or 1
    rows = int(np.ceil(len(images) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, label in zip(axes.ravel(), images, labels):
        ax.imshow(np.asarray(image, dtype="uint8").squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        if np.ndim(label) == 0:
            text = classes[int(label)]
        else:
            shares = sorted(((float(s), i) for i, s in enumerate(label) if s > 0.005), reverse=True)
            text = " / ".join(f"{classes[i]} {s:.2f}" for s, i in shares[:3])
        ax.set_title(text, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_segmentation(images, truths, predictions, colours, path, titles=None, ignore_index=255, classes=None):
    """Three rows: the images, their masks and the model's, the classes in `colours`
    (uint8 `(K, 3)` or more) and ignored pixels white; one column per image, titled
    with `titles`; a legend of `classes` below."""
    plt = _pyplot()
    colours = np.asarray(colours, dtype="uint8")

    def coloured(mask):
        mask = np.asarray(mask)
        shown = colours[np.minimum(mask, len(colours) - 1)]
        shown[mask == ignore_index] = 255
        return shown

    count = len(images)
    fig, axes = plt.subplots(3, count, figsize=(2.4 * count, 7.6), squeeze=False)
    for column in range(count):
        for row, (picture, label) in enumerate(((images[column], "image"), (coloured(truths[column]), "truth"),
                                                (coloured(predictions[column]), "prediction"))):
            ax = axes[row][column]
            ax.imshow(np.asarray(picture, dtype="uint8"))
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(label)
        if titles:
            axes[0][column].set_title(titles[column], fontsize=8)
    if classes:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=colours[i] / 255.0, edgecolor="0.5", label=name) for i, name in enumerate(classes)]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
        fig.subplots_adjust(bottom=0.08)
    return _save(fig, path)
