"""The `zoo` command line: a thin layer over zoo's Python API.

Parsing imports nothing heavy, so `zoo --help` answers at once; each command imports
what it needs when it runs. Problems the user can fix (`zoo.errors.ZooError`) are
printed as one message, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# ---------------------------------------------------------------------------- commands
def cmd_list(args):
    from rich.console import Console
    from rich.table import Table

    import zoo

    names = zoo.list_models(args.pattern, task=args.task, max_params=args.max_params)
    if args.json:
        print(json.dumps([zoo.info(n) for n in names], indent=2))
        return EXIT_OK
    table = Table(box=None, header_style="bold")
    for column in ("name", "task", "params", "input", "ImageNet top-1", "weights (* = cached)"):
        table.add_column(column, justify="right" if column in ("params", "ImageNet top-1") else "left")
    for name in names:
        described = zoo.info(name)
        shown = ", ".join(
            f"{v}{'*' if entry['cached'] else ''}" for v, entry in sorted(described["weights"].items())
        ) or "-"
        shape = described["input_shape"]
        top1 = described["imagenet_top1"]
        table.add_row(
            name, described["task"], f"{described['num_params']:,}", "x".join(map(str, shape)) if shape else "-",
            f"{top1:.1f} %" if top1 is not None else "-", shown
        )
    Console(width=max(120, Console().width)).print(table)
    return EXIT_OK


def parameter_count(text):
    """`10M`, `2.5m`, `500K`, `1G` or `25000000` → a number of parameters (argparse type)."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(str(text)[-1:].lower(), 1)
    number = str(text)[:-1] if scale != 1 else str(text)
    try:
        value = float(number) * scale
    except ValueError:
        value = -1
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a parameter count such as 10M, 500K or 25000000")
    return int(value)


def cmd_info(args):
    import zoo

    print(json.dumps(zoo.info(args.name), indent=2))
    return EXIT_OK


def _write_csv(results, path):
    """One row per image: image, then label/probability/class_id for each rank, error."""
    import csv
    import io as text_io

    from zoo import io

    ranks = max((len(r.get("predictions", [])) for r in results), default=0)
    header = ["image", *[f"{key}_{rank}" for rank in range(1, ranks + 1)
                         for key in ("label", "probability", "class_id")], "error"]
    buffer = text_io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for result in results:
        cells = [str(result["image"])]
        for p in result.get("predictions", []):
            cells += [p["label"], f"{p['probability']:.6f}", p["class_id"]]
        cells += [""] * (len(header) - 1 - len(cells)) + [result.get("error", "")]
        writer.writerow(cells)
    io.write_text(path, buffer.getvalue())


def _print_predictions(results, as_json, csv_path=None):
    failed = any("error" in r for r in results)
    if csv_path:
        _write_csv(results, csv_path)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" in result:
                error = result["error"]
                named = error if error.startswith(str(result["image"])) else f"{result['image']}: {error}"
                print(f"ERROR {named}", file=sys.stderr)
                continue
            print(result["image"])
            for p in result["predictions"]:
                print(f"  {p['probability']:8.4f}  {p['label']}  (class {p['class_id']})")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_classify(args):
    import zoo

    weights = args.weights if args.weights else "default"
    results = zoo.classify(args.images, model=args.model, top=args.top, weights=weights)
    return _print_predictions(results, args.json, args.csv)


def cmd_predict(args):
    if args.url:
        if not args.model:
            raise SystemExit("zoo predict: error: --url needs --model NAME (the served model's name)")
        from zoo.serving.client import predict as remote_predict

        if args.tta:
            raise SystemExit("zoo predict: error: --tta runs the model here; a server answers each image once")
        images = [args.run_dir, *args.images] if args.run_dir else args.images
        results = remote_predict(args.url, args.model, images, top=args.top)
        return _print_predictions(results, args.json, args.csv)
    if not args.run_dir or not args.images:
        raise SystemExit("zoo predict: error: give RUN_DIR IMAGE... (or --url URL --model NAME IMAGE...)")
    import zoo

    from zoo.cli.checks import EXPORTED_SUFFIXES

    if os.path.splitext(str(args.run_dir))[1].lower() in EXPORTED_SUFFIXES:
        from zoo.serving.portable import predict_file

        return _print_predictions(predict_file(args.run_dir, args.images, top=args.top, tta=args.tta), args.json,
                                  args.csv)
    run = zoo.load_run(args.run_dir)
    if run.kind == "image-segmentation":
        return _print_masks(run.predict(args.images, out=args.out or "masks"), args.json)
    return _print_predictions(run.predict(args.images, top=args.top, tta=args.tta), args.json, args.csv)


def _print_masks(results, as_json):
    """A segmentation run's `zoo predict`: where each mask and overlay went, and the
    classes it found with their share of the picture."""
    failed = False
    shown = []
    for result in results:
        if "error" in result:
            failed = True
            error = result["error"]
            print(f"ERROR {error if error.startswith(str(result['image'])) else result['image'] + ': ' + error}",
                  file=sys.stderr)
            continue
        result = {key: value for key, value in result.items() if key != "mask"}
        shown.append(result)
        if not as_json:
            found = ", ".join(f"{name} {share:.1%}" for name, share in
                              sorted(result["classes"].items(), key=lambda item: -item[1]))
            print(f"{result['image']}: {found} -> {result['mask_file']}, {result['overlay_file']}")
    if as_json:
        print(json.dumps(shown, indent=2))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_weights(args):
    import zoo
    from zoo import weights

    if args.action == "list":
        for key, entry in sorted(weights.manifest().items()):
            if args.model and entry["model"] != args.model:
                continue
            state = "cached" if weights.is_available(entry) else "-"
            print(f"{key:32s} {state:7s} {weights.local_path(entry)}")
        return EXIT_OK
    if args.action == "import":
        zoo.info(args.model)  # an unknown name fails here, with close matches
        path = weights.import_file(args.file, args.model, args.variant)
        print(f"verified and stored {args.model}.{args.variant} at {path}")
        return EXIT_OK
    selected = [
        e for e in weights.manifest().values()
        if (not args.model or e["model"] == args.model) and (not args.variant or e["variant"] == args.variant)
    ]
    if not selected:
        raise SystemExit(f"zoo weights: error: no variant matches --model {args.model} --variant {args.variant}")
    status = EXIT_OK
    for entry in selected:
        key = weights.key(entry["model"], entry["variant"])
        if args.action == "path":
            print(weights.local_path(entry))
        elif args.action == "fetch":
            print(f"{key}: {weights.fetch(entry)}")
        elif args.action == "verify":
            if not weights.is_available(entry):
                if args.model:  # asked for this one explicitly
                    print(f"{key}: missing ({weights.local_path(entry)})")
                    status = EXIT_FAILED
                continue
            try:
                weights.verify(entry)
                print(f"{key}: ok")
            except weights.WeightsError as error:
                print(f"{key}: FAILED {error}")
                status = EXIT_FAILED
    return status


def _multi_worker_setup(terminal):
    # TensorFlow fixes its collectives when its runtime starts: the strategy comes first,
    # and before it TF_CONFIG is checked and the other workers waited for, in words on
    # the terminal and with a deadline (TensorFlow's own start-up waits deaf and silent).
    from zoo.training.distribute import strategy, wait_for_cluster

    wait_for_cluster(stream=terminal)
    strategy("multiworker")


def cmd_train(args):
    import zoo

    # Every option by name: a task's data may be positional (DATA_DIR) or a flag (--text, --data).
    result = zoo.train(args.kind, **{o.name: getattr(args, o.name) for o in args.task_options})
    if args.kind == "style-transfer":  # an image, not a run: said as `zoo style` says it
        _print_style(result)
    return EXIT_OK


def cmd_generate(args):
    import zoo

    print(zoo.generate(args.run_dir, prompt=args.prompt, temperature=args.temperature, length=args.length,
                       seed=args.seed, top_k=args.top_k))
    return EXIT_OK


def cmd_lr_find(args):
    from zoo.tasks.image_classifier import lr_find

    result = lr_find(
        args.data_dir, model=args.model, weights=args.weights, image_size=args.image_size,
        batch_size=args.batch_size, plot=args.plot,
    )
    print(f"suggested learning rate: {result.suggestion:.2e}")
    print(f"plot: {args.plot}")
    return EXIT_OK


def cmd_show(args):
    import zoo

    path = zoo.show(args.data_dir, out=args.out, n=args.n, image_size=args.image_size, augment=args.augment,
                    mixup=args.mixup, cutmix=args.cutmix, seed=args.seed)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_explain(args):
    import zoo
    from zoo.tasks.explain import check_out_dir, split_run

    check_out_dir(args.out)
    if not args.model and not args.run:
        args.run, args.images = split_run(args.images)
    if bool(args.model) == bool(args.run):
        raise SystemExit("zoo explain: error: give the model as --model NAME (a registry model) or RUN "
                         "(a run directory or a .keras file), one of the two")
    source = args.model or args.run
    weights = args.weights if args.weights else "default"
    result = zoo.explain(source, args.images, method=args.method, class_=args.class_, layer=args.layer,
                         weights=weights)
    written = {w["image"]: w for w in result.save(args.out, overwrite=args.overwrite)}
    failed = False
    shown = []
    for item in result.results:
        saved = written.get(item["image"], {})
        error = item.get("error") or saved.get("error")
        if error:
            failed = True
            named = error if error.startswith(str(item["image"])) else f"{item['image']}: {error}"
            print(f"ERROR {named}", file=sys.stderr)
            shown.append({"image": item["image"], "error": error})
            continue
        shown.append({**item, "overlay": saved.get("overlay")})
        if not args.json:
            peak = item["peak"]
            print(f"{item['image']}: {item['label']} p={item['probability']:.4f}, {result.method} peak at "
                  f"x={peak['x']} y={peak['y']} -> {saved.get('overlay')}")
    if args.json:
        print(json.dumps(shown, indent=2))
    return EXIT_FAILED if failed else EXIT_OK


def _image_model(args, size=None):
    from zoo.tasks.explain import image_model

    return image_model(args.model, args.weights or "default", size)


def cmd_filters(args):
    from zoo.interpret.filters import filter_grid, filter_pictures

    model = _image_model(args, args.size)
    pictures = filter_pictures(model, args.layer, n=args.n, steps=args.steps, seed=args.seed, verbose=True)
    path = filter_grid(pictures, args.out)
    print(f"{len(pictures)} filters of {args.layer}: {path}")
    return EXIT_OK


def cmd_activations(args):
    from zoo.interpret.filters import activation_grid, activation_maps

    model = _image_model(args)
    maps = activation_maps(model, args.image, args.layer)
    path = activation_grid(maps, args.out, n=args.n)
    print(f"{min(args.n, maps.shape[-1])} of {maps.shape[-1]} channels of {args.layer} "
          f"({maps.shape[0]}x{maps.shape[1]}), most active first: {path}")
    return EXIT_OK


def cmd_sample(args):
    import zoo

    path = zoo.sample(args.run_dir, n=args.n, out=args.out, seed=args.seed)
    print(f"{args.n} samples: {path}")
    return EXIT_OK


def cmd_style(args):
    import zoo

    result = zoo.style(
        args.content, args.style, out=args.out, weights=args.weights, steps=args.steps, size=args.size,
        style_weight=args.style_weight, content_weight=args.content_weight, tv_weight=args.tv_weight,
        save_every=args.save_every, overwrite=args.overwrite,
    )
    _print_style(result)
    return EXIT_OK


def _print_style(result):
    for path in result.intermediates:
        print(f"step image: {path}")
    height, width = result.image.shape[:2]
    print(f"image: {result.path} ({width}x{height})")
    losses = ", ".join(f"{name} {values[-1]:.4g}" for name, values in result.history.items())
    print(f"losses at the last step: {losses} (style at the first: {result.history['style'][0]:.4g})")


def _sentence(text):
    return text[:1].upper() + text[1:] + "."


def _add_task_options(parser, options):
    for option in options:
        if option.positional:
            parser.add_argument(option.name, metavar=option.metavar, help=option.help)
        elif option.type is None:
            parser.add_argument(option.flag, dest=option.name, action="store_true", default=option.default,
                                help=option.help)
        else:
            parser.add_argument(option.flag, dest=option.name, type=option.type, default=option.default,
                                required=option.required, metavar=option.metavar, help=option.help)


# ------------------------------------------------------------------------------ parser
class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written (RawDescription); wide enough for the flags."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)


EXAMPLES = {
    "list": "examples:\n  zoo list\n  zoo list 'res*'\n  zoo list --task image-classification --json",
    "info": "examples:\n  zoo info vgg19\n  zoo info lenet5 | python -m json.tool",
    "classify": ("examples:\n  zoo classify examples/digit-7.png --model lenet5      # shipped weights, offline\n"
                 "  zoo classify cat.jpg dog.png --model vgg19 --top 3\n"
                 "  zoo classify photo.jpg --model resnet50 --weights my_resnet50.h5 --json"),
    "weights": ("examples:\n  zoo weights list\n  zoo weights fetch --model vgg19\n"
                "  zoo weights import vgg19_weights_tf_dim_ordering_tf_kernels.h5 --model vgg19 --variant imagenet\n"
                "  zoo weights verify"),
    "train": ("examples:\n  zoo train image-classification photos/ --model resnet50 --epochs 3 --out runs/birds\n"
              "  zoo train text-generation --text tinyshakespeare.txt --minutes 15 --out runs/shakespeare\n"
              "  zoo train segmenter --data scenes/ --model resnet50 --epochs 5 --out runs/scenes\n"
              "  zoo train gan --data digits --out runs/digits-gan\n"
              "  zoo train style-transfer tubingen.jpg starry_night.jpg --out tubingen_starry.png\n"
              "(the old names classifier, char-lstm and dcgan still work)"),
    "image-classification": (
        "examples:\n  zoo train image-classification photos/ --model resnet50 --epochs 3 --out runs/birds\n"
        "  zoo train image-classification photos/ --model lenet5 --epochs 2 --out runs/digits --resume\n"
        "  zoo train image-classification photos/ --model vgg19 --weights none --epochs 5 --out runs/scratch"),
    "image-segmentation": (
        "examples:\n  zoo train segmenter --data scenes/ --model resnet50 --epochs 5 --out runs/scenes\n"
        "  zoo train segmenter --data pets/ --model efficientnet_b0 --image-size 256 --augment --epochs 10 "
        "--out runs/pets\n"
        "  zoo predict runs/scenes street.jpg --out masks/      # masks/street.mask.png and .overlay.png\n"
        "(scenes/ holds images/ and masks/, the same names; codes.txt names the classes)"),
    "finetune": ("examples:\n  zoo finetune photos/ --model resnet50 --epochs 3 --freeze-epochs 1 --out runs/birds\n"
                 "  zoo finetune photos/ --model resnet50 --epochs 3 --out runs/birds --resume\n"
                 "  zoo finetune photos/ --model lenet5 --epochs 2 --augment --out runs/digits --overwrite"),
    "text-generation": (
        "examples:\n  zoo train text-generation --text tinyshakespeare.txt --minutes 15 --out runs/shakespeare\n"
        "  zoo train text-generation --text notes.txt --epochs 5 --units 256 --out runs/notes"),
    "autoencoder": ("examples:\n  zoo train autoencoder --data digits --noise 0.3 --out runs/denoise\n"
                    "  zoo train autoencoder --data faces/ --variational --image-size 64 --out runs/vae"),
    "generate": ("examples:\n  zoo generate runs/shakespeare --prompt 'ROMEO:' --temperature 0.8 --length 300\n"
                 "  zoo generate runs/shakespeare --seed 7 --top-k 5"),
    "show": ("examples:\n  zoo show photos/ --augment --out batch.png\n"
             "  zoo show photos/ --mixup 0.2 --cutmix 1.0 --n 8 --image-size 128"),
    "predict": ("examples:\n  zoo predict runs/birds new1.jpg new2.jpg --top 3\n"
                "  zoo predict --url http://127.0.0.1:8501 --model birds new1.jpg --json"),
    "gan": ("examples:\n  zoo train gan --data digits --out runs/digits-gan\n"
            "  zoo train gan --data faces/ --image-size 64 --epochs 25 --out runs/faces\n"
            "  zoo train gan --data digits --out runs/digits-gan --resume"),
    "explain": ("examples:\n  zoo explain cat.jpg --model vgg19 --out explain/\n"
                "  zoo explain photos/robin/ runs/birds --method gradcam++ --json\n"
                "  zoo explain scan.png --run model.keras --method integrated-gradients --class 7\n"
                "  zoo explain cat.jpg --model resnet50 --class 'tiger cat' --layer conv4_block6_out"),
    "filters": ("examples:\n  zoo filters --model vgg19 --layer block3_conv1 --n 64 --out grid.png\n"
                "  zoo filters --model vgg19 --layer block4_conv1 --size 128 --n 16 --out small.png\n"
                "  zoo filters --model lenet5 --layer c3 --n 16 --out lenet_c3.png"),
    "activations": ("examples:\n  zoo activations cat.jpg --model vgg19 --layer block3_conv1 --out grid.png\n"
                    "  zoo activations examples/digit-7.png --model lenet5 --layer c1 --out c1.png\n"
                    "  zoo activations photo.jpg --model runs/birds --layer conv5_block3_out --n 16"),
    "sample": ("examples:\n  zoo sample runs/digits-gan --n 64 --out grid.png\n"
               "  zoo sample runs/digits-gan --n 16 --seed 7 --out other.png"),
    "lr-find": "examples:\n  zoo lr-find photos/ --model resnet50 --plot lr_find.png",
    "style": ("examples:\n  zoo style tubingen.jpg starry_night.jpg --out tubingen_starry.png\n"
              "  zoo style photo.jpg painting.jpg --out small.png --size 256 --steps 300 --save-every 100\n"
              "  zoo style photo.jpg painting.jpg --out mine.png --weights vgg19_weights_notop.h5"),
    "style-transfer": ("examples:\n  zoo train style-transfer tubingen.jpg starry_night.jpg --out tubingen_starry.png\n"
                       "  zoo train style-transfer photo.jpg painting.jpg --out small.png --size 256 --steps 300\n"
                       "(the same as zoo style)"),
}


def _subcommand(sub, name, help_text, description=None):
    return sub.add_parser(name, help=help_text, description=description or help_text[:1].upper() + help_text[1:] + ".",
                          epilog=EXAMPLES.get(name), formatter_class=_HelpFormatter)


def _trust_flag(parser):
    """`--trust-remote-code` on a command that loads a run or a `.keras` file: a hub layer
    in the file may then download the module its URL names (and so run its graph)."""
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let a hub layer in the model file download the module its URL names and run its "
                             "graph (a model file never fetches otherwise); only for files you trust")
    command = parser.get_default("func")

    def trusting(args):
        if not args.trust_remote_code:
            return command(args)
        from zoo.transfer.hub import trust_remote_code

        with trust_remote_code():
            return command(args)

    parser.set_defaults(func=trusting)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="A Keras 3 model zoo: classify, fine-tune, export and serve.",
        epilog="Run `zoo COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="store_true", help="print zoo's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _subcommand(sub, "list", "list models, their weights and what is cached")
    p.add_argument("pattern", nargs="?", help='wildcard such as "res*" (default: every model)')
    p.add_argument("--task", help="only models of this task, e.g. image-classification (default: all)")
    p.add_argument("--max-params", type=parameter_count, metavar="N",
                   help="only models of at most N parameters: 10M, 500K, 25000000 (default: any)")
    p.add_argument("--json", action="store_true", help="print each model's `zoo info` as a JSON list")
    p.set_defaults(func=cmd_list)

    p = _subcommand(sub, "info", "everything about one model, as JSON")
    p.add_argument("name", help="a registry model name (zoo list)")
    p.set_defaults(func=cmd_info)

    p = _subcommand(sub, "classify", "top-k labels for images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything Pillow opens) or folders of them")
    p.add_argument("--model", default="vgg19", help="a registry model (default: vgg19)")
    p.add_argument("--top", type=int, default=5, help="labels per image (default: 5)")
    p.add_argument("--weights", help="weights variant name or file (default: the model's default)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--csv", metavar="FILE", help="also write one row per image to FILE")
    p.set_defaults(func=cmd_classify)

    p = _subcommand(sub, "weights", "manage the weights cache (list, path, verify, fetch, import)")
    p.add_argument("action", choices=["list", "path", "verify", "fetch", "import"],
                   help="list the manifest, print paths, check hashes, download, or import a file by hand")
    p.add_argument("file", nargs="?", help="with import: the file to verify and register")
    p.add_argument("--model", help="only this model (default: all; required by import)")
    p.add_argument("--variant", help="only this variant, e.g. imagenet or imagenet_notop (required by import)")
    p.set_defaults(func=cmd_weights)

    from zoo import tasks  # the tasks' manifest: names, descriptions, options; no Keras

    p = _subcommand(sub, "train", "train a model for one task (zoo train TASK --help)",
                    "Train a model for one task (the task names zoo list shows); each has its own options.")
    names = p.add_subparsers(dest="kind", metavar="TASK", required=True)
    for task in tasks.MANIFEST.values():
        k = names.add_parser(task.name, aliases=task.aliases, help=task.description, description=task.description,
                             epilog=EXAMPLES.get(task.name), formatter_class=_HelpFormatter)
        _add_task_options(k, task.options)
        k.set_defaults(func=cmd_train, task_options=task.options)
        for old in task.old_names:  # still taken (zoo.train prints a note), not listed
            k = names.add_parser(old, description=task.description + f' ("{old}" is the old name of '
                                 f'the task "{task.name}"; it still works.)', epilog=EXAMPLES.get(task.name),
                                 formatter_class=_HelpFormatter)
            _add_task_options(k, task.options)
            k.set_defaults(func=cmd_train, task_options=task.options)

    classifier = tasks.entry("image-classification")
    p = _subcommand(sub, "finetune", "fine-tune a registry model on a folder of images (= zoo train "
                    "image-classification)", _sentence(classifier.description)[:-1]
                    + " — the same as `zoo train image-classification`.")
    _add_task_options(p, classifier.options)
    p.set_defaults(func=cmd_train, kind=classifier.name, task_options=classifier.options)

    p = _subcommand(sub, "generate", "write text with a trained text-generation run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by zoo train text-generation")
    p.add_argument("--prompt", default="", help="where the text starts (default: empty, as after a line break)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="softmax temperature; lower is safer, 0 takes the likeliest character (default: 1.0)")
    p.add_argument("--length", type=int, default=200, help="characters to generate, at most 10000 (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same text (default: 0)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest characters; 0: all (default: 0)")
    p.set_defaults(func=cmd_generate)
    _trust_flag(p)

    p = _subcommand(sub, "predict", "labels for images from a fine-tuned run, an exported .tflite or .onnx file "
                                    "(or a server with --url)")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR|FILE", help="a run directory written by zoo finetune, or "
                                                                      "a .tflite or .onnx file zoo export wrote")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders of them")
    p.add_argument("--url", help="a TF Serving REST endpoint, e.g. http://127.0.0.1:8501")
    p.add_argument("--model", help="with --url: the served model's name")
    p.add_argument("--top", type=int, default=1, help="labels per image (default: 1)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average the image, its mirror "
                                                      "image and five 90%% crops (not with --url)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--csv", metavar="FILE", help="also write one row per image to FILE")
    p.add_argument("--out", metavar="DIR", help="a segmentation run: where each image's mask (STEM.mask.png, a "
                                                "palette PNG of class indices) and overlay go (default: masks/)")
    p.set_defaults(func=cmd_predict)
    _trust_flag(p)

    p = _subcommand(sub, "show", "a grid of training images as a run would see them, with their labels",
                    "Write a PNG of N training images from DATA_DIR (one sub-folder per class) after the "
                    "resizing, augmentation and mixing a run with these options applies (fastai's show_batch).")
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder of images per class")
    p.add_argument("--out", default="batch.png", help="the PNG to write (default: batch.png)")
    p.add_argument("--n", type=int, default=16, help="images to show, 1 to 256 (default: 16)")
    p.add_argument("--image-size", type=int, default=224, help="input size in pixels (default: 224)")
    p.add_argument("--augment", action="store_true", help="the training augmentation (flip, rotate, zoom, contrast)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="A", help="MixUp's alpha (default: 0, off)")
    p.add_argument("--cutmix", type=float, default=0.0, metavar="A", help="CutMix's alpha (default: 0, off)")
    p.add_argument("--seed", type=int, default=0, help="the split and the draws (default: 0)")
    p.set_defaults(func=cmd_show)

    p = _subcommand(sub, "explain", "show where an image classifier looked (Grad-CAM, saliency, ...)",
                    "Write an overlay PNG per image: the photo, the heat map of where the model found the "
                    "class (the predicted one unless --class), the label and its probability.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of them")
    p.add_argument("--model", help="a registry image model (zoo list)")
    p.add_argument("--run", help="a run directory (zoo finetune) or a .keras model file; may also be given "
                                 "as the last IMAGE argument")
    p.add_argument("--method", default="gradcam",
                   choices=["gradcam", "gradcam++", "saliency", "smoothgrad", "integrated-gradients"],
                   help="attribution method (default: gradcam)")
    p.add_argument("--class", dest="class_", metavar="LABEL",
                   help="explain this class (a label or an index) instead of the predicted one")
    p.add_argument("--layer", help="the layer Grad-CAM looks at (default: the last convolutional block)")
    p.add_argument("--weights", help="with --model: weights variant name or file (default: the model's default)")
    p.add_argument("--out", default="explain", metavar="DIR", help="where the overlays go (default: explain/)")
    p.add_argument("--overwrite", action="store_true", help="replace overlays already in DIR")
    p.add_argument("--json", action="store_true", help="print class, probability, map peak and overlay as JSON")
    p.set_defaults(func=cmd_explain)
    _trust_flag(p)

    p = _subcommand(sub, "filters", "picture what each filter of a layer responds to (activation maximisation)",
                    "Gradient ascent on an image per filter, from gray, with jitter, 1/f-weighted steps and a "
                    "decay that keep the pictures readable (Olah et al., 2017); one labelled grid PNG.")
    p.add_argument("--model", required=True, help="a registry image model, a run directory or a .keras file")
    p.add_argument("--layer", required=True, help="a layer with a (N, H, W, C) output, e.g. block3_conv1")
    p.add_argument("--n", type=int, default=64, help="filters to picture, from the first (default: 64)")
    p.add_argument("--weights", help="with a registry model: weights variant, file, or none (default: the model's)")
    p.add_argument("--size", type=int, help="picture size in pixels; builds a registry model without its top "
                                            "at that size (default: the model's input size)")
    p.add_argument("--steps", type=int, default=64, help="gradient-ascent steps (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="the starting noise (default: 0)")
    p.add_argument("--out", default="filters.png", metavar="OUT.png", help="the grid (default: filters.png)")
    p.set_defaults(func=cmd_filters)
    _trust_flag(p)

    p = _subcommand(sub, "activations", "show one image's feature maps at a layer, as a grid PNG")
    p.add_argument("image", metavar="IMAGE", help="an image file")
    p.add_argument("--model", required=True, help="a registry image model, a run directory or a .keras file")
    p.add_argument("--layer", required=True, help="a layer with a (N, H, W, C) output")
    p.add_argument("--n", type=int, default=64, help="channels to show, most active first (default: 64)")
    p.add_argument("--weights", help="with a registry model: weights variant, file, or none (default: the model's)")
    p.add_argument("--out", default="activations.png", metavar="OUT.png", help="the grid (default: activations.png)")
    p.set_defaults(func=cmd_activations)
    _trust_flag(p)

    p = _subcommand(sub, "sample", "draw images with a trained gan run, as one grid PNG")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by zoo train gan")
    p.add_argument("--n", type=int, default=64, help="images to draw, at most 10000 (default: 64)")
    p.add_argument("--out", default="grid.png", metavar="OUT.png", help="where the grid goes (default: grid.png)")
    p.add_argument("--seed", type=int, default=0, help="the same seed draws the same images (default: 0)")
    p.set_defaults(func=cmd_sample)
    _trust_flag(p)

    p = _subcommand(sub, "lr-find", "sweep the learning rate on a folder of images")
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder of images per class")
    p.add_argument("--model", required=True, help="a registry image model (zoo list)")
    p.add_argument("--weights", default="default", help="imagenet | none | FILE (default: the model's default)")
    p.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32, help="default: 32")
    p.add_argument("--plot", default="lr_find.png", help="where the loss-vs-rate plot goes (default: lr_find.png)")
    p.set_defaults(func=cmd_lr_find)

    p = _subcommand(sub, "style", "paint a photo in the style of a painting (Gatys et al., VGG19)")
    _add_task_options(p, tasks.entry("style-transfer").options)  # = zoo train style-transfer
    p.set_defaults(func=cmd_style)

    try:
        from zoo.serving.cli import add_commands
    except ImportError:  # serving room not installed in this build
        pass
    else:
        add_commands(sub)
    return parser


# Python's names for what the command line calls otherwise.
FLAG_OF = {"name": "--model", "class_": "--class", "n": "--n", "top": "--top", "data_dir": "DATA_DIR",
           "content": "CONTENT", "style": "STYLE", "run_dir": "RUN_DIR"}


def cli_words(message):
    """An error of the Python API in the command line's words.

    zoo's messages follow Keras' convention, "`key` must ... Received: key=value", and
    name Python functions; a command-line user typed `--key value` and runs `zoo list`.
    """
    def flag(key):
        return FLAG_OF.get(key, "--" + key.replace("_", "-"))

    message = re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: flag(m.group(1)), message)
    message = re.sub(r"\.?\s*Received: ([a-z][a-z0-9_]*)=(.*)$", lambda m: f" (given: {m.group(2)})", message)
    message = message.replace("See zoo.list_models() or `zoo list` for all of them", "`zoo list` shows them all")
    return message.replace("zoo.list_models()", "`zoo list`")


def main(argv=None):
    for stream in (sys.stdout, sys.stderr):
        # A file name need not be valid UTF-8; printing one must not end the command.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from zoo import __version__

        print(__version__)
        return EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from zoo.errors import ZooError

    from zoo.cli.checks import check, needs_backend

    try:
        check(args)  # what can be refused before TensorFlow starts, in well under a second
        if not needs_backend(args):
            pass
        elif getattr(args, "distribute", None) == "multiworker":
            from zoo.cli.console import start_backend

            # start_backend holds stderr until TensorFlow is up: the wait for the other
            # workers speaks on a copy of it.
            with os.fdopen(os.dup(2), "w") as terminal:
                start_backend(lambda: _multi_worker_setup(terminal))
        else:
            from zoo.cli.console import start_backend

            start_backend()
        return args.func(args)
    except ZooError as error:
        print(f"zoo {args.command}: error: {cli_words(str(error))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `zoo info vgg19 | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
