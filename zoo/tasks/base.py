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
    Option("precision", str, None, "float32 | mixed_float16 | mixed_bfloat16 (default: float32)"),
    Option("early_stopping", int, None, "stop after this many epochs without improvement (default: off)"),
    Option("no_tensorboard", None, False, "write no TensorBoard logs (RUN_DIR/logs)"),
)
