"""What each command can refuse before Keras and TensorFlow start (seconds, more under
load): a missing file, an unknown model, a run directory that cannot be used, an output
that would replace a user's file. Each check says it in the line the command itself
would say, so the answer comes in well under a second. Nothing here imports Keras.
"""

from __future__ import annotations

import os

from zoo.errors import DataError

MISSING = "no such file or folder"
NO_BACKEND = ("list", "info", "weights")  # commands that never run a model


def check(args):
    """Run the checks of `args.command`; raises `ZooError` (one line, exit 1)."""
    checker = CHECKS.get(args.command)
    if checker is not None:
        checker(args)


def _require(path, what):
    if path is not None and not os.path.exists(path):
        raise DataError(f"{path}: {MISSING} ({what})")


def _some_images(images):
    """Refuse at once when none of `images` exists: the command could do nothing. With
    some that exist, the missing ones are reported beside the others' results."""
    if images and not any(os.path.exists(item) for item in images):
        if len(images) == 1:
            raise DataError(f"{images[0]}: {MISSING}")
        shown = ", ".join(map(str, images[:5])) + (f" and {len(images) - 5} more" if len(images) > 5 else "")
        raise DataError(f"none of the {len(images)} images exists ({MISSING}): {shown}")


def _registry_model(name, weights=None, pretrained=False):
    from zoo.models import get_spec
    from zoo.tasks.classify import require_pretrained

    get_spec(name)  # an unknown name: one line with close matches
    if weights is not None and _is_path(weights):
        _require(weights, "--weights")
    elif pretrained and weights in (None, "default"):
        require_pretrained(name.lower())


def _is_path(value):
    return isinstance(value, str) and (os.sep in value or value.endswith((".h5", ".keras", ".npz")))


def _finished_run(run_dir):
    from zoo import runs

    _require(run_dir, "the run directory")
    if os.path.isdir(run_dir) and runs.status(run_dir) != "finished":
        raise runs.RunError(f"{run_dir} is not a finished zoo run directory: {os.path.join(run_dir, runs.MODEL_FILE)} "
                       "is missing.")


def _classify(args):
    _registry_model(args.model, args.weights, pretrained=True)
    _some_images(args.images)


EXPORTED_SUFFIXES = (".tflite", ".onnx")  # zoo.serving.portable's files, which predict runs too


def _predict(args):
    images = [args.run_dir, *args.images] if args.url else args.images
    if not args.url and args.run_dir:
        if os.path.splitext(str(args.run_dir))[1].lower() in EXPORTED_SUFFIXES:
            if not os.path.isfile(args.run_dir):
                raise DataError(f"{args.run_dir}: {MISSING}")
        else:
            _finished_run(args.run_dir)
    _some_images(images)


def _explain(args):
    from zoo.tasks.explain import check_out_dir, split_run

    check_out_dir(args.out)
    images = args.images
    if not args.model and not args.run:
        run, images = split_run(images)
    if args.run:
        _require(args.run, "--run")
    if args.model:
        _registry_model(args.model, args.weights, pretrained=True)
    _some_images(images)


def _generate(args):
    _finished_run(args.run_dir)


def _train(args):
    from zoo import runs, tasks

    options = {o.name: getattr(args, o.name, None) for o in args.task_options}
    if tasks.canonical(args.kind) == "style-transfer":
        return _style(args)
    if options.get("distribute") == "multiworker":  # TF_CONFIG and the deadline, before TensorFlow's deaf start
        from zoo.training.distribute import cluster_task, cluster_timeout

        cluster_task()
        cluster_timeout()
    for name in ("data_dir", "text"):
        _require(options.get(name), f"--{name.replace('_', '-')}" if name != "data_dir" else "DATA_DIR")
    if options.get("data") not in (None, "digits"):
        _require(options["data"], "--data")
    if options.get("model"):
        _registry_model(options["model"], options.get("weights"))
    if options.get("out") and options.get("distribute") != "multiworker":  # each worker has its own folder
        runs.check_out(options["out"], resume=bool(options.get("resume")), overwrite=bool(options.get("overwrite")))


def _style(args):
    from zoo import io

    _require(args.content, "CONTENT")
    _require(args.style, "STYLE")
    if args.out:
        io.refuse_overwrite([args.out], (args.content, args.style), overwrite=args.overwrite)


def _lr_find(args):
    _require(args.data_dir, "DATA_DIR")
    _registry_model(args.model, args.weights)


def _serve(args):
    # The files zoo serve reads are pure protobuf text: refused before TensorFlow starts.
    _require(getattr(args, "base_path", None), "MODELS")
    _require(getattr(args, "model_config_file", None), "--model_config_file")
    batching = getattr(args, "batching_parameters_file", None)
    if batching:
        from zoo.serving.batching import read_batching_parameters

        read_batching_parameters(batching)
    monitoring = getattr(args, "monitoring_config_file", None)
    if monitoring:
        from zoo.serving.metrics import read_monitoring_config

        read_monitoring_config(monitoring)


def _ui(args):
    for source in args.sources:
        if os.path.isdir(source):
            _finished_run(source)
        elif _is_path(source) or os.path.exists(source):
            _require(source, "a .keras file")
        else:
            _registry_model(source)


CHECKS = {
    "classify": _classify,
    "predict": _predict,
    "explain": _explain,
    "generate": _generate,
    "sample": _generate,
    "train": _train,
    "finetune": _train,
    "style": _style,
    "lr-find": _lr_find,
    "serve": _serve,
    "ui": _ui,
}


def needs_backend(args):
    """Whether the command runs a model here (`zoo predict --url` only sends HTTP)."""
    return args.command not in NO_BACKEND and not (args.command == "predict" and getattr(args, "url", None))
