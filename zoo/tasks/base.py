"""What a task module declares: its options (as data, so the CLI builds its parser
without importing TensorFlow or Keras) and the common option set of a training run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """One option of a task: a CLI flag and a keyword argument of `zoo.train`.

    Attributes:
        name: str. The Python keyword (`freeze_epochs`); the flag is `--freeze-epochs`.
        type: callable or None. Converts the CLI string (None: a switch).
        default: the default when starting a run. `None` in a resumed run means "as
            the run was started".
        help: str.
        positional: bool. A positional CLI argument (the data).
        required: bool. The CLI requires it.
        metavar: str or None.
    """

    name: str
    type: object = str
    default: object = None
    help: str = ""
    positional: bool = False
    required: bool = False
    metavar: str | None = None

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


# What every kind of training takes besides its own options.
RUN_OPTIONS = (
    Option("out", str, None, "the run directory", required=True, metavar="RUN_DIR"),
    Option("resume", None, False, "continue the interrupted run in --out from its last finished epoch"),
    Option("overwrite", None, False, "replace the run in --out (its model, metrics and checkpoints)"),
    Option("seed", int, None, "random seed (default: 0)"),
    Option("precision", str, None, "auto | float32 | mixed_float16 | mixed_bfloat16 (default: auto: "
           "mixed_bfloat16 on GPUs from Ampere on and TPUs, mixed_float16 on older GPUs, float32 on CPUs)"),
    Option("early_stopping", int, None, "stop after this many epochs without improvement (default: off)"),
    Option("no_tensorboard", None, False, "write no TensorBoard logs (RUN_DIR/logs)"),
    Option("distribute", str, "none", "none | mirrored (this machine's GPUs, or its CPU devices; the batch "
           "size is the global batch) | multiworker (the machines TF_CONFIG names; run the same command on each) "
           "(default: none)"),
)
# What a new run of any kind starts with for the run options that are settings.
RUN_DEFAULTS = {"seed": 0, "precision": "auto", "early_stopping": None}


@dataclass
class RunStart:
    """A run that `start_run` has checked and settled: where it goes, its settings, and
    whether it resumes. A task builds its model in `settings.building()`, trains with
    `fit(..., settings=run.settings, tracking=run.tracking())` and ends with `finish_run`.

    Attributes:
        out: Path. The run directory.
        config: dict. Every setting of the run (what run.json records).
        resuming: bool. Whether it continues an interrupted run.
        settings: `zoo.training.Settings`. Precision and strategy, settled.
        tensorboard: bool. Whether the run writes TensorBoard logs.
    """

    out: object
    config: dict
    resuming: bool
    settings: object
    tensorboard: bool = True

    def tracking(self, **changes):
        """The run's `zoo.training.Tracking`: its directory, resume, TensorBoard and
        early stopping, with `changes`."""
        from zoo.training import Tracking

        return Tracking(run_dir=self.out, resume=self.resuming, tensorboard=self.tensorboard,
                        early_stopping=self.config.get("early_stopping"), **changes)

    def write_config(self, kind, **more):
        """Write run.json (a new run only: a resumed run keeps the one it started with)."""
        from zoo import runs

        self.config.update(more)
        if not self.resuming:
            runs.write_config(self.out, kind, self.config)


def start_run(kind, out, options, *, defaults, keys, required=(), resume=False, overwrite=False, float16=True,
              distribute="none", tensorboard=True):
    """Check the run directory and settle a run's settings; returns a `RunStart`.

    A new run takes `defaults` (a dict, or a callable `(options) -> dict` for defaults
    that depend on what was given) for every option left out (None) and must name
    each of `required`; a resumed run takes the settings it was started with, and an
    option given must equal the run's (`zoo.runs.check_resume` names the first that
    differs). An option given as `"auto"` that the run settled when it started (and
    recorded as `KEY_auto`) agrees with the value it settled on. The random seed is set
    here, so every kind starts the same way. A precision of `"auto"` is settled here
    for this machine (`float16=False` for a kind that cannot train in float16), and
    the strategy `distribute` names is made (`zoo.training.Settings.for_run`).

    Raises:
        TypeError: an option that is not one of `keys`.
        zoo.errors.ZooError: a missing required option, a bad precision, or a run
            directory that cannot be used as asked.
    """
    import keras

    from zoo import runs
    from zoo.errors import OptionError, ZooError
    from zoo.training import PRECISIONS, Settings, resolve_precision

    unknown = set(options) - set(keys)
    if unknown:
        raise TypeError(f"Unknown option(s) for the {kind} task: {sorted(unknown)}")
    options = settle_precision(options, float16)
    resuming = runs.prepare(out, resume=resume, overwrite=overwrite)
    if resuming:
        saved = runs.read_config(out)
        check_kind(out, saved, kind, required)
        given = {k: (None if options.get(k) == "auto" and saved.get(f"{k}_auto") else options.get(k)) for k in keys}
        config = runs.check_resume(saved, given)
    else:
        chosen = defaults(options) if callable(defaults) else defaults
        config = {**chosen, **{k: v for k, v in options.items() if v is not None}}
        missing = [k for k in required if config.get(k) is None]
        if missing:
            raise ZooError(f"The {kind} task needs {', '.join(missing)}.")
    if config.get("precision", "auto") not in PRECISIONS:
        raise OptionError(f"`precision` must be one of {', '.join(PRECISIONS)}. "
                          f"Received: precision={config['precision']!r}")
    config["precision"] = resolve_precision(config.get("precision"), float16)
    keras.utils.set_random_seed(config.get("seed") or 0)
    settings = Settings.for_run(config, distribute, float16=float16)
    from pathlib import Path

    return RunStart(Path(out), config, resuming, settings, tensorboard=tensorboard)


def check_kind(out, saved, kind, required):
    """Refuse to resume a run as another task's: its run.json must name `kind` and hold
    each setting a `kind` run records (a run.json whose kind was edited lacks them),
    or the checkpoint would be finished as a model it is not."""
    from zoo import runs
    from zoo.registry import canonical_task

    recorded = saved.get("kind")
    if not isinstance(recorded, str):
        raise runs.RunError(f"{out}/run.json names no task (kind={recorded!r}): it is damaged. "
                            "Pass --overwrite to start again.")
    if canonical_task(recorded) != kind:
        raise runs.RunError(f"{out} holds a {recorded} run, not a {kind} one: resume it with "
                            f"`zoo train {canonical_task(recorded)} --out {out} --resume`.")
    missing = [key for key in required if key not in saved]
    if missing:
        raise runs.RunError(f"{out}/run.json says {kind} but lacks {', '.join(missing)}, which every {kind} "
                            "run records: it was edited or damaged. Pass --overwrite to start again.")


def settle_precision(options, float16=True):
    """`options` with `precision="auto"` replaced by the policy it means here, so that a
    resumed run given `--precision auto` agrees with the policy run.json recorded."""
    if options.get("precision") != "auto":
        return options
    from zoo.training import resolve_precision

    return {**options, "precision": resolve_precision("auto", float16)}


def finish_run(out, model, result, extra=None, verbose=1, saved_model=None, plot_metrics=("loss",), evaluate=None):
    """Write a finished run: `model.keras` (the best epoch's weights, the last epoch's
    beside it when they differ), `metrics.json`, `curves.png`, the settings it trained
    with into run.json; drop the checkpoints.

    Args:
        out: path. The run directory.
        model: keras.Model. What `fit` trained (for a GAN, the whole GAN).
        result: `zoo.training.FitResult`.
        extra: dict or None. More keys for metrics.json (final scores, file names).
        saved_model: keras.Model or None. What goes into model.keras when it is not
            `model` itself (a GAN's generator, an autoencoder without its noise).
        plot_metrics: tuple of str. The history keys `curves.png` plots, a panel each.
        evaluate: callable `(model) -> dict` or None: the task's final scores of the
            model as it is saved (the best epoch's), added to metrics.json.
    """
    import sys
    from pathlib import Path

    from zoo import io, runs
    from zoo.plots import plot_history

    out = Path(out)
    checkpoint = result.checkpoint
    if result.restored_best and checkpoint is not None:
        checkpoint.restore(model, which="last")
        runs.save_weights(saved_model or model, out / runs.LAST_WEIGHTS_FILE)
        checkpoint.restore_best(model)
    best_epoch = result.best_epoch
    last_epoch = result.history[-1]["epoch"] if result.history else 0
    metrics = {
        "history": result.history,
        "step_history": result.step_history,  # the training scalars within the epochs
        "seconds": round(sum(h.get("seconds", 0.0) for h in result.history), 3),
        "monitor": result.monitor,
        "best_epoch": best_epoch,
        "best_value": result.best_value,
        "last_epoch": last_epoch,
        "stopped_early": result.stopped_early,
        "model_weights": (f"best epoch {best_epoch} of {last_epoch} by {result.monitor}; "
                          f"the last epoch's are in {runs.LAST_WEIGHTS_FILE}") if result.restored_best
        else f"last epoch ({last_epoch})",
        **result.info,
        **(evaluate(saved_model or model) if evaluate is not None else {}),
        **(extra or {}),
    }
    runs.save_model(saved_model or model, out / runs.MODEL_FILE)
    io.write_json(out / runs.METRICS_FILE, metrics)
    if result.settings is not None:
        io.write_json(out / runs.RUN_FILE, {**runs.read_config(out), "settings": result.settings.record()})
    plot_history(result.history, out / "curves.png", best_epoch=best_epoch if result.restored_best else None,
                 metrics=plot_metrics, step_history=result.step_history)
    if checkpoint is not None:
        checkpoint.clear()
    if verbose:
        final = metrics.get("val_accuracy")
        shown = f"validation accuracy {final:.4f}; " if final is not None else ""
        chosen = f"model from epoch {best_epoch} (best {result.monitor}); " if result.restored_best else ""
        print(f"{shown}{chosen}run written to {out}", file=sys.stderr)
    return metrics
