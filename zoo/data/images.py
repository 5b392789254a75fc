"""Image folders as tf.data pipelines of uint8 RGB batches.

    train, val, classes = zoo.data.image_folder("photos/", image_size=(224, 224))
    print(zoo.data.image_folder("photos/", (224, 224)).report)   # what was skipped, and why

`photos/` holds one sub-folder per class. Every file is checked with Pillow before a
dataset is built, so a truncated, empty or non-image file is skipped and reported
instead of stopping training halfway through an epoch. Images stay uint8 all the way:
normalisation is the model's first layer (`zoo.architectures.preprocessing`).
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from zoo.errors import DataError

RESIZE_MODES = ("squish", "crop")
# In-memory cache budget for `cache="auto"`: decoded uint8 images up to this size are
# kept after the first epoch, so later epochs skip decoding entirely.
CACHE_BUDGET_BYTES = 1_500_000_000
# Format/mode pairs that `tf.io.decode_image(channels=3)` turns into the same pixels as
# Pillow's conversion. Everything else (CMYK, 16-bit grey, alpha, EXIF-rotated, TIFF,
# WebP, BMP, GIF ...) is decoded with Pillow through `zoo.data.pillow.load_rgb`.
_TF_DECODABLE = {
    ("JPEG", "RGB"),
    ("JPEG", "L"),
    ("MPO", "RGB"),  # camera JPEGs with a second picture appended; TF reads the first
    ("PNG", "RGB"),
    ("PNG", "L"),
    ("PNG", "P"),
}
_PROGRESS_ABOVE = 2000


@dataclass(frozen=True)
class Skipped:
    """A file left out of the dataset, and why."""

    path: str
    reason: str

    def __str__(self):
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class FileCheck:
    """What the up-front check learned about one file.

    Attributes:
        path: str.
        ok: bool. Pillow decoded it completely.
        reason: str. Why not, when `ok` is False.
        pillow: bool. Decode it with Pillow rather than TensorFlow (CMYK, 16-bit,
            alpha, EXIF rotation, formats TF does not read).
        format: str or None. Pillow's format name (`"JPEG"`).
        mode: str or None. Pillow's mode before conversion (`"CMYK"`, `"I;16"`).
    """

    path: str
    ok: bool
    reason: str = ""
    pillow: bool = False
    format: str | None = None
    mode: str | None = None


def check_image(path):
    """Open `path` with Pillow and decode it fully; never raises for a bad file.

    JPEGs are decoded at 1/8 scale (Pillow's draft mode): every byte of the
    entropy-coded data is still read, so truncation is caught, at a fraction of the
    cost of a full decode.

    Returns:
        A `FileCheck`.
    """
    from PIL import Image, UnidentifiedImageError

    import stat

    path = os.fspath(path)
    try:
        info = os.stat(path)
    except OSError as error:
        return FileCheck(path, False, f"cannot read ({error.strerror or error})")
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or a device would block the reader forever, or never end.
        return FileCheck(path, False, "not a regular file (a pipe, socket or device)")
    size = info.st_size
    if size == 0:
        return FileCheck(path, False, "empty file (0 bytes)")
    from zoo.data.pillow import check_pixel_count, open_image

    try:
        with open_image(path) as image:
            check_pixel_count(image, path)
            fmt, mode = image.format, image.mode
            transparent = "transparency" in image.info
            rotated = False
            if fmt in ("JPEG", "MPO"):
                try:
                    rotated = image.getexif().get(0x0112, 1) not in (None, 1)
                except Exception:  # a broken EXIF block is no reason to drop a photo
                    rotated = False
                image.draft(None, (1, 1))
            image.load()
    except UnidentifiedImageError:
        return FileCheck(path, False, "not an image (Pillow cannot identify the format)")
    except Image.DecompressionBombError as error:
        return FileCheck(path, False, f"too many pixels ({error})")
    except DataError as error:
        return FileCheck(path, False, str(error).removeprefix(f"{path}: "))
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        message = str(error) or type(error).__name__
        if "truncated" in message.lower() or isinstance(error, EOFError):
            return FileCheck(path, False, f"truncated image ({message})")
        return FileCheck(path, False, f"corrupt image ({message})")
    pillow = (fmt, mode) not in _TF_DECODABLE or transparent or rotated
    return FileCheck(path, True, pillow=pillow, format=fmt, mode=mode)


def check_files(paths, workers=None, verbose=True):
    """`check_image` over many files in a thread pool (Pillow decodes without the GIL).

    Args:
        paths: list of paths.
        workers: int or None. Threads. Defaults to `min(8, 2 * cpu_count)`.
        verbose: bool. Show a progress bar when there are more than 2,000 files.

    Returns:
        A list of `FileCheck`, in the order of `paths`.
    """
    paths = list(paths)
    if not paths:
        return []
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    progress = None
    if verbose and len(paths) > _PROGRESS_ABOVE:
        import keras

        print(f"Checking {len(paths)} files...")
        progress = keras.utils.Progbar(len(paths), unit_name="file")
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index, result in enumerate(pool.map(check_image, paths, chunksize=16)):
            results.append(result)
            if progress is not None and (index + 1) % 256 == 0:
                progress.update(index + 1)
    if progress is not None:
        progress.update(len(paths), finalize=True)
    return results


@dataclass
class ImageFolderReport:
    """What `image_folder` found: the classes, the split, and the files it skipped.

    `str(report)` is a readable summary with one `path: reason` line per skipped file.

    Attributes:
        root: str. The folder.
        classes: list of str. Class names (sub-folder names, sorted); label `i` is
            `classes[i]`.
        train_files, val_files: lists of str. Paths in each split, unshuffled
            (by class, then by name).
        train_labels, val_labels: int numpy arrays, aligned with the file lists.
        skipped: list of `Skipped` (path and reason).
        pillow_files: set of str. Files decoded with Pillow instead of TensorFlow.
        image_size: `(height, width)`. resize: str. Settings the datasets use.
    """

    root: str
    classes: list
    train_files: list
    train_labels: np.ndarray
    val_files: list
    val_labels: np.ndarray
    skipped: list = field(default_factory=list)
    pillow_files: set = field(default_factory=set)
    image_size: tuple = (224, 224)
    resize: str = "squish"

    @property
    def num_train(self):
        return len(self.train_files)

    @property
    def num_val(self):
        return len(self.val_files)

    @property
    def counts(self):
        """`{class name: (train images, validation images)}`."""
        train = np.bincount(self.train_labels, minlength=len(self.classes))
        val = np.bincount(self.val_labels, minlength=len(self.classes))
        return {name: (int(train[i]), int(val[i])) for i, name in enumerate(self.classes)}

    def dataset(self, subset="train", batch_size=32, shuffle=False, augment=False, seed=0, cache=False):
        """One split as a dataset, by default unshuffled and un-augmented.

        This is the deterministic order of `train_files` / `val_files`: what a loop
        that computes features once (and reuses them every epoch) needs.
        """
        if subset not in ("train", "validation", "val"):
            raise ValueError(
                f"`subset` must be 'train' or 'validation'. Received: subset={subset!r}"
            )
        files, labels = (
            (self.train_files, self.train_labels)
            if subset == "train"
            else (self.val_files, self.val_labels)
        )
        return from_files(
            files, labels, self.image_size, batch_size=batch_size, resize=self.resize,
            shuffle=shuffle, augment=augment, seed=seed, cache=cache,
            pillow_files=self.pillow_files,
        )

    def __str__(self):
        lines = [
            f"{self.root}: {len(self.classes)} classes, {self.num_train} training and "
            f"{self.num_val} validation images, {len(self.skipped)} skipped"
        ]
        for name, (train, val) in self.counts.items():
            lines.append(f"  {name}: {train} train, {val} validation")
        if self.skipped:
            lines.append("Skipped:")
            lines.extend(f"  {item}" for item in self.skipped)
        return "\n".join(lines)


class ImageFolder(tuple):
    """`(train, val, classes)`, with the full `ImageFolderReport` as `.report`.

    Unpacks as three values; `.train`, `.val`, `.classes` and `.report` name them.
    """

    def __new__(cls, train, val, classes, report):
        self = super().__new__(cls, (train, val, classes))
        self.report = report
        return self

    train = property(lambda self: self[0])
    val = property(lambda self: self[1])
    classes = property(lambda self: self[2])

    def __repr__(self):
        return f"ImageFolder(train={self[0]!r}, val={self[1]!r}, classes={self[2]!r})"


def check_image_size(image_size):
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        height, width = (int(v) for v in image_size)
        valid = height > 0 and width > 0 and all(int(v) == v for v in image_size)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "`image_size` must be a positive int or a (height, width) pair of positive "
            f"ints. Received: image_size={image_size!r}"
        )
    return height, width


def _list_classes(root):
    if not os.path.isdir(root):
        raise DataError(f"{root}: not a folder. `image_folder` needs a folder with one sub-folder per class.")
    classes = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    return classes


def _contains(outer, inner):
    """Whether real path `outer` is `inner` or a folder above it."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _list_files(folder, seen, duplicates):
    """Every regular image file under `folder`, each real file once.

    Links are followed, but each real directory is entered once (a symlink loop would
    otherwise list every image dozens of times) and each real file is listed once for
    the whole folder (`seen`, shared across classes): the same photo reached twice
    could land in both the training and the validation split. Later copies go into
    `duplicates` as `(path, first path)`. Hidden files (.DS_Store, ._photo.jpg from
    macOS) are never images a user meant to train on: they are left out, not reported.
    """
    files, entered = [], set()
    top = os.path.realpath(folder)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            real = os.stat(dirpath)
        except OSError:
            continue
        if (real.st_dev, real.st_ino) in entered:
            dirnames[:] = []
            continue
        entered.add((real.st_dev, real.st_ino))
        # A link to the class folder itself or to a folder above it is a loop (it would
        # pull in the other classes too): it is not followed.
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".")
            and not _contains(os.path.realpath(os.path.join(dirpath, d)), top)
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            try:
                key = os.stat(path)
            except OSError:
                files.append(path)  # a dangling link: check_image reports it
                continue
            identity = (key.st_dev, key.st_ino)
            if identity in seen:
                duplicates.append((path, seen[identity]))
                continue
            seen[identity] = path
            files.append(path)
    return files


def _with_val_dir(path, val_dir, seed, verbose, image_size, resize):
    """The report of a training folder and a separate validation folder: each scanned
    on its own (no split), the validation labels mapped to the training classes."""
    train = scan_folder(path, validation_split=0, seed=seed, verbose=verbose, image_size=image_size, resize=resize)
    val = scan_folder(val_dir, validation_split=0, seed=seed, verbose=verbose, image_size=image_size, resize=resize,
                      min_classes=1)
    unknown = sorted(set(val.classes) - set(train.classes))
    if unknown:
        raise DataError(f"{os.fspath(val_dir)}: validation class{'es' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown))} not among the training classes of {os.fspath(path)} "
                        f"({', '.join(train.classes)})")
    labels = np.array([train.classes.index(val.classes[i]) for i in val.train_labels], dtype=train.train_labels.dtype)
    return dataclasses.replace(train, val_files=list(val.train_files), val_labels=labels,
                               skipped=[*train.skipped, *val.skipped],
                               pillow_files=set(train.pillow_files) | set(val.pillow_files))


def scan_folder(path, validation_split=0.2, seed=0, verbose=True, image_size=(224, 224), resize="squish",
                min_classes=2):
    """Check every file under `path` and split them per class; builds no dataset.

    Raises:
        DataError: the folder is missing or empty, has fewer than two classes, or a
            class has too few usable images to be in both splits.

    Returns:
        An `ImageFolderReport`.
    """
    root = os.fspath(path)
    if not 0 <= validation_split < 1:
        raise ValueError(
            "`validation_split` must be in [0, 1). "
            f"Received: validation_split={validation_split!r}"
        )
    classes = _list_classes(root)
    seen, duplicates = {}, []
    per_class = [_list_files(os.path.join(root, name), seen, duplicates) for name in classes]
    if not any(per_class):
        raise DataError(
            f"{root}: no images found. `image_folder` needs one sub-folder per class, "
            "each holding that class's images."
        )
    if len(classes) < min_classes:
        raise DataError(
            f"{root}: found only one class ({classes[0]!r}); a classifier needs at least "
            "two sub-folders, one per class."
        )
    checks = check_files([f for files in per_class for f in files], verbose=verbose)
    skipped = [Skipped(c.path, c.reason) for c in checks if not c.ok]
    skipped += [Skipped(path, f"the same file as {first} (listed once)") for path, first in duplicates]
    pillow_files = {c.path for c in checks if c.ok and c.pillow}
    good = {c.path for c in checks if c.ok}

    minimum = 2 if validation_split > 0 else 1
    rng = np.random.default_rng(seed)
    train_files, train_labels, val_files, val_labels = [], [], [], []
    for label, (name, files) in enumerate(zip(classes, per_class)):
        usable = [f for f in files if f in good]
        if len(usable) < minimum:
            why = (
                "one for training and one for validation"
                if minimum == 2
                else "one for training"
            )
            raise DataError(
                f"{os.path.join(root, name)}: class {name!r} has {len(usable)} usable "
                f"image(s) ({len(files) - len(usable)} skipped); it needs at least "
                f"{minimum}: {why}."
            )
        # Split each class on its own so every class is in both splits, in the same
        # proportion; the permutation depends only on the seed and the sorted names.
        order = rng.permutation(len(usable))
        num_val = 0
        if validation_split > 0:
            num_val = min(max(1, round(len(usable) * validation_split)), len(usable) - 1)
        val_idx = set(order[:num_val].tolist())
        for index, file in enumerate(usable):
            if index in val_idx:
                val_files.append(file)
                val_labels.append(label)
            else:
                train_files.append(file)
                train_labels.append(label)
    report = ImageFolderReport(
        root=root,
        classes=classes,
        train_files=train_files,
        train_labels=np.asarray(train_labels, dtype="int32"),
        val_files=val_files,
        val_labels=np.asarray(val_labels, dtype="int32"),
        skipped=skipped,
        pillow_files=pillow_files,
        image_size=tuple(image_size),
        resize=resize,
    )
    if verbose:
        print(
            f"Found {report.num_train + report.num_val} images in {len(classes)} classes "
            f"({report.num_train} train, {report.num_val} validation); "
            f"skipped {len(skipped)}."
        )
        for item in skipped:
            print(f"  skipped {item}")
    return report


def _pillow_decode(path):
    from zoo.data.pillow import load_rgb

    return load_rgb(os.fsdecode(path) if isinstance(path, bytes) else path)


def _decode_jpeg_reduced(contents, image_size):
    """Decode a JPEG at 1/2, 1/4 or 1/8 scale when it is that much larger than needed.

    libjpeg scales in the DCT domain: a proper low-pass filter that also skips most of
    the decoding work, so a 12-megapixel photo bound for 224x224 costs a fraction of a
    full decode and the remaining resize is under 2x.
    """
    import tensorflow as tf

    height, width = image_size
    shape = tf.cast(tf.io.extract_jpeg_shape(contents)[:2], tf.float32)
    # The smaller factor, so neither side drops below the target.
    shrink = tf.minimum(shape[0] / height, shape[1] / width)
    index = tf.cast(shrink >= 2.0, tf.int32) + tf.cast(shrink >= 4.0, tf.int32) + tf.cast(shrink >= 8.0, tf.int32)
    branches = [
        (lambda r=r: tf.io.decode_jpeg(contents, channels=3, ratio=r)) for r in (1, 2, 4, 8)
    ]
    return tf.switch_case(index, branches)


def decode_bytes(contents, image_size, max_pixels=None):
    """Graph function: encoded JPEG/PNG/GIF/BMP/WebP bytes → uint8 `(h, w, 3)`, a JPEG at
    reduced scale when it is at least 2x the target, a GIF's first frame only.

    The size the header claims is checked against `max_pixels` (default: `$ZOO_MAX_IMAGE_PIXELS`
    when the graph is traced) before anything is decoded: `check_claimed_pixels`.
    """
    import tensorflow as tf

    with tf.control_dependencies([check_claimed_pixels(contents, max_pixels)]):  # before, not beside, decoding
        image = tf.cond(
            tf.io.is_jpeg(contents),
            lambda: _decode_jpeg_reduced(contents, image_size),
            # TF's GIF decoder reads every frame into memory even when it returns the first,
            # so a GIF goes in cut after its first frame.
            lambda: tf.io.decode_image(_first_gif_frame(contents), channels=3, expand_animations=False,
                                       dtype=tf.uint8),
        )
    image.set_shape([None, None, 3])
    return image


def decode_resize_bytes(contents, image_size, resize="squish", max_pixels=None):
    """Graph function: encoded image bytes → uint8 `(height, width, 3)`.

    The one decode-and-resize of zoo: the training pipeline, the exported bytes
    signatures and `zoo classify` / `zoo predict` all use it for ordinary JPEG and PNG
    files, so a photo scores the same locally, in `zoo serve` and in TF Serving. An
    image whose header claims more than `max_pixels` is refused before it is decoded.
    """
    return resize_uint8(decode_bytes(contents, image_size, max_pixels), image_size, resize)


def _is_jpeg_xl(encoded):
    import tensorflow as tf

    return tf.logical_or(tf.strings.substr(encoded, 0, 2) == b"\xff\x0a",
                         tf.strings.substr(encoded, 0, 12) == b"\0\0\0\x0cJXL \r\n\x87\n")


def check_claimed_pixels(encoded, max_pixels=None):
    """Graph function: an assertion that `encoded` claims at most `max_pixels` pixels
    (`claimed_pixels`; default `zoo.data.pillow.max_pixels()`, fixed when traced) and is
    not JPEG XL, whose header zoo does not read (TensorFlow decodes it; Pillow does not
    open it). Run it before decoding: it fails with InvalidArgument, one line naming the
    limit, which the servers answer with a 400."""
    import tensorflow as tf

    from zoo.data.pillow import max_pixels as pixel_limit

    limit = pixel_limit() if max_pixels is None else int(max_pixels)
    claimed = claimed_pixels(encoded)
    not_jxl = tf.debugging.Assert(tf.logical_not(_is_jpeg_xl(encoded)), [
        "the image is JPEG XL, which zoo does not decode (its size cannot be checked before decoding): "
        "send JPEG, PNG, GIF, BMP or WebP"])
    # "claims more pixels": the phrase clients and tests look for.
    within = tf.debugging.Assert(claimed <= limit, [tf.strings.format(
        f"the image claims more pixels than the limit of {limit:,} ($ZOO_MAX_IMAGE_PIXELS): "
        "width x height = {} (of an animation, its first frame)", claimed)])
    return tf.group(not_jxl, within)


def claimed_pixels(encoded):
    """Graph function: width x height from an encoded image's header, decoding nothing.

    JPEG through `tf.image.extract_jpeg_shape`; PNG, BMP and WebP from their fixed
    header fields (IHDR, BITMAPINFOHEADER, the 'VP8 ', 'VP8L' or 'VP8X' chunk); GIF
    from its logical screen or its first frame, whichever is larger (only the first
    frame is decoded: `decode_bytes`). Anything else claims 0 and is left to
    `decode_image`, which refuses unknown formats. The graph's counterpart of
    `zoo.data.pillow.check_pixel_count`; `check_claimed_pixels` checks it.
    """
    import tensorflow as tf

    # Every field below is in the first 32 bytes; padded, so that a short file reads zeros
    # (substr refuses an offset past the end).
    head = tf.strings.join([tf.strings.substr(encoded, 0, 32), b"\0" * 32])

    def field(offset, length, little_endian):
        raw = tf.io.decode_raw(tf.strings.substr(head, offset, length), tf.uint8)
        raw = tf.cast(raw, tf.int64)
        if little_endian:
            raw = tf.reverse(raw, [0])
        weights = tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.range(8 * (length - 1), -1, -8, dtype=tf.int64))
        return tf.reduce_sum(raw * weights)

    def at(offset, prefix):
        return tf.strings.substr(head, offset, len(prefix)) == prefix

    length = tf.strings.length(encoded)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    def png():
        return field(16, 4, False) * field(20, 4, False)

    def gif():
        screen = field(6, 2, True) * field(8, 2, True)
        frame, _ = _gif_first_image(encoded, through_data=False)
        return tf.maximum(screen, frame)

    def signed(value):  # BMP sizes are signed: a negative height means top-down rows
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

    def bmp():
        return signed(field(18, 4, True)) * signed(field(22, 4, True))

    # WebP (https://developers.google.com/speed/webp/docs/riff_container): "RIFF", size,
    # "WEBP", then the first chunk, whose payload starts at offset 20. libwebp refuses a
    # file whose first chunk is another, and a 'VP8X' canvas that differs from the image.
    def webp_lossy():  # VP8 frame header: 3-byte tag, start code, 14-bit sizes (2 bits of scale above)
        mask = tf.constant(0x3FFF, tf.int64)
        return tf.bitwise.bitwise_and(field(26, 2, True), mask) * tf.bitwise.bitwise_and(field(28, 2, True), mask)

    def webp_lossless():  # signature 0x2f, then 14 bits width - 1 and 14 bits height - 1, LSB first
        bits = field(21, 4, True)
        mask = tf.constant(0x3FFF, tf.int64)
        width = tf.bitwise.bitwise_and(bits, mask) + 1
        height = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 14), mask) + 1
        return width * height

    def webp_extended():  # flags, 3 reserved bytes, 24-bit canvas width - 1 and height - 1
        return (field(24, 3, True) + 1) * (field(27, 3, True) + 1)

    webp = tf.logical_and(at(0, b"RIFF"), at(8, b"WEBP"))
    return tf.case([
        (tf.io.is_jpeg(encoded), jpeg),
        (tf.logical_and(at(0, b"\x89PNG\r\n\x1a\n"), length >= 24), png),
        (tf.logical_and(at(0, b"GIF8"), length >= 10), gif),
        (tf.logical_and(at(0, b"BM"), length >= 26), bmp),
        (tf.logical_and(webp, tf.logical_and(at(12, b"VP8 "), length >= 30)), webp_lossy),
        (tf.logical_and(webp, tf.logical_and(at(12, b"VP8L"), length >= 25)), webp_lossless),
        (tf.logical_and(webp, tf.logical_and(at(12, b"VP8X"), length >= 30)), webp_extended),
    ], default=lambda: tf.constant(0, tf.int64), exclusive=False)


def _gif_first_image(encoded, through_data=True):
    """Graph function: `(pixels, end)` of a GIF's first image: its descriptor's width x
    height (0 when there is none) and the offset just past its data, found by walking
    the blocks (https://www.w3.org/Graphics/GIF/spec-gif89a.txt): the extensions before
    it and its data, in sub-blocks of at most 255 bytes. Stops at the trailer, at a byte
    that starts no block, at the end of the data, or with `through_data=False` at the
    image's descriptor (`end` is then meaningless)."""
    import tensorflow as tf

    data = tf.cast(tf.io.decode_raw(encoded, tf.uint8), tf.int64)
    size = tf.cast(tf.size(data), tf.int64)
    data = tf.concat([data, tf.zeros([1], tf.int64)], 0)

    def byte(offset):  # 0 past the end (the loop stops there)
        return tf.gather(data, tf.minimum(tf.cast(offset, tf.int64), size))

    def color_table(flags):  # bytes of the colour table a block's flags announce
        return tf.where(tf.bitwise.bitwise_and(flags, 0x80) > 0,
                        3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), tf.bitwise.bitwise_and(flags, 7)),
                        tf.constant(0, tf.int64))

    # mode 0: a block starts here; 1: an extension's sub-blocks; 2: the image's sub-blocks.
    def step(position, mode, pixels, done):
        value = byte(position)
        image_pixels = (byte(position + 5) + 256 * byte(position + 6)) * (byte(position + 7) + 256 * byte(position + 8))
        block = tf.where(value == 0x21, position + 2,  # introducer, label, then sub-blocks
                         position + 10 + color_table(byte(position + 9)) + 1)  # descriptor, table, LZW code size
        starts = tf.logical_or(value == 0x21, value == 0x2C)
        after_sub_block = position + 1 + value
        last = value == 0  # the terminator of a chain of sub-blocks
        return (
            tf.where(mode == 0, tf.where(starts, block, position), after_sub_block),
            tf.where(mode == 0, tf.where(value == 0x2C, tf.constant(2, tf.int64), tf.constant(1, tf.int64)),
                     tf.where(last, tf.constant(0, tf.int64), mode)),
            tf.where(tf.logical_and(mode == 0, value == 0x2C), image_pixels, pixels),
            tf.logical_or(tf.logical_and(mode == 0, tf.logical_not(starts if through_data else value == 0x21)),
                          tf.logical_and(mode == 2, last)),
        )

    start = 13 + color_table(byte(10))  # header, logical screen descriptor, global colour table
    position, _, pixels, _ = tf.while_loop(
        lambda position, mode, pixels, done: tf.logical_and(tf.logical_not(done), position < size),
        step, (start, tf.constant(0, tf.int64), tf.constant(0, tf.int64), tf.constant(False)))
    return pixels, tf.minimum(position, size)


def _first_gif_frame(encoded):
    """Graph function: a GIF cut after its first image, with a trailer; anything else as it is."""
    import tensorflow as tf

    def cut():
        _, end = _gif_first_image(encoded)
        return tf.strings.join([tf.strings.substr(encoded, 0, tf.cast(end, tf.int32)), b";"])

    return tf.cond(tf.strings.substr(encoded, 0, 4) == b"GIF8", cut, lambda: encoded)


def load_like_the_pipeline(path, size):
    """A file as uint8 `(H, W, 3)` of `size`, decoded exactly as the tf.data pipeline and
    the exported bytes signatures decode it — for ordinary JPEG/PNG files; the rest
    (CMYK, 16-bit, alpha, EXIF-rotated, TIFF, ...) through Pillow, as the pipeline does.

    Raises:
        DataError: naming the file.
    """
    import tensorflow as tf

    from zoo.data.pillow import load_rgb

    if _needs_pillow(path):
        return load_rgb(path, size)  # Pillow's conversion, or its one-line error naming the file
    size = tuple(int(v) for v in size)
    with open(path, "rb") as f:
        contents = f.read()
    try:
        # Eagerly: the same ops and pixels as the graph, ~10 ms a photo either way, but
        # tracing it as a tf.function first cost `zoo classify photo.jpg` a second.
        return decode_resize_bytes(tf.constant(contents), size).numpy()
    except tf.errors.InvalidArgumentError:
        return load_rgb(path, size)  # a damaged file: Pillow says what is wrong with it


def _needs_pillow(path):
    """Whether a file is not an ordinary JPEG/PNG that TensorFlow decodes as Pillow
    would (from its header only; anything odd or unreadable goes to Pillow, which
    reports it)."""
    import stat

    from zoo.data.pillow import check_pixel_count, open_image

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return True
        with open_image(path) as image:
            check_pixel_count(image, path)
            rotated = image.format in ("JPEG", "MPO") and image.getexif().get(0x0112, 1) not in (None, 1)
            return (image.format, image.mode) not in _TF_DECODABLE or "transparency" in image.info or rotated
    except Exception:  # noqa: BLE001 — Pillow names the problem when it reads the file
        return True


def decode_resize(path, use_pillow, image_size, resize="squish"):
    """Graph function: a file path → uint8 `(height, width, 3)` tensor.

    Ordinary JPEG/PNG files are decoded by TensorFlow in parallel; the rest go
    through Pillow (`zoo.data.pillow.load_rgb`) so CMYK, 16-bit and alpha images get the
    same conversion as everywhere else in zoo.
    """
    import tensorflow as tf

    def with_tf():
        return decode_bytes(tf.io.read_file(path), image_size)

    def with_pillow():
        image = tf.numpy_function(_pillow_decode, [path], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return image

    return resize_uint8(tf.cond(use_pillow, with_pillow, with_tf), image_size, resize)


def resize_uint8(image, image_size, resize="squish"):
    """Graph function: resize one `(h, w, 3)` image to uint8 `(height, width, 3)`.

    Shrinking by 2x or more is antialiased (as Pillow's resize is); under 2x plain
    bilinear already blends every source pixel, and is 2x faster. The result is
    rounded and clipped back to uint8.
    """
    import tensorflow as tf

    height, width = image_size

    def bilinear(target):
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        target_f = tf.cast(target, tf.float32)
        shrink = tf.maximum(shape[0] / target_f[0], shape[1] / target_f[1])
        return tf.cond(
            shrink >= 2.0,
            lambda: tf.image.resize(image, target, antialias=True),
            lambda: tf.image.resize(image, target, antialias=False),
        )

    if resize == "crop":
        # Scale so the image covers the target, then cut the centre: no distortion.
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.maximum(height / shape[0], width / shape[1])
        new_h = tf.maximum(height, tf.cast(tf.round(shape[0] * scale), tf.int32))
        new_w = tf.maximum(width, tf.cast(tf.round(shape[1] * scale), tf.int32))
        resized = bilinear(tf.stack([new_h, new_w]))
        top = (new_h - height) // 2
        left = (new_w - width) // 2
        resized = resized[top : top + height, left : left + width]
    else:
        resized = bilinear(tf.constant([height, width], tf.int32))
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    resized.set_shape([height, width, 3])
    return resized


def use_cache(cache, count, image_size):
    if cache == "auto":
        return count * image_size[0] * image_size[1] * 3 <= CACHE_BUDGET_BYTES
    if isinstance(cache, (str, os.PathLike)):
        return os.fspath(cache)
    if isinstance(cache, bool):
        return cache
    raise ValueError(
        f"`cache` must be 'auto', True, False or a file path. Received: cache={cache!r}"
    )


def from_files(
    files,
    labels,
    image_size,
    batch_size=32,
    resize="squish",
    shuffle=False,
    augment=False,
    seed=0,
    cache="auto",
    pillow_files=(),
):
    """A batched `tf.data.Dataset` of `(uint8 images, int32 labels)` from file lists.

    Files should already be checked (`check_files`); those in `pillow_files` are
    decoded with Pillow. Decoding and resizing run in parallel (AUTOTUNE); decoded
    images are cached when `cache` allows, and shuffling and augmentation come after
    the cache so every epoch still differs.

    Args:
        files: list of paths. labels: list of ints, aligned with `files`.
        image_size: int or `(height, width)`.
        batch_size: int. Defaults to `32`.
        resize: str. `"squish"` or `"crop"`. Defaults to `"squish"`.
        shuffle: bool. Reshuffle every epoch. Defaults to `False`.
        augment: bool or `keras.layers.Layer`. Defaults to `False`.
        seed: int or None. Shuffle and augmentation seed. Defaults to `0`.
        cache: `"auto"`, bool or a file path. Defaults to `"auto"`.
        pillow_files: collection of paths to decode with Pillow. Defaults to `()`.
    """
    import tensorflow as tf

    from zoo.data.augment import apply_uint8, resolve_augmentation

    image_size = check_image_size(image_size)
    if resize not in RESIZE_MODES:
        raise ValueError(f"`resize` must be one of {RESIZE_MODES}. Received: resize={resize!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
    files = [os.fspath(f) for f in files]
    if len(files) != len(labels):
        raise ValueError(
            f"`files` and `labels` must have the same length. Received: {len(files)} "
            f"files and {len(labels)} labels"
        )
    pillow_files = set(pillow_files)
    use_pillow = [f in pillow_files for f in files]
    layer = resolve_augmentation(augment, seed=seed)
    cached = use_cache(cache, len(files), image_size)
    count = len(files)

    ds = tf.data.Dataset.from_tensor_slices(
        (
            # Bytes, as the file system has them: a name that is not valid UTF-8 is a
            # legal file name, and a str holding it cannot become a tf.string.
            tf.constant([os.fsencode(f) for f in files], dtype=tf.string),
            tf.constant(np.asarray(labels, dtype="int32")),
            tf.constant(use_pillow, dtype=tf.bool),
        )
    )
    if shuffle and not cached:
        # Without a cache, shuffle the (cheap) paths, not the decoded images.
        ds = ds.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda path, label, pil: (decode_resize(path, pil, image_size, resize), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        # In order even when shuffled: the seed alone decides what a run sees, so a rerun
        # (or each worker of a multi-worker run, which must agree) gets the same batches.
        deterministic=True,
    )
    if cached:
        ds = ds.cache(cached if isinstance(cached, str) else "")
        if shuffle:
            ds = ds.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if layer is not None:
        ds = ds.map(
            lambda images, label: (apply_uint8(layer, images), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def image_folder(
    path,
    image_size=(224, 224),
    batch_size=32,
    validation_split=0.2,
    seed=0,
    augment=False,
    resize="squish",
    shuffle=True,
    cache="auto",
    verbose=True,
    val_dir=None,
):
    """Train and validation datasets from a folder with one sub-folder per class.

    Every file is opened and fully decoded with Pillow first (in a thread pool):
    truncated images, non-images and empty files are skipped and listed in
    `.report.skipped`, so iteration never fails halfway through an epoch. Grayscale,
    palette, alpha (composited on white), CMYK and 16-bit images all become RGB.
    Batches are `(uint8 images (batch, height, width, 3), int32 labels (batch,))`;
    label `i` is `classes[i]`. Normalisation is the model's job (its first layer).

    Args:
        path: str or path. The folder; each sub-folder is a class (sorted by name).
            Hidden files and folders are ignored; files directly in `path` are not
            used.
        image_size: int or `(height, width)`. Output size. Defaults to `(224, 224)`.
        batch_size: int. Defaults to `32`.
        validation_split: float in [0, 1). Fraction of each class held out, so every
            class is in both splits. With `0`, `val` is `None`. Defaults to `0.2`.
        seed: int. Decides the split (the same seed gives the same split) and the
            shuffle and augmentation order. Defaults to `0`.
        augment: bool or `keras.layers.Layer`. Augment the training set: `True` uses
            `zoo.data.default_augmentation()` (horizontal flip, rotation, zoom,
            contrast; no vertical flip). A layer gets float 0..255 batches; its
            output is rounded back to uint8. Defaults to `False`.
        resize: str. `"squish"` resizes to `image_size` ignoring the aspect ratio;
            `"crop"` scales the shorter side to fit, then cuts the centre. Defaults
            to `"squish"`.
        shuffle: bool. Reshuffle the training set every epoch. `shuffle=False,
            augment=False` gives the training set in `report.train_files` order.
            Defaults to `True`.
        cache: `"auto"`, bool or a file path. Keep decoded, resized images after the
            first epoch: `"auto"` caches in memory when they fit in 1.5 GB. Defaults
            to `"auto"`.
        verbose: bool. Print what was found and skipped (and a progress bar for
            folders over 2,000 files). Defaults to `True`.
        val_dir: str, path or None. A separate validation folder with the same
            layout (its classes among `path`'s, each name matched); `path` is then all
            training data and `validation_split` must be 0 or left as it is.
            Defaults to `None`.

    Returns:
        An `ImageFolder`: unpacks as `train, val, classes` (two batched
        `tf.data.Dataset`s and the list of class names); `.report` is the
        `ImageFolderReport` (skipped files with reasons, file lists, counts).

    Raises:
        DataError: naming the folder or class, when the folder is missing or empty,
            has a single class, or a class has too few usable images for the split.

    Example:

    ```python
    data = zoo.data.image_folder("flowers/", image_size=224, augment=True)
    print(data.report)
    train, val, classes = data
    model = zoo.create("resnet50", num_classes=len(classes))
    model.fit(train, validation_data=val, epochs=5)
    ```
    """
    image_size = check_image_size(image_size)
    if resize not in RESIZE_MODES:
        raise ValueError(f"`resize` must be one of {RESIZE_MODES}. Received: resize={resize!r}")
    if val_dir is not None:
        report = _with_val_dir(path, val_dir, seed, verbose, image_size, resize)
    else:
        report = scan_folder(
            path, validation_split=validation_split, seed=seed, verbose=verbose,
            image_size=image_size, resize=resize,
        )
    train = from_files(
        report.train_files, report.train_labels, image_size, batch_size=batch_size,
        resize=resize, shuffle=shuffle, augment=augment, seed=seed, cache=cache,
        pillow_files=report.pillow_files,
    )
    val = None
    if report.val_files:
        val = from_files(
            report.val_files, report.val_labels, image_size, batch_size=batch_size,
            resize=resize, shuffle=False, augment=False, seed=seed, cache=cache,
            pillow_files=report.pillow_files,
        )
    return ImageFolder(train, val, list(report.classes), report)
