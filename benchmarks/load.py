"""The machine's load during a benchmark's timed parts, and the rule for README figures.

A figure measured on a shared machine means little without the load it was measured
under. Every benchmark here wraps each timed part in `Load.timed(...)`, prints the
1-minute load average beside the figure it times, and ends with `Load.verdict()`;
a benchmark that writes benchmarks/README.md itself asks `Load.may_write_readme()`
first, which refuses (and prints one line why) when the 1-minute load average was
above `QUIET` during any timed part.

    from benchmarks.load import Load

    load = Load()
    with load.timed("zoo, 3 epochs") as part:
        ...
    print(f"zoo: {seconds:.1f} s (load {part})")
    load.verdict()                       # one line: quiet or not, and which part was worst
    if load.may_write_readme():          # False, with one line printed, above QUIET
        write_readme(...)

The 1-minute load average is the kernel's: an average over the last minute of the
threads running or waiting for a CPU, this benchmark's own included. So a benchmark
that keeps both cores of a 2-core machine busy reads close to 2 by itself; beside the
load average this module prints about how much of it was the benchmark's own (the
cores it kept busy: its CPU seconds over the part's wall seconds), which tells a busy
machine from a busy benchmark. The rule itself is on the load average.

Sampling: at the start and end of each timed part, and every `interval` seconds in
between from a daemon thread (the kernel updates the average every 5 s). A sample is
one `os.getloadavg()` call (microseconds: it does not disturb what is timed); this
module imports nothing heavy (the GPU smoke run blocks TensorFlow).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

QUIET = 1.5  # the highest 1-minute load average under which figures may go into README.md


def load_average():
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_seconds():
    """CPU seconds used so far by this process and its finished, waited-for children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def highest(values):
    """The highest of some load averages or `Part`s (None where none is known)."""
    known = [v.max if isinstance(v, Part) else v for v in values]
    known = [v for v in known if v is not None]
    return max(known) if known else None


def text(value):
    """A load average (or a `Part`'s highest) as printed beside a figure: `1.92` or `?`."""
    value = value.max if isinstance(value, Part) else value
    return "?" if value is None else f"{value:.2f}"


class Part:
    """One timed part: its label, the load samples taken during it, its seconds."""

    def __init__(self, label):
        self.label = label
        self.loads = []
        self.seconds = None
        self.cpu = None  # CPU seconds this benchmark used during the part

    @property
    def max(self):
        """The highest 1-minute load average seen during the part (None: unknown)."""
        return max(self.loads) if self.loads else None

    @property
    def own(self):
        """The cores this benchmark kept busy on average during the part (its CPU seconds
        over the wall seconds; a child still running at the end is not counted)."""
        return self.cpu / self.seconds if self.cpu is not None and self.seconds else None

    def __str__(self):
        return text(self)

    def describe(self):
        """`1.92 (own ≈ 1.6)`: the highest load and about how much of it was this
        benchmark's own (the cores it kept busy)."""
        own = self.own
        return str(self) + ("" if own is None else f" (own ≈ {own:.1f})")

    def as_dict(self):
        return {"label": self.label, "seconds": self.seconds, "load_max": self.max,
                "load_samples": [round(v, 2) for v in self.loads],
                "own_cores": None if self.own is None else round(self.own, 2)}


class Load:
    """Samples the load average during timed parts; decides whether the run was quiet."""

    def __init__(self, interval=2.0, quiet=QUIET):
        self.interval = interval
        self.quiet = quiet
        self.parts = []
        self._active = []
        self._lock = threading.Lock()
        self._thread = None

    def _sample(self, parts):
        value = load_average()
        if value is not None:
            for part in parts:
                part.loads.append(value)

    def _run(self):
        while True:
            time.sleep(self.interval)
            with self._lock:
                parts = list(self._active)
            if parts:
                self._sample(parts)

    @contextlib.contextmanager
    def timed(self, label):
        """Time a part and sample the load during it; yields the `Part` (its `seconds`
        are set on exit)."""
        part = Part(label)
        self._sample([part])
        with self._lock:
            self._active.append(part)
            self.parts.append(part)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)
                self._thread.start()
        start, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield part
        finally:
            part.seconds = time.perf_counter() - start
            part.cpu = cpu_seconds() - cpu
            with self._lock:
                self._active.remove(part)
            self._sample([part])

    def worst(self):
        """The timed part with the highest load (None before any)."""
        known = [p for p in self.parts if p.max is not None]
        return max(known, key=lambda p: p.max) if known else None

    def is_quiet(self):
        """Whether the 1-minute load stayed at or under `quiet` during every timed part
        (False when it could not be read)."""
        worst = self.worst()
        return worst is not None and worst.max <= self.quiet

    def verdict(self):
        """One line: the highest load during the timed parts, and whether the run was
        quiet enough for its figures to go into benchmarks/README.md. Printed and returned."""
        worst = self.worst()
        if worst is None:
            line = "load: the load average could not be read; not a quiet run for benchmarks/README.md"
        else:
            quiet = worst.max <= self.quiet
            line = (f"load: highest 1-minute load average during the {len(self.parts)} timed parts "
                    f"{worst.describe()}, in '{worst.label}' — "
                    + (f"quiet (<= {self.quiet}): the figures may go into benchmarks/README.md" if quiet else
                       f"above {self.quiet}: not a quiet run, keep these figures out of benchmarks/README.md"))
        print(line, flush=True)
        return line

    def may_write_readme(self, path="benchmarks/README.md"):
        """True when the run was quiet; otherwise print one line why `path` is not written."""
        if self.is_quiet():
            return True
        worst = self.worst()
        why = ("the load average could not be read" if worst is None else
               f"the 1-minute load average reached {worst.describe()} during '{worst.label}', above {self.quiet}")
        print(f"not writing {path}: {why}", flush=True)
        return False

    def as_dict(self):
        return {"quiet_threshold": self.quiet, "quiet": self.is_quiet(), "parts": [p.as_dict() for p in self.parts]}
