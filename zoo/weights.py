"""The weights store: a manifest of known weight files, a local cache, and a safe fetch.

- The manifest (`weights/manifest.json`, plain data) lists every variant: model,
  variant, URL, hash (`sha256:` or the `md5:` Keras publishes), size, licence, origin.
  `$ZOO_MANIFEST` (paths separated by `os.pathsep`) adds or overrides entries.
- Files live under `$ZOO_HOME/weights/MODEL/` (default `~/.cache/zoo`). Small weights
  the project trains itself ship in `weights/` and are used from there.
- A download resumes a partial file with an HTTP Range request, is hashed before use
  and renamed into place atomically; concurrent processes take a file lock, so only
  one downloads and the others reuse its file.
- Weights are HDF5 tensors only: nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from time import monotonic  # not via `time`: tests replace that module's sleep

from zoo import io
from zoo.errors import HashMismatchError, WeightsError

MANIFEST_NAME = "manifest.json"
CHUNK = 1 << 20
_RETRIES = 5
# Statuses a mirror or CDN gives while briefly overloaded; anything else 4xx/5xx is final.
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


# ----------------------------------------------------------------------------- places
def zoo_home() -> Path:
    return Path(os.environ.get("ZOO_HOME") or Path.home() / ".cache" / "zoo").expanduser()


def shipped_dir() -> Path:
    """`weights/` of a checkout, or its copy installed with the wheel (share/zoo/weights)."""
    candidates = [
        Path(__file__).resolve().parent.parent / "weights",
        Path(sysconfig.get_path("data")) / "share" / "zoo" / "weights",
        Path(sys.prefix) / "share" / "zoo" / "weights",
    ]
    for candidate in candidates:
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    raise WeightsError(
        "zoo's weights manifest is missing; looked in: "
        + ", ".join(str(c) for c in candidates)
        + ". Reinstall zoo."
    )


# --------------------------------------------------------------------------- manifest
def _read_manifest(path: Path, base_dir: Path | None):
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsError(f"Cannot read weights manifest {path}: {error}") from error
    entries = {}
    for index, entry in enumerate(data.get("variants", [])):
        for required in ("model", "variant", "hash"):
            if not entry.get(required):
                raise WeightsError(
                    f"{path}: variants[{index}] needs a {required!r} field. Received: {entry}"
                )
        # Without either there is no file name to cache under and nowhere to get it from.
        if not entry.get("url") and not entry.get("file"):
            raise WeightsError(
                f"{path}: variants[{index}] needs a 'url' (downloaded weights) or a 'file' "
                f"(weights shipped next to the manifest). Received: {entry}"
            )
        for field in ("model", "variant", "file"):
            value = entry.get(field)
            # These become parts of a path under $ZOO_HOME: a "../" must not reach outside it.
            if value is not None and (not isinstance(value, str) or not _plain_name(value)):
                raise WeightsError(
                    f"{path}: variants[{index}].{field} must be a plain file name (no folders, no '..'). "
                    f"Received: {field}={value!r}"
                )
        entry = {"include_top": True, "url": None, "file": None, **entry}
        entry["_base_dir"] = str(base_dir or Path(path).parent)
        entries[key(entry["model"], entry["variant"])] = entry
    return entries


def _plain_name(name):
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def key(model, variant):
    return f"{model}.{variant}"


def manifest() -> dict:
    """All known variants, `{"model.variant": entry}`; `$ZOO_MANIFEST` entries win."""
    entries = _read_manifest(shipped_dir() / MANIFEST_NAME, shipped_dir())
    for extra in filter(None, os.environ.get("ZOO_MANIFEST", "").split(os.pathsep)):
        entries.update(_read_manifest(Path(extra), None))
    return entries


def variants_for(model) -> dict:
    return {e["variant"]: e for e in manifest().values() if e["model"] == model}


def resolve(model, tag, include_top=True) -> dict:
    """The manifest entry for weights `tag` of `model` (`imagenet` → `imagenet_notop`)."""
    variants = variants_for(model)
    # Without the head, prefer the published no-top file; else the full one (cut later).
    for name in ([tag] if include_top else [f"{tag}_notop", tag]):
        if name in variants:
            return variants[name]
    known = ", ".join(sorted(variants)) or "none"
    raise WeightsError(
        f"`weights` must be a known variant of {model} ({known}), none, or a file path. "
        f"Received: weights={tag!r}"
    )


def local_path(entry) -> Path:
    """Where the entry's file is used from: shipped in `weights/`, else the cache."""
    if entry.get("file") and not entry.get("url"):
        return Path(entry["_base_dir"]) / entry["file"]
    filename = entry.get("file") or Path(urllib.request.urlparse(entry["url"]).path).name
    return zoo_home() / "weights" / entry["model"] / filename


def is_available(entry) -> bool:
    return local_path(entry).is_file()


# ----------------------------------------------------------------------------- hashes
def parse_hash(spec: str):
    algorithm, _, digest = spec.partition(":")
    if not digest:  # a bare hex digest: its length says which
        algorithm, digest = ("md5" if len(spec) == 32 else "sha256"), spec
    if algorithm not in ("md5", "sha256"):
        raise WeightsError(f"Unsupported hash {spec!r}: use sha256:HEX or md5:HEX.")
    return algorithm, digest.lower()


def file_hash(path, algorithm="sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_hash(path, expected: str, source: str):
    algorithm, want = parse_hash(expected)
    got = file_hash(path, algorithm)
    if got != want:
        raise HashMismatchError(
            f"Hash mismatch for {source}: expected {algorithm}:{want}, got {algorithm}:{got}. "
            "The file was not used."
        )


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path, expected: str):
    stat = path.stat()
    io.write_json(_stamp_path(path), {"hash": expected, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})


def _stamped(path: Path, expected: str) -> bool:
    """True when this exact file (size, mtime) was verified against `expected` before."""
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"hash": expected, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def verify(entry) -> Path:
    """Re-hash the entry's local file; raise if it is missing or differs."""
    path = local_path(entry)
    if not path.is_file():
        raise WeightsError(f"{key(entry['model'], entry['variant'])}: no local file at {path}")
    shipped = entry.get("file") and not entry.get("url")
    try:
        check_hash(path, entry["hash"], str(path))
    except HashMismatchError:
        # A stamp only records size and mtime; damage that kept both (bit rot, a copy
        # that preserved mtime) would otherwise be trusted by fetch() again.
        if not shipped:
            _stamp_path(path).unlink(missing_ok=True)
        raise
    if not shipped:
        _stamp(path, entry["hash"])
    return path


# ---------------------------------------------------------------------------- fetching
@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "w") as lock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; the atomic rename still holds
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(entry, progress=True) -> str:
    """Return the local path of an entry's file, downloading and verifying it if needed."""
    path = local_path(entry)
    name = key(entry["model"], entry["variant"])
    if entry.get("file") and not entry.get("url"):  # shipped with zoo
        if not path.is_file():
            raise WeightsError(f"{name}: the shipped file {path} is missing. Reinstall zoo.")
        return str(path)
    if path.is_file() and _stamped(path, entry["hash"]):
        return str(path)
    with _cache_writes(name, path, f", or import the file there: {_import_hint(entry)}"):
        return _fetch_locked(entry, path, name, progress)


# What the cache's folder answers when it cannot be written: no permission, a read-only
# file system, or a path through a regular file (as root, the only one that fails).
_CANNOT_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)


def _cannot_write(error):
    return error.errno in _CANNOT_WRITE and error.filename is not None  # a file's error, not a socket's


@contextlib.contextmanager
def _cache_writes(name, path, hint=""):
    """Writing `name`'s weights to `path` in the cache: a folder that cannot be written
    is one `WeightsError` naming it and ZOO_HOME (fetch and import say it alike)."""
    try:
        yield
    except OSError as error:
        if not _cannot_write(error):
            raise
        raise WeightsError(
            f"Cannot write {name}'s weights to {path.parent} ({error.strerror}; ZOO_HOME is {zoo_home()}). "
            f"Set ZOO_HOME to a folder you can write{hint}"
        ) from None


def _fetch_locked(entry, path, name, progress):
    with _file_lock(path):
        # Another process may have finished the download while we waited for the lock.
        if path.is_file():
            try:
                check_hash(path, entry["hash"], str(path))
                _stamp(path, entry["hash"])
                return str(path)
            except HashMismatchError:
                path.unlink()
        if not entry.get("url"):
            raise WeightsError(f"{name} has no download URL; import the file:\n  {_import_hint(entry)}")
        try:
            download(entry["url"], path, entry["hash"], size=entry.get("size"), progress=progress)
        except OSError as error:
            if _cannot_write(error):  # the cache, not the network: said by _cache_writes
                raise
            if isinstance(error, urllib.error.HTTPError):
                reason = f"HTTP {error.code} {error.reason}"
            else:
                reason = str(getattr(error, "reason", error))
            raise WeightsError(
                f"Could not download {name} weights from {entry['url']} ({reason}).\n"
                f"Without network: fetch that URL on another machine, copy the file here, then run\n"
                f"  {_import_hint(entry)}\n"
                f"which verifies it and stores it at {path}."
            ) from error
        _stamp(path, entry["hash"])
    return str(path)


def _import_hint(entry):
    return f"zoo weights import FILE --model {entry['model']} --variant {entry['variant']}"


def max_download_bytes():
    """The most bytes a download of unknown size may take: `$ZOO_MAX_DOWNLOAD_BYTES`,
    default 4 GiB (the largest published weights file is ~550 MB)."""
    return int(os.environ.get("ZOO_MAX_DOWNLOAD_BYTES") or 4 << 30)


def download_deadline():
    """Seconds a whole download may take, retries included: `$ZOO_DOWNLOAD_DEADLINE`,
    default 2 hours."""
    return float(os.environ.get("ZOO_DOWNLOAD_DEADLINE") or 7200)


class DownloadRefused(WeightsError):
    """A server sent more than the file can be, or took longer than allowed."""


def download(url, dest, expected_hash, size=None, progress=True, timeout=30):
    """Download `url` to `dest`: resume with Range, verify, then rename atomically.

    The partial file is `dest.part`. On a hash mismatch it is deleted and
    `HashMismatchError` names the URL, the expected and the actual hash. A server that
    sends more than `size` (or, with no size known, `max_download_bytes()`) is cut off;
    the whole download, retries included, ends by `download_deadline()`. Every byte
    received is kept (read as it arrives, not a MiB at a time), so even a small file
    behind a stalling connection resumes where it stopped.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    attempt = 0
    limit = int(size) if size else max_download_bytes()
    deadline = monotonic() + download_deadline()
    with _progress_bar(progress, dest.name) as bar:
        while True:
            if monotonic() > deadline:
                partial.unlink(missing_ok=True)
                raise DownloadRefused(f"Downloading {url} took longer than {download_deadline():g} s "
                                      "(ZOO_DOWNLOAD_DEADLINE); gave up.")
            try:
                _download_once(url, partial, bar, size, timeout, limit, deadline)
                break
            except urllib.error.HTTPError as error:
                if error.code == 416 and partial.exists():
                    # The partial already reaches the end (a run killed between the last
                    # byte and the rename, or the file changed upstream): start over.
                    partial.unlink()
                elif error.code not in _RETRY_STATUS:
                    raise
                failure = error
            except (OSError, urllib.error.URLError, http.client.HTTPException, _Truncated) as error:
                # No connection and nothing downloaded yet: that is "no network", and
                # retrying would only delay the error that tells the user what to do.
                if isinstance(getattr(error, "reason", None), OSError) and not partial.exists():
                    raise
                failure = error
            attempt += 1
            if attempt >= _RETRIES:
                if not isinstance(failure, OSError):
                    raise OSError(f"download of {url} failed: {failure!r}") from failure
                raise failure
            time.sleep(min(0.2 * 2**attempt, 5))  # transient cut: resume from where we are
    try:
        check_hash(partial, expected_hash, url)
    except HashMismatchError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)
    return dest


class _Truncated(Exception):
    pass


def _download_once(url, partial: Path, bar, size, timeout, limit, deadline):
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "zoo"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # server ignored Range: start over
            have = 0
        elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            # Appending bytes from another offset would corrupt the file silently.
            partial.unlink()
            raise _Truncated(
                f"{url} answered Range bytes={have}- with Content-Range "
                f"{response.headers.get('Content-Range')!r}; restarting from zero"
            )
        total = response.headers.get("Content-Length")
        total = int(total) + have if total is not None and total.isdigit() else size
        if total is not None and total > limit:
            raise DownloadRefused(f"{url} announces {total:,} bytes; the file is {limit:,}. Refusing it.")
        bar(have, total)
        with open(partial, "ab" if have else "wb") as out:
            while True:
                # read1: whatever has arrived, so a stalled connection loses nothing.
                chunk = response.read1(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
                have += len(chunk)
                bar(have, total)
                if have > limit:
                    out.close()
                    partial.unlink(missing_ok=True)
                    raise DownloadRefused(f"{url} sent more than {limit:,} bytes, more than the file can be "
                                          "(ZOO_MAX_DOWNLOAD_BYTES for files of unknown size). Refusing it.")
                if monotonic() > deadline:
                    raise _Truncated(f"deadline reached after {have} bytes from {url}")
    if total is not None and have < total:
        raise _Truncated(f"connection closed after {have} of {total} bytes from {url}")


@contextlib.contextmanager
def _progress_bar(enabled, label):
    if not enabled:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn,
                               TransferSpeedColumn)

    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as progress_bar:
        task = progress_bar.add_task(label, total=None)
        yield lambda done, total: progress_bar.update(task, completed=done, total=total)


# ----------------------------------------------------------------------------- import
def import_file(source, model, variant) -> Path:
    """Verify a hand-copied weights file against the manifest and store it in the cache."""
    variants = variants_for(model)
    if variant not in variants:
        known = ", ".join(sorted(variants)) or "none"
        raise WeightsError(
            f"`--variant` must be a known variant of {model} ({known}). Received: variant={variant!r}"
        )
    entry = variants[variant]
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"No such file: {source}")
    check_hash(source, entry["hash"], str(source))
    dest = local_path(entry)
    if dest.resolve() == source.resolve():
        return dest
    with _cache_writes(key(model, variant), dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(dest):
            with io.atomic_path(dest) as tmp:
                shutil.copyfile(source, tmp)
            _stamp(dest, entry["hash"])
    return dest
