"""Reading images with Pillow: anything it opens becomes uint8 RGB.

Used where zoo reads a handful of files in Python (classify, predict, plots); the
tf.data pipelines beside it (`zoo.data.images`) decode inside the graph instead and use
it only for the files TensorFlow cannot decode. Needs no TensorFlow.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from zoo.errors import DataError


DEFAULT_MAX_PIXELS = 50_000_000  # an 8K photo is 33 Mpx; a decoded 50 Mpx image is ~150 MB


def max_pixels():
    """The most pixels zoo decodes in one image: `$ZOO_MAX_IMAGE_PIXELS`, default 50 M.

    A 62 KiB PNG can claim 23000 x 23000 pixels and cost gigabytes once decoded, so the
    size in the header is checked before any pixel is.
    """
    value = os.environ.get("ZOO_MAX_IMAGE_PIXELS")
    try:
        return int(value) if value else DEFAULT_MAX_PIXELS
    except ValueError:
        raise DataError(f"ZOO_MAX_IMAGE_PIXELS must be a whole number of pixels. Received: {value!r}") from None


def open_image(path):
    """`PIL.Image.open(path)` without Pillow's DecompressionBombWarning: zoo's own limit
    (`check_pixel_count`, checked by every caller before decoding) names the file in one
    line, and Pillow's warning would print two more before it."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def check_pixel_count(image, name):
    """Raise `DataError` naming `name` when the opened (not yet decoded) `image` claims
    more pixels than `max_pixels()`."""
    width, height = image.size
    limit = max_pixels()
    if width * height > limit:
        raise DataError(f"{name}: claims {width}x{height} = {width * height:,} pixels, more than the limit of "
                        f"{limit:,} (set ZOO_MAX_IMAGE_PIXELS to allow more)")


def to_rgb(image):
    """A PIL image of any mode (L, LA, P, RGBA, CMYK, I;16, I, F) as an RGB PIL image.

    Transparent pixels are composited onto white (what a viewer shows), and 16-bit or
    float images are scaled down to 8 bits instead of being clipped to white.
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype="float64")
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F" and array.max() <= 1.0:
            high = 1.0
        array = np.clip(array / high * 255.0, 0, 255).round().astype("uint8")
        return Image.fromarray(array, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def load_rgb(path, size=None, resample="bilinear"):
    """Read an image file as a uint8 `(H, W, 3)` array, resized to `size=(H, W)` if given.

    Raises:
        DataError: naming the file, when it is missing, not an image, or truncated.
    """
    import stat

    from PIL import Image, UnidentifiedImageError

    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError as error:
        raise DataError(f"{path}: no such file") from error
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from error
    if not regular:  # a FIFO or device would block the reader forever
        kind = "a folder" if os.path.isdir(path) else "not a regular file (a pipe, socket or device)"
        raise DataError(f"{path}: {kind}, not an image file")
    try:
        with open_image(path) as image:
            check_pixel_count(image, path)
            if size is not None and image.format == "JPEG":
                # libjpeg can decode at 1/2, 1/4 or 1/8 scale (DCT-domain downscaling):
                # a large photo then costs a fraction of a full decode. draft() keeps the
                # image at least this big; the side is the larger target side, so an
                # EXIF rotation cannot leave one dimension short.
                side = max(size)
                image.draft(image.mode, (side, side))
            image.load()  # decode now, so a truncated file fails here, not later
            rgb = to_rgb(image)
    except DataError:
        raise  # check_pixel_count's own line, naming the file (a DataError is a ValueError too)
    except FileNotFoundError as error:
        raise DataError(f"{path}: no such file") from error
    except UnidentifiedImageError as error:
        raise DataError(f"{path}: not an image Pillow can read") from error
    except Image.DecompressionBombError as error:
        raise DataError(f"{path}: too many pixels ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: unreadable image ({error})") from error
    if size is not None:
        height, width = size
        if rgb.size != (width, height):
            method = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[resample]
            rgb = rgb.resize((width, height), method)
    return np.asarray(rgb, dtype="uint8")


def load_item(item, size, index=0):
    """One path / PIL image / `(H, W, 3)` array as a uint8 `(H, W, 3)` array of `size`
    (None: its own size).

    Raises:
        DataError: naming the file (or `image #index`), when it cannot be used.
    """
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        return load_rgb(item, size)
    if isinstance(item, Image.Image):
        check_pixel_count(item, f"image #{index}")
        rgb = to_rgb(item)
        if size is not None and rgb.size != (size[1], size[0]):
            rgb = rgb.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(rgb, dtype="uint8")
    array = np.asarray(item)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DataError(f"image #{index}: expected an (H, W, 3) array, got shape {array.shape}")
    if size is not None and array.shape[:2] != tuple(size):
        pil = Image.fromarray(np.clip(array, 0, 255).astype("uint8"))
        array = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
    return array.astype("uint8")


def load_many(images, size, workers=None, load_file=None):
    """Yield `(index, array or None, error or None)` in input order, decoding ahead.

    Files are decoded on a small thread pool (Pillow releases the GIL while decoding
    and resizing), so a caller that runs a model on the first images overlaps with the
    decoding of the next ones. `load_file(path, size)`, when given, reads the files
    (arrays and PIL images still go through `load_item`).
    """
    import concurrent.futures

    def task(index, item):
        if is_empty_folder(item):
            return index, None, no_images_in(item)
        try:
            if load_file is not None and isinstance(item, (str, os.PathLike)):
                return index, load_file(item, size), None
            return index, load_item(item, size, index), None
        except DataError as error:
            return index, None, str(error)

    images = list(images)
    if len(images) <= 1:
        yield from (task(i, item) for i, item in enumerate(images))
        return
    workers = workers or min(4, os.cpu_count() or 1, len(images))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="zoo-decode") as pool:
        futures = [pool.submit(task, i, item) for i, item in enumerate(images)]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def results_in_order(images, errors, describe):
    """One dict per image, in input order, for callers of `load_many`.

    An image that loaded gets `{"image": its name, **describe(row, index, item)}`, where
    `row` counts only the images that loaded (their row in the batch the caller ran);
    one that did not gets `{"image", "error"}`, so a bad file costs one entry, not the
    call. A path is named as given, anything else as `#index`.
    """
    results, row = [], 0
    for index, item in enumerate(images):
        shown = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"#{index}"
        if index in errors:
            results.append({"image": shown, "error": errors[index]})
            continue
        results.append({"image": shown, **describe(row, index, item)})
        row += 1
    return results


def as_batch(images, size):
    """Load paths / arrays / PIL images into one uint8 batch.

    Returns:
        `(batch, errors)`: batch of the images that loaded, in order, and
        `{index: message}` for those that did not.
    """
    loaded, errors = [], {}
    for index, array, error in load_many(images, size):
        if error is None:
            loaded.append(array)
        else:
            errors[index] = error
    if loaded:
        batch = np.stack(loaded)
    else:
        batch = np.zeros((0, *size, 3), dtype="uint8")
    return batch, errors


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def image_items(images):
    """What `classify` or `explain` was given, as a list of items: one path, PIL image
    or `(H, W, C)` array becomes a list of one, a `(N, H, W, C)` batch a list of N, and
    each folder the image files under it."""
    if isinstance(images, (str, os.PathLike)) or _is_one_image(images):
        images = [images]
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    return expand_folders(images)


def _is_one_image(images):
    """A single PIL image or `(H, W, C)` array, as opposed to a list of images."""
    if isinstance(images, np.ndarray):
        return images.ndim == 3
    from PIL import Image

    return isinstance(images, Image.Image)


def is_empty_folder(item):
    """A folder `expand_folders` kept because it holds no image files."""
    return isinstance(item, (str, os.PathLike)) and os.path.isdir(item)


def no_images_in(folder):
    return f"{os.fspath(folder)}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})"


def expand_folders(items):
    """`items` with each folder replaced by the image files under it (sorted, hidden
    files and other suffixes left out), or kept when it holds none; paths that are not
    folders stay as they are."""
    expanded = []
    for item in items:
        if isinstance(item, (str, os.PathLike)) and os.path.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, f) for f in sorted(files)
                             if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES))
            # A folder with no images stays, to be reported as such (`load_many`): a
            # command given only empty folders must not succeed having done nothing.
            expanded.extend(found or [item])
        else:
            expanded.append(item)
    return expanded

