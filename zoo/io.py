"""Atomic writes: the one place zoo writes a file a user keeps.

Every file is written to a temporary name in the same directory and renamed into place
(`os.replace` is atomic on POSIX and Windows), so a reader — or a run killed with
`kill -9` — sees the old file or the new one, never half of one.

    with atomic_path("runs/a/model.keras") as tmp:   # a writer that wants a path
        model.save(tmp)
    write_json("runs/a/run.json", {...})
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path

TMP_MARK = ".tmp"


@contextlib.contextmanager
def atomic_path(path, fsync=False):
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    The temporary name keeps `path`'s suffixes (`.keras`, `.weights.h5`, `.png`),
    because some writers choose the format from them. On any exception the temporary file is removed
    and `path` is left as it was.

    Args:
        path: str or PathLike. The file to write.
        fsync: bool. Flush the file to disk before the rename (for files that must
            survive a power cut, such as checkpoints). Defaults to `False`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name the writer creates itself, so the file gets the usual permissions
    # (mkstemp's 0600 would hide it from a server running as another user).
    # All suffixes are kept (`.weights.h5`): Keras picks the format from them.
    base, dot, suffixes = path.name.partition(".")
    tmp = path.with_name(f".{base}.{os.getpid()}.{secrets.token_hex(4)}{TMP_MARK}{dot}{suffixes}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def captured_stderr():
    """Hold what this process writes to file descriptor 2 in the block (C++ libraries'
    logs, which `sys.stderr` never sees, as well as Python's): yields a list that holds
    the captured lines once the block ends, for the caller to show or drop."""
    import sys
    import tempfile

    lines = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines.extend(captured.read().decode("utf-8", "replace").splitlines())


_STALE = re.compile(r"^\.[^/]*\.\d+\.[0-9a-f]{8}" + re.escape(TMP_MARK) + r"(\.|$)")


def remove_stale_temporaries(folder):
    """Remove the temporary files `atomic_path` leaves when its process is killed
    mid-write, anywhere under `folder`; returns how many. Only names `atomic_path`
    makes (`.NAME.PID.HEX.tmp.SUFFIX`) are touched: a run resumed after a kill holds
    none of them."""
    removed = 0
    for path in Path(folder).rglob(f".*{TMP_MARK}*"):
        if path.is_file() and _STALE.match(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_bytes(path, data, fsync=False):
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text, fsync=False):
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path, data, fsync=False):
    return write_text(path, json.dumps(data, indent=2) + "\n", fsync=fsync)


CONFIG_FILE_LIMIT = 1 << 20  # a config file of more is not one (or /dev/zero)


def read_config_text(path, what, limit=CONFIG_FILE_LIMIT):
    """A small UTF-8 config file's text, read at most `limit` bytes: a larger file (or a
    device that never ends) is refused before memory is spent on it.

    Raises:
        zoo.errors.ZooError: one line naming `what` and the file when it cannot be
            read, is not UTF-8 or is larger than `limit`.
    """
    from zoo.errors import ZooError

    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise ZooError(f"Cannot read the {what} {path}: {error.strerror or error}") from None
    if len(data) > limit:
        raise ZooError(f"Cannot read the {what} {path}: it is larger than {limit} bytes, too large for one.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ZooError(f"Cannot read the {what} {path}: not UTF-8 text (byte {error.start}).") from None


def read_json(path, default=None, expect=None):
    """The JSON in `path`, or `default` when the file does not exist.

    Raises:
        zoo.errors.DataError: one line naming the file when it is not JSON (truncated,
            not UTF-8) or, with `expect` (a type such as `dict`), holds another kind of
            value: a damaged file is the user's to see, not a decoder's traceback.
    """
    from zoo.errors import DataError

    path = Path(path)
    if not path.is_file():
        return default
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is damaged: not UTF-8 (byte {error.start}).") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is damaged: not JSON ({error.msg} at line {error.lineno}, "
                        f"column {error.colno}).") from None
    if expect is not None and not isinstance(value, expect):
        raise DataError(f"{path} is damaged: it holds a JSON {type(value).__name__}, "
                        f"not the {expect.__name__} zoo wrote.")
    return value


def fsync_dir(path):
    """Make a rename inside `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask():
    """The process's umask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable read, restored at once
    os.umask(mask)
    return mask


def make_dir_public_as_umask(path):
    """Give a directory made by `tempfile.mkdtemp` (mode 0700) the mode a plain `mkdir`
    would have had, so a server running as another user (TF Serving in a container)
    can read what is published from it."""
    os.chmod(path, 0o777 & ~current_umask())


def refuse_overwrite(planned, inputs=(), overwrite=False):
    """Refuse, before any work, to write any of the `planned` paths over one of the
    `inputs` (never, `overwrite` or not) or over an existing file (unless `overwrite`):
    a user's file is never lost to a command's output.

    Raises:
        zoo.errors.OptionError: one line naming the first such path.
    """
    from zoo.errors import OptionError

    planned = [Path(path) for path in planned]
    sources = {os.path.realpath(item) for item in inputs if isinstance(item, (str, os.PathLike))}
    for path in planned:
        if os.path.realpath(path) in sources:
            raise OptionError(f"{path} is an input of this command: choose another --out "
                              f"(zoo never writes over its inputs)")
    existing = [path for path in planned if path.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more of the files this would write)" if len(existing) > 1 else ""
        raise OptionError(f"{existing[0]} exists{more}: pass --overwrite to replace it")
