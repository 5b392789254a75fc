"""Export a model as a SavedModel that TF Serving loads unchanged.

    >>> import zoo
    >>> zoo.export("runs/flowers", "models/", "flowers")
    PosixPath('models/flowers/1')

The layout is TF Serving's: `BASE/NAME/VERSION/saved_model.pb` + `variables/`, where
VERSION is a positive integer and the server serves the highest one. A version is
written into a temporary directory next to the versions (`BASE/NAME/.export-…`, a name
TF Serving skips because it is not all digits) and renamed into place, so neither
TF Serving nor `zoo serve` ever sees half a version.

`export` is the same for every task: the source (a run directory, a `.keras` file, a
registry model name or a `keras.Model`) gives its task (the run's, or the registry
spec's), the task module's `signatures(source, top_k=..., classes=...)` gives the
endpoints and what zoo.json says of them (the contract is in `zoo.tasks`), and this
module writes them with `keras.export.ExportArchive`, gives a signature that says so
TF Serving's classify or regress method name, and publishes the version. An image
classifier's signatures are listed in `zoo.tasks.image_classifier_export`; a model of no
task exports `serving_default` with its own input (named `inputs`) → `outputs`.
`assets.extra/zoo.json` records the model name, task, classes, input size, signatures,
zoo version and source run (TF Serving ignores `assets.extra/` apart from warm-up files).
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zoo import io
from zoo.errors import UnknownModelError, ZooError
from zoo.io import fsync_dir, read_json
from zoo.serving import METADATA_FILE
from zoo.tasks.export import NO_TASK

TEMP_PREFIX = ".export-"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def export(model_or_run_dir, base_path, name, version=None, top_k=5, classes=None, format="savedmodel",
           quantize=None, representative=None, overwrite=False):
    """Write a model as TF Serving's `base_path/name/VERSION/` SavedModel, and/or as one
    LiteRT (`base_path/name/NAME.tflite`) or ONNX (`NAME.onnx`) file
    (`zoo.serving.portable`).

    Args:
        model_or_run_dir: the path of a run directory written by `zoo train` /
            `zoo.runs.save_run` (or the run, `zoo.load_run`), the path of a `.keras` model file, a registry model
            name (`"lenet5"`, built with its default weights), or a `keras.Model`
            (uint8 RGB in, probabilities out for a classifier).
        base_path: str or Path. The model base directory (`models/`).
        name: str. The served model's name, the directory under `base_path`.
        version: int or None. The version to write; must not exist yet. Defaults to
            one more than the highest existing version (1 for the first).
        top_k: int. Labels returned by the `top_k` signature (at most the number of
            classes). Defaults to `5`.
        classes: list of str or None. Class names of a classifier passed as a model;
            defaults to the run's classes or the registry's labels, else "0", "1", ...
        format: `"savedmodel"`, `"litert"`, `"onnx"`, or several (a list, or a string
            separated by commas). A LiteRT or ONNX file holds the task's
            `portable` function (`zoo.serving.portable`).
            Defaults to `"savedmodel"`.
        quantize: None, `"float16"` or `"int8"`: the LiteRT file's quantisation
            (int8: full-integer, calibrated on `representative`). Defaults to `None`.
        representative: uint8 `(N, H, W, 3)` images, or a folder of them, for int8
            calibration; defaults to a run's own training images.
        overwrite: bool. Replace an existing LiteRT or ONNX file (SavedModel versions
            are never replaced). Defaults to `False`.

    Returns:
        `pathlib.Path` of what was written (the new version directory, or the file);
        a list of them, in order, when several formats are asked for.
    """
    from zoo.serving import portable

    formats = portable.formats_from(format)
    if quantize is not None and "litert" not in formats:
        raise ValueError(f"`quantize` applies to the litert format. Received: quantize={quantize!r}, "
                         f"format={format!r}")
    _check_name(name)
    source = resolve_source(model_or_run_dir)
    written = []
    for chosen in formats:
        if chosen == "savedmodel":
            written.append(_export_saved_model(source, base_path, name, version, top_k, classes))
            continue
        written.append(portable.export_file(source, Path(base_path) / name, name, chosen,
                                            quantize=quantize if chosen == "litert" else None,
                                            representative=representative, classes=classes,
                                            overwrite=overwrite))
    return written[0] if len(written) == 1 else written


def _export_saved_model(source, base_path, name, version, top_k, classes):
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ValueError(f"`version` must be a positive int or None. Received: version={version!r}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive int. Received: top_k={top_k!r}")

    endpoints, described = signatures_of(source, top_k=top_k, classes=classes)
    model_dir = Path(base_path) / name
    if version is not None and (model_dir / str(version)).exists():
        raise ZooError(
            f"{model_dir / str(version)} already exists: versions are never overwritten. "
            f"Pass another version or leave it out. Received: version={version}"
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(model_dir)

    tmp = Path(tempfile.mkdtemp(dir=model_dir, prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
    io.make_dir_public_as_umask(tmp)
    try:
        signatures = _write_saved_model(endpoints, tmp)
        metadata = {
            "name": name,
            "model": source.model_name,
            "task": source.task,
            "classes": described.get("classes"),
            "input_size": described.get("input_size"),
            "signatures": signatures,
            "top_k": described.get("top_k"),
            "zoo_version": _zoo_version(),
            "source_run": source.run,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        # Whatever else the task says of its export, beside (never over) the above.
        metadata.update({key: value for key, value in described.items() if key not in metadata})
        # A plain write, not zoo.io's: the whole version directory is published by one
        # rename below, so the file needs no atomic write of its own.
        (tmp / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        _fsync_tree(tmp)
        final = _publish(tmp, model_dir, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def versions(model_dir):
    """The published versions under `model_dir`, ascending (all-digit names only)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())


def remove_stale_temporaries(model_dir):
    """Delete temporary export directories whose exporting process is gone (killed)."""
    for path in Path(model_dir).glob(f"{TEMP_PREFIX}*"):
        match = re.match(rf"^{re.escape(TEMP_PREFIX)}(\d+)-", path.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def read_metadata(version_dir):
    """The `assets.extra/zoo.json` of an export, or `{}` for a SavedModel zoo did not write."""
    return read_json(Path(version_dir) / METADATA_FILE, default={})


def docker_command(model_dir, rest_port=8501, grpc_port=8500):
    """The `docker run` line that serves `model_dir` (`BASE/NAME`) with TF Serving."""
    model_dir = Path(model_dir).resolve()
    return (
        f"docker run --rm -p {rest_port}:8501 -p {grpc_port}:8500 "
        f'-v "{model_dir}:/models/{model_dir.name}" -e MODEL_NAME={model_dir.name} tensorflow/serving'
    )


def curl_example(name, host="localhost", port=8501, image="image.jpg"):
    """A curl request sending one image file to an image classifier's `top_k` signature as b64."""
    from zoo.tasks.image_classifier_export import SIGNATURE_TOP_K

    return (
        f"curl -s -X POST http://{host}:{port}/v1/models/{name}:predict "
        f"-d '{{\"signature_name\": \"{SIGNATURE_TOP_K}\", "
        f"\"instances\": [{{\"b64\": \"'\"$(base64 -w0 {image})\"'\"}}]}}'"
    )


# ------------------------------------------------------------------------------ source
@dataclass(frozen=True)
class Source:
    """What `export` was given, resolved.

    Attributes:
        task: str. The task whose `signatures` export it (`zoo.registry.TASKS`), or
            `"other"` for a model that belongs to no task.
        source: the task's `Run` (`zoo.load_run`), or a `keras.Model`.
        model_name: str. zoo.json's `model`.
        run: str or None. The run directory's absolute path (zoo.json's `source_run`).
    """

    task: str
    source: object
    model_name: str
    run: str | None = None


def resolve_source(source):
    """A run directory (or its loaded `Run`), `.keras` file, registry model name or
    `keras.Model` → `Source`."""
    import keras

    from zoo import models, runs, tasks

    if isinstance(source, keras.Model):
        return _of_model(source)
    if isinstance(source, runs.Run):  # a run already loaded (`zoo.load_run`)
        return Source(task=tasks.entry(source.kind or tasks.DEFAULT_KIND).name, source=source,
                      model_name=source.config.get("model") or source.model.name,
                      run=str(Path(source.path).resolve()) if source.path else None)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return resolve_source(tasks.load_run(path))
        if path.suffix == ".keras" and path.is_file():
            return _of_model(runs.load_model_file(path))
    if isinstance(source, str):
        try:
            spec = models.get_spec(source)
        except UnknownModelError as error:
            raise ZooError(
                "`model_or_run_dir` must be a run directory, a .keras file, a registry model name "
                f"or a keras.Model. {error}"
            ) from None
        model = models.create(source)
        return Source(task=spec.task, source=model, model_name=model.name)
    raise TypeError(
        "`model_or_run_dir` must be a run directory, a .keras file, a registry model name or a "
        f"keras.Model. Received: model_or_run_dir={source!r}"
    )


def _of_model(model):
    """A bare model's task: its registry spec's (by the model's name), else an image
    classifier's when it looks like one ((N, H, W, 3) of a fixed size in, (N, C) out)."""
    spec = registry_spec(model.name)
    if spec is not None:
        return Source(task=spec.task, source=model, model_name=model.name)
    inputs, outputs = getattr(model, "inputs", None) or [], getattr(model, "outputs", None) or []
    in_shape = tuple(inputs[0].shape) if len(inputs) == 1 else ()
    out_shape = tuple(outputs[0].shape) if len(outputs) == 1 else ()
    is_image = len(in_shape) == 4 and in_shape[-1] == 3 and None not in in_shape[1:]
    task = "image-classification" if is_image and len(out_shape) == 2 else NO_TASK
    return Source(task=task, source=model, model_name=model.name)


def signatures_of(source, top_k=5, classes=None):
    """`(endpoints, metadata)` of a `Source`: its task module's `signatures`, or for a
    model of no task `serving_default` on its own input and output."""
    from zoo import tasks
    from zoo.tasks.export import model_signatures

    if source.task == NO_TASK:
        return model_signatures(source.source)
    return tasks.get(source.task).signatures(source.source, top_k=top_k, classes=classes)


def _check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.isdigit():
        raise ValueError(
            "`name` must be a directory name of letters, digits, '_', '.' or '-' that "
            "does not start with '.' or '-' and is not all digits (TF Serving would "
            f"take it for a version). Received: name={name!r}"
        )


def registry_spec(name):
    """The registry's spec of model `name`, or None for a name it does not know."""
    from zoo import models

    try:
        return models.get_spec(name)
    except UnknownModelError:
        return None


def _zoo_version():
    from zoo import __version__

    return __version__


# ------------------------------------------------------------------------------ writing
def _write_saved_model(endpoints, path):
    """Write the endpoints as a SavedModel into `path`; returns `{signature: description}`."""
    import keras

    archive = keras.export.ExportArchive()
    # No archive.track(model): add_endpoint already tracks the variables the endpoints use,
    # and tracking the model as well stores every variable twice (its Keras wrapper and
    # the tf.Variable inside), doubling the export (185 MB for a 95 MB ResNet50).
    described = {}
    for name, (function, description) in endpoints.items():
        archive.add_endpoint(name, function)
        described[name] = description
    archive.write_out(str(path), verbose=False)
    methods = {name: d["method"] for name, d in described.items() if d.get("method")}
    if methods:
        set_method_names(path, methods)
    return described


def set_method_names(path, methods):
    """Give signatures TF Serving's classify/regress method names. `tf.saved_model`
    writes every signature as a predict one; TF Serving's Classify and Regress run only
    a signature whose SignatureDef says it is theirs (as TF1's
    `classification_signature_def` wrote it)."""
    from tensorflow.core.protobuf import saved_model_pb2

    file = Path(path) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(file.read_bytes())
    for graph in saved_model.meta_graphs:
        for name, method in methods.items():
            if name in graph.signature_def:
                graph.signature_def[name].method_name = method
    file.write_bytes(saved_model.SerializeToString())


# ------------------------------------------------------------------------ publication
def _publish(tmp, model_dir, version):
    """Rename the finished temporary directory to its version; returns the final path."""
    while True:
        number = version if version is not None else max(versions(model_dir), default=0) + 1
        final = model_dir / str(number)
        if final.exists():
            if version is not None:
                raise ZooError(f"{final} appeared while exporting: versions are never overwritten.")
            continue  # another export took this number between listing and renaming
        try:
            # rename(2) is atomic: a reader sees no version or the whole one.
            os.rename(tmp, final)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY) and version is None:
                continue
            raise
        fsync_dir(model_dir)
        return final


def _fsync_tree(root):
    # Flush file contents before the rename publishes them, so a crash right after
    # cannot leave a visible version with empty files.
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
