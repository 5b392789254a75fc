"""`zoo export` and `zoo serve`: argument parsing only; the work is in export.py and
server.py. Handlers import TensorFlow when they run, so `zoo --help` stays fast."""

from __future__ import annotations

import argparse
import sys


def add_commands(subparsers):
    """Add `export` and `serve` to the `zoo` command's subparsers."""
    p = subparsers.add_parser(
        "export",
        help="write a model as a SavedModel that TF Serving loads (NAME/VERSION/)",
        description=(
            "Export a run directory, a .keras file or a registry model as OUT/NAME/VERSION/, "
            "a SavedModel with its task's signatures: for an image classifier serving_default "
            "(float pixels), serving_uint8, serving_bytes (JPEG/PNG bytes), top_k (class names "
            "and scores), classify and explain; a text generator, an autoencoder or a GAN its "
            "own. The version is written to a temporary directory and renamed into place."
        ),
        epilog=("examples:\n  zoo export runs/birds --name birds --out models/\n"
                "  zoo export lenet5 --out models/ --version 3\n"
                "  zoo export runs/birds --format litert,onnx --quantize int8\n"
                "  zoo predict models/birds/birds.int8.tflite photo.jpg"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="RUN_DIR|FILE.keras|MODEL",
                   help="a zoo train run directory, a .keras model file or a registry model name")
    p.add_argument("--name", help="served model name (default: the model's name)")
    p.add_argument("--out", default="models", help="model base directory (default: models)")
    p.add_argument("--version", type=int, help="version number (default: highest existing + 1)")
    p.add_argument("--top-k", type=int, default=5, help="labels the top_k signature returns (default: 5)")
    p.add_argument("--format", default="savedmodel",
                   help="savedmodel, litert (a .tflite file), onnx, or several separated by commas; LiteRT and "
                        "ONNX files go to OUT/NAME/ beside the versions, with labels.txt (a classifier) or "
                        "vocabulary.json (a char-LSTM's one-step file) (default: savedmodel)")
    p.add_argument("--quantize", choices=("float16", "int8"),
                   help="the LiteRT file's quantisation: float16 weights, or int8 full-integer (classifiers) "
                        "calibrated on the run's training images (default: float32)")
    p.add_argument("--representative", metavar="DIR",
                   help="images to calibrate --quantize int8 on (default: the run's own training images)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing .tflite/.onnx file "
                                                            "(SavedModel versions are never replaced)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a hub layer in the model file download the module its URL names and run its "
                        "graph (a model file never fetches otherwise); only for files you trust")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "serve",
        help="serve exported models over TF Serving's REST and gRPC APIs",
        description=(
            "Serve every MODELS/NAME/ (highest VERSION; new versions are picked up "
            "without a restart), or the models of a TF Serving model config file, with "
            "TF Serving's REST and gRPC contract: predict, classify, regress, metadata, "
            "status, version labels, Prometheus metrics. For machines without TF "
            "Serving; production runs tensorflow/serving on the same directory or config. "
            "TF Serving's flag names (--model_config_file, --enable_batching, "
            "--rest_api_port, ...) are accepted too; note that zoo's --port is the REST "
            "port (TF Serving's --port is gRPC: use --grpc-port). SIGINT or SIGTERM stops it "
            "gracefully: no new connections, the requests in flight answered (--grace-period-seconds), "
            "then exit 0."
        ),
        epilog=("examples:\n  zoo serve models/\n  zoo serve models/ --port 8601 --grpc-port -1\n"
                "  zoo serve --model_config_file models.config --file_system_poll_wait_seconds 5\n"
                "  zoo serve models/ --enable_batching --batching_parameters_file batching.config\n"
                "  curl http://127.0.0.1:8501/v1/models/birds"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("base_path", metavar="MODELS", nargs="?",
                   help="directory of NAME/VERSION/ SavedModels (or give --model-config-file)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, loopback)")
    p.add_argument("--port", "--rest-api-port", "--rest_api_port", dest="port", type=int, default=8501,
                   help="REST port (default: 8501)")
    p.add_argument("--ui", action="store_true",
                   help="also serve a web page at / on the REST port: drop images on a classifier and see its "
                        "labels and where it looked, write with a char-LSTM, see an autoencoder's "
                        "reconstructions or a GAN's samples (files shipped with zoo; works offline)")
    p.add_argument("--grpc-port", "--grpc_port", dest="grpc_port", type=int, default=8500,
                   help="gRPC port, -1 for none (default: 8500)")
    p.add_argument("--model-config-file", "--model_config_file", dest="model_config_file", metavar="FILE",
                   help="TF Serving's text-format ModelServerConfig: several models, version policies "
                        "(latest/all/specific) and labels; re-read when it changes")
    p.add_argument("--poll-seconds", "--file-system-poll-wait-seconds", "--file_system_poll_wait_seconds",
                   "--model_config_file_poll_wait_seconds", dest="poll_seconds", type=float, default=1.0,
                   help="how often to look for new versions and config changes (default: 1)")
    p.add_argument("--enable-batching", "--enable_batching", dest="enable_batching", nargs="?", const=True,
                   default=False, type=_flag, help="merge concurrent requests into one model call")
    p.add_argument("--batching-parameters-file", "--batching_parameters_file", dest="batching_parameters_file",
                   metavar="FILE", help="TF Serving's text-format batching parameters (max_batch_size, "
                                        "batch_timeout_micros, ...); implies --enable-batching")
    p.add_argument("--rest-api-enable-cors-support", "--rest_api_enable_cors_support", dest="enable_cors",
                   nargs="?", const=True, default=False, type=_flag,
                   help="CORS headers on REST answers, for browser clients")
    p.add_argument("--tensorflow-intra-op-parallelism", "--tensorflow_intra_op_parallelism", dest="intra_op",
                   type=int, default=0, help="threads each model uses inside one op (default: 0, TF's choice)")
    p.add_argument("--tensorflow-inter-op-parallelism", "--tensorflow_inter_op_parallelism", dest="inter_op",
                   type=int, default=0, help="ops each model runs at once (default: 0, TF's choice; 1 and 1 "
                                             "serve a small model fastest on few cores)")
    p.add_argument("--monitoring-config-file", "--monitoring_config_file", dest="monitoring_config_file",
                   metavar="FILE", help="TF Serving's MonitoringConfig (text proto): prometheus_config { enable: "
                                        "true path: \"/monitoring/prometheus/metrics\" } serves Prometheus "
                                        "metrics at that path, enable: false serves none (default without the "
                                        "file: metrics on at /monitoring/prometheus/metrics)")
    limits = p.add_argument_group(
        "REST limits", "what clients may hold of the REST server; each refusal is a JSON {\"error\": ...} "
                       "with the status named, on a connection then closed")
    limits.add_argument("--max-body-mb", type=float, default=32.0,
                        help="largest request body in MiB, refused from its Content-Length before it is read "
                             "(413; default: 32)")
    limits.add_argument("--max-connections", "--rest-api-max-connections", "--rest_api_max_connections",
                        dest="max_connections", type=int, default=256,
                        help="REST connections served at once; one more gets a 503 at once (default: 256)")
    limits.add_argument("--rest-api-max-header-bytes", "--rest_api_max_header_bytes", dest="max_header_bytes",
                        type=int, default=65536,
                        help="request line and headers of one request, in bytes (431; default: 65536)")
    limits.add_argument("--rest-api-max-header-bytes-in-flight", "--rest_api_max_header_bytes_in_flight",
                        dest="max_header_bytes_in_flight", type=int, default=16 * 1024 * 1024,
                        help="incomplete request headers held over all connections, in bytes (503 to the "
                             "connection that crosses it; default: 16777216)")
    limits.add_argument("--rest-api-timeout-in-ms", "--rest_api_timeout_in_ms", dest="timeout_ms", type=int,
                        default=30000, help="deadline of a REST request, from its last byte to its answer "
                                            "(504; 0: none; default: 30000, as TF Serving)")
    limits.add_argument("--rest-api-header-timeout-in-ms", "--rest_api_header_timeout_in_ms",
                        dest="header_timeout_ms", type=int, default=10000,
                        help="time from a request's first byte to the end of its headers: slow clients "
                             "(408; default: 10000)")
    limits.add_argument("--rest-api-idle-timeout-in-ms", "--rest_api_idle_timeout_in_ms", dest="idle_timeout_ms",
                        type=int, default=60000,
                        help="silence allowed on a connection between requests (then closed) or mid-body "
                             "(408; default: 60000)")
    limits.add_argument("--rest-api-num-threads", "--rest_api_num_threads", dest="rest_threads", type=int,
                        default=0, help="threads running REST requests' model calls (default: 0: 4 per core, at "
                                        "least 8; with batching, --max-connections)")
    limits.add_argument("--grace-period-seconds", "--grace_period_seconds", dest="grace_seconds", type=float,
                        default=10.0, help="on SIGINT or SIGTERM: stop accepting, answer the requests in flight "
                                           "for up to this long, then exit (default: 10)")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser(
        "ui",
        help="open a web page on a run, a .keras file or a registry model (export + zoo serve --ui)",
        description=(
            "Export each SOURCE to a temporary folder and serve it with the web page (zoo serve --ui): "
            "drop images on a classifier and see its labels and where it looked, write with a char-LSTM, "
            "see an autoencoder's reconstructions or a GAN's samples. The folder is removed when the "
            "server stops (Ctrl-C or SIGTERM)."
        ),
        epilog="examples:\n  zoo ui runs/birds\n  zoo ui runs/birds runs/shakespeare --port 8600",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", metavar="RUN_DIR|FILE.keras|MODEL", nargs="+",
                   help="zoo train run directories, .keras model files or registry model names")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, loopback)")
    p.add_argument("--port", type=int, default=8501, help="the page's (and REST's) port; 0 picks a free one "
                                                          "(default: 8501)")
    p.add_argument("--max-body-mb", type=float, default=32.0,
                   help="largest request body in MiB: the largest image the page sends (default: 32)")
    p.set_defaults(func=cmd_ui)


def _flag(text):
    """TF Serving's boolean flags: `--enable_batching`, `--enable_batching=true|false`."""
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def cmd_export(args):
    from pathlib import Path

    from zoo.serving.export import curl_example, docker_command, export

    name = args.name or _default_name(args.source)
    options = dict(version=args.version, top_k=args.top_k, format=args.format, quantize=args.quantize,
                   representative=args.representative, overwrite=args.overwrite)
    if args.trust_remote_code:
        from zoo.transfer.hub import trust_remote_code

        with trust_remote_code():
            written = export(args.source, args.out, name, **options)
    else:
        written = export(args.source, args.out, name, **options)
    written = written if isinstance(written, list) else [written]
    files = [p for p in written if not p.is_dir()]
    for path in files:
        print(f"exported {name} as {path} ({path.stat().st_size / 1e6:.2f} MB; labels in {path.parent / 'labels.txt'})")
    if files:
        print(f"check it here: zoo predict {files[0]} IMAGE...")
    versions = [p for p in written if p.is_dir()]
    if not versions:
        return 0
    path = versions[0]
    print(f"exported {name} version {path.name} to {path}")
    print("\nserve it with TF Serving:")
    print(f"  {docker_command(Path(path).parent)}")
    print("or with zoo:")
    print(f"  zoo serve {args.out}")
    print("then:")
    from zoo.serving.export import read_metadata

    metadata = read_metadata(path)
    if metadata.get("task", "image-classification") == "image-classification":
        print(f"  {curl_example(name)}")
        print(f"  zoo predict --url http://localhost:8501 --model {name} image.jpg")
    else:
        # Another kind's signatures take other inputs: name them, for the request to send.
        for signature, described in metadata.get("signatures", {}).items():
            print(f"  POST http://localhost:8501/v1/models/{name}:predict  signature_name={signature}: "
                  f"instances of {{{', '.join(described['inputs'])}}} -> {', '.join(described['outputs'])}")
    return 0


def _default_name(source):
    import re
    from pathlib import Path

    path = Path(source)
    if path.is_dir() or (path.suffix == ".keras" and path.is_file()):
        name = path.resolve().name if path.is_dir() else path.stem
        return re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip(".-") or "model"
    return str(source)


def configure_logging():
    """`zoo serve`'s log: one timestamped line per event, on stderr.

    TensorFlow's logger has a handler of its own (added when it was first used, before
    the root logger had one) and also hands its records to the root logger: each of
    its lines came out twice — `INFO:tensorflow:Restoring parameters from M/1/variables`
    and the same with a time — for every model version loaded, beside zoo's own
    `serving M version 1 from M/1`. Its records now reach the root handler only, and
    from WARNING up: zoo's line is the one that says a version was restored.
    """
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tensorflow = logging.getLogger("tensorflow")
    for handler in list(tensorflow.handlers):
        tensorflow.removeHandler(handler)
    tensorflow.setLevel(logging.WARNING)


def cmd_serve(args):
    if (args.base_path is None) == (args.model_config_file is None):
        print("zoo serve: give a MODELS directory or --model-config-file FILE (one of them).", file=sys.stderr)
        return 2
    from zoo.serving.server import ModelServer

    from zoo.serving.metrics import DEFAULT_METRICS_PATH, read_monitoring_config

    metrics_path = DEFAULT_METRICS_PATH
    if args.monitoring_config_file:
        metrics_path = read_monitoring_config(args.monitoring_config_file)
    configure_logging()
    server = ModelServer(
        args.base_path,
        metrics_path=metrics_path,
        model_config_file=args.model_config_file,
        enable_batching=args.enable_batching,
        batching_parameters_file=args.batching_parameters_file,
        enable_cors=args.enable_cors,
        intra_op_threads=args.intra_op,
        inter_op_threads=args.inter_op,
        host=args.host,
        port=args.port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        poll_seconds=args.poll_seconds,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_connections=args.max_connections,
        max_header_bytes=args.max_header_bytes,
        max_header_bytes_in_flight=args.max_header_bytes_in_flight,
        request_timeout=args.timeout_ms / 1000 if args.timeout_ms > 0 else None,
        header_timeout=args.header_timeout_ms / 1000,
        idle_timeout=args.idle_timeout_ms / 1000,
        grace_period=args.grace_seconds,
        rest_threads=args.rest_threads or None,
        ui=args.ui,
    ).start()
    def announce():
        names = server.store.names()
        print(f"REST on {server.rest_url}" + (f", gRPC on {server.grpc_target}" if server.grpc_target else ""))
        print(f"models: {', '.join(names) if names else '(none yet: waiting for NAME/VERSION/ directories)'}")
        _announce(server, args.host)

    server.wait(announce)
    return 0


def _announce(server, host):
    if server.page_url:
        print(f"page: {server.page_url}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}, not loopback; there is no authentication.", file=sys.stderr)
    sys.stdout.flush()


def cmd_ui(args):
    import tempfile

    from zoo.serving.export import export
    from zoo.serving.server import ModelServer

    names = []
    for source in args.sources:
        name = base = _default_name(source)
        count = 1
        while name in names:  # two runs named alike: birds, birds-2
            count += 1
            name = f"{base}-{count}"
        names.append(name)
    with tempfile.TemporaryDirectory(prefix="zoo-ui-") as folder:
        for source, name in zip(args.sources, names):
            print(f"exporting {source} as {name}", flush=True)
            export(source, folder, name)
        print(f"exported to {folder} (removed when the server stops)")
        configure_logging()
        server = ModelServer(folder, host=args.host, port=args.port, grpc_port=None, poll_seconds=0, ui=True,
                             max_body_bytes=int(args.max_body_mb * 1024 * 1024)).start()
        server.wait(lambda: (print(f"models: {', '.join(names)}"), _announce(server, args.host)))
    return 0
