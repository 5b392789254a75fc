"""Checkpoint and resume for any model with any number of optimizers; the best epoch.

In the spirit of `keras.callbacks.BackupAndRestore`, with what it lacks: it restores
every optimizer the model holds (a GAN has two), not only `model.optimizer`; it writes
only what changes; and it keeps the best epoch by a validation metric (fastai's
`SaveModelCallback`) beside the last one.

What changes during a `fit`: the weights of layers that are frozen (`trainable=False`)
cannot, so they are written once per fit into `frozen-KEY.npz` (KEY names the set of
variables), and each epoch writes only the rest — trainable weights, statistics of
trainable BatchNorm layers, random-seed states — and the optimizers' variables into
`last.npz`. A frozen ResNet50 base then costs one write per phase instead of one per
epoch. `state.json`, written last, names an epoch only once its files exist, so a run
killed at any moment resumes from its last finished epoch.

Variables are matched by their position in `model.variables` (and in each optimizer's
`variables`), with their shapes checked: the same architecture always lists them in the
same order, whatever the layer names.

    DIR/state.json      epochs done, history, best epoch, which files hold what
    DIR/frozen-KEY.npz  variables constant during a fit (written once per fit)
    DIR/last.npz        the rest, and the optimizers, after the last finished epoch
    DIR/best.npz        the rest at the best epoch so far
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from zoo import io
from zoo.errors import ZooError

STATE_FILE = "state.json"
LAST_FILE = "last.npz"
BEST_FILE = "best.npz"


class CheckpointError(ZooError, ValueError):
    """A checkpoint that cannot be resumed from (not zoo's, damaged, another model)."""


def frozen_variables(model):
    """Variables that training cannot change: the weights of frozen layers.

    A layer with `trainable=False` neither gets gradients nor (BatchNorm) updates its
    statistics. Seed-generator states are not weights, so they stay out even in a
    frozen layer: a Dropout draws new masks whether or not it is frozen.
    """
    frozen = {}

    def visit(layer):
        if not layer.trainable:
            for variable in layer.weights:
                frozen[id(variable)] = variable
            return
        for child in getattr(layer, "layers", ()):
            visit(child)

    for layer in model.layers:
        visit(layer)
    return frozen


def optimizers_of(model):
    """`{attribute: optimizer}` for every optimizer the model holds, sorted by name."""
    found = {}
    for name, value in sorted(vars(model).items()):
        if isinstance(value, keras.optimizers.Optimizer) and all(value is not v for v in found.values()):
            found[name.lstrip("_")] = value
    optimizer = getattr(model, "optimizer", None)
    if isinstance(optimizer, keras.optimizers.Optimizer) and all(optimizer is not v for v in found.values()):
        found["optimizer"] = optimizer
    return dict(sorted(found.items()))


def _built_on(optimizer):
    # Keras keeps no public list of the variables an optimizer was built for; resuming
    # needs it to rebuild an optimizer (a GAN's second one) before its first step.
    return getattr(optimizer, "_trainable_variables", None) or []


def _compare(mode, value, best):
    if best is None:
        return True
    return value > best if mode == "max" else value < best


class Checkpoint(keras.callbacks.Callback):
    """Per-epoch state of a model and its optimizers, and its best epoch.

    Args:
        directory: path or None. Where the state goes; None keeps it in memory (the best
            epoch still works, resume does not).
        monitor: str or None. The log key that picks the best epoch
            (`"val_accuracy"`). None keeps no best epoch.
        mode: `"max"` or `"min"`. Whether a higher or lower `monitor` is better.
        model: keras.Model or None. The model whose variables are saved, when it is not
            the one being fitted — e.g. the full model while only its head trains on
            cached features. Defaults to the fitted model.
        history: list or None. Per-epoch records to keep with the state (shared with the
            history writer), restored on resume.
        resume: bool. Restore the last finished epoch when training begins.
        step_history: list or None. The records within the epochs, kept like `history`.
    """

    def __init__(self, directory=None, monitor=None, mode="max", model=None, history=None, resume=False,
                 step_history=None):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max' or 'min'. Received: mode={mode!r}")
        self.directory = Path(directory) if directory else None
        self.monitor = monitor
        self.mode = mode
        self.saved_model = model
        self.history = history if history is not None else []
        self.step_history = step_history if step_history is not None else []
        self._memory = {}
        self._current = set()  # frozen files written (or restored) by this object
        self._state = self._read_state() if resume else None
        self._restore_pending = self._state is not None
        if self._state:
            self.history[:] = self._state.get("history", [])
            self.step_history[:] = self._state.get("step_history", [])
        self.segment = None  # the caller's name for the current fit call (a phase)
        self.tie_monitor = None  # breaks ties of `monitor` (lower is better), e.g. val_loss

    # ---------------------------------------------------------------- what is stored
    @property
    def state(self):
        """The last saved state (`epochs_done`, `history`, `best_epoch`, …) or None."""
        return self._state

    @property
    def epochs_done(self):
        return int(self._state["epochs_done"]) if self._state else 0

    @property
    def best_epoch(self):
        return (self._state or {}).get("best_epoch")

    def _read_state(self):
        if self.directory is None:
            return None
        return io.read_json(self.directory / STATE_FILE)

    def _target(self):
        return self.saved_model if self.saved_model is not None else self.model

    def _write_arrays(self, name, arrays):
        if self.directory is None:
            self._memory[name] = [np.array(a) for a in arrays]
            return
        with io.atomic_path(self.directory / name) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, *arrays)

    def _read_arrays(self, name):
        if self.directory is None:
            return self._memory[name]
        path = self.directory / name
        try:
            with np.load(path, allow_pickle=False) as saved:
                return [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except ValueError as error:
            # A pickled array would run code while it loads; a checkpoint never holds one.
            raise CheckpointError(f"Refusing to resume from {path}: it is not a checkpoint zoo wrote "
                                  f"({str(error).splitlines()[0]}). Pass --overwrite to start again.") from None
        except (OSError, EOFError) as error:
            raise CheckpointError(f"Cannot resume from {path}: {error}. Pass --overwrite to start again.") from None

    # ------------------------------------------------------------- split per fit
    def _split(self, model):
        variables = list(model.variables)
        frozen = frozen_variables(model)
        frozen_idx = [i for i, v in enumerate(variables) if id(v) in frozen]
        dynamic_idx = [i for i, v in enumerate(variables) if id(v) not in frozen]
        key = hashlib.sha1(json.dumps([len(variables), frozen_idx]).encode()).hexdigest()[:12]
        return variables, frozen_idx, dynamic_idx, f"frozen-{key}.npz"

    def on_train_begin(self, logs=None):
        model = self._target()
        self._variables, self._frozen_idx, self._dynamic_idx, self._frozen_file = self._split(model)
        if self._restore_pending:
            # Optimizer state belongs to one fit call: a resumed second phase must not
            # receive the first phase's optimizer.
            same_segment = self._state.get("segment") == self.segment
            self.restore(model, self.model if same_segment else None, which="last")
            self._restore_pending = False
            self._current.add(self._state["last_layout"]["frozen_file"])
        # A file of an earlier run (or phase) with the same key may hold other values:
        # write the frozen set once per fit unless it is the one just restored.
        if self._frozen_file not in self._current:
            self._write_arrays(self._frozen_file, [np.asarray(self._variables[i]) for i in self._frozen_idx])
            self._current.add(self._frozen_file)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        optimizers = optimizers_of(self.model)
        by_id = {id(v): i for i, v in enumerate(self._variables)}
        arrays = [np.asarray(self._variables[i]) for i in self._dynamic_idx]
        layout = {"dynamic": self._dynamic_idx, "frozen_file": self._frozen_file, "optimizers": {}}
        for name, optimizer in optimizers.items():
            values = [np.asarray(v) for v in optimizer.variables]
            built_on = [by_id.get(id(v), -1) for v in _built_on(optimizer)]
            layout["optimizers"][name] = {"start": len(arrays), "count": len(values), "built_on": built_on}
            arrays.extend(values)
        self._write_arrays(LAST_FILE, arrays)

        state = dict(self._state or {})
        value = logs.get(self.monitor) if self.monitor else None
        tie = logs.get(self.tie_monitor) if self.tie_monitor else None
        improved = value is not None and np.isfinite(value) and (
            _compare(self.mode, float(value), state.get("best_value"))
            or (tie is not None and float(value) == state.get("best_value")
                and float(tie) < state.get("best_tie", np.inf)))
        if improved:
            self._link_best()
            state.update(best_epoch=epoch + 1, best_value=float(value), best_layout=layout,
                         best_tie=None if tie is None else float(tie))
        state.update(
            epochs_done=epoch + 1, history=list(self.history), step_history=list(self.step_history),
            last_layout=layout,
            monitor=self.monitor, mode=self.mode, segment=self.segment, saved_at=time.time(),
        )
        self._write_state(state)

    def _link_best(self):
        """best.npz := last.npz, without writing the arrays a second time."""
        if self.directory is None:
            self._memory[BEST_FILE] = self._memory[LAST_FILE]
            return
        last = self.directory / LAST_FILE
        with io.atomic_path(self.directory / BEST_FILE) as tmp:
            try:
                os.link(last, tmp)  # last.npz is replaced, never rewritten, so the link keeps this epoch
            except OSError:  # a filesystem without hard links
                import shutil

                shutil.copyfile(last, tmp)

    def _write_state(self, state):
        self._state = state
        if self.directory is None:
            return
        io.write_json(self.directory / STATE_FILE, state)
        self._remove_unreferenced()

    def _remove_unreferenced(self):
        keep = {STATE_FILE, LAST_FILE, BEST_FILE, self._frozen_file}
        for key in ("last_layout", "best_layout"):
            if self._state.get(key):
                keep.add(self._state[key]["frozen_file"])
        for path in self.directory.glob("frozen-*.npz"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    # --------------------------------------------------------------------- restore
    def restore(self, model=None, trainer=None, which="last"):
        """Put the saved `which` (`"last"` or `"best"`) epoch back into `model`'s
        variables and, for `"last"`, into `trainer`'s optimizers. Returns the epoch."""
        state = self._state
        layout = (state or {}).get(f"{which}_layout")
        if not layout:
            return None
        model = model if model is not None else self._target()
        variables = list(model.variables)
        frozen_file = layout["frozen_file"]
        dynamic = set(layout["dynamic"])
        frozen_idx = [i for i in range(len(variables)) if i not in dynamic]
        values = self._read_arrays(LAST_FILE if which == "last" else BEST_FILE)
        frozen_values = self._read_arrays(frozen_file)
        if len(frozen_values) != len(frozen_idx):
            raise CheckpointError(f"{self.directory or 'checkpoint'}: {frozen_file} does not fit this model. "
                                  "Pass --overwrite to start again.")
        for index, value in zip(frozen_idx, frozen_values):
            _assign(variables[index], value)
        for index, value in zip(layout["dynamic"], values):
            _assign(variables[index], value)
        if which == "last" and trainer is not None:
            optimizers = optimizers_of(trainer)
            for name, entry in layout["optimizers"].items():
                optimizer = optimizers.get(name)
                if optimizer is None:
                    continue
                if not optimizer.built:
                    optimizer.build([variables[i] for i in entry["built_on"] if i >= 0])
                saved = values[entry["start"]:entry["start"] + entry["count"]]
                if len(saved) != len(optimizer.variables):
                    raise CheckpointError(f"The saved state of optimizer {name!r} does not fit: "
                                     f"{len(saved)} variables saved, {len(optimizer.variables)} now.")
                for variable, value in zip(optimizer.variables, saved):
                    _assign(variable, value)
        return state["epochs_done"] if which == "last" else state.get("best_epoch")

    def restore_best(self, model=None):
        """Load the best epoch's weights into `model`; returns that epoch (or None)."""
        if not (self._state or {}).get("best_layout"):
            return None
        return self.restore(model, which="best")

    def clear(self):
        """Remove the checkpoint files (after a run has finished and been saved)."""
        self._memory.clear()
        if self.directory is None or not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            if path.is_file() and (path.suffix in (".npz", ".json") or ".tmp" in path.name):
                path.unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            pass


def _assign(variable, value):
    if tuple(variable.shape) != tuple(value.shape):
        raise CheckpointError(f"Checkpoint does not fit the model: {variable.path} has shape "
                         f"{tuple(variable.shape)}, the saved value {tuple(value.shape)}.")
    variable.assign(value)
