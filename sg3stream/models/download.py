"""Downloading weights into the user cache, and finding them again.

- `models_dir()`: $SG3STREAM_CACHE/models, else $XDG_CACHE_HOME/sg3stream/models, else ~/.cache/sg3stream/models.
- `download(url, dest, sha256=None, progress=None)`: HTTP(S) with resume (Range requests on a `.part` file kept
  next to the destination), a progress callback `progress(done_bytes, total_bytes_or_None)`, a sha256 check when a
  digest is given, and an atomic rename into place. A failed checksum deletes the partial file: nothing is left.
- `download_model(name)`: the same for a registry entry, into models_dir().
- `resolve_weights(name_or_path)`: a path that exists, or a registry name whose file is cached; otherwise a
  UserError that says how to get it (`sg3stream models download NAME`). Names are resolved by
  resolve.resolve_model, as everywhere else.
- `describe_models()`: every name `resolve_model` accepts, with the size and sha256 known for it (`models list`).

Only the standard library is used (urllib).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from sg3stream.errors import UserError

from .registry import REGISTRY, ModelEntry, get_entry

__all__ = ["models_dir", "download", "download_model", "resolve_weights", "cached_path", "sha256_file",
           "describe_models"]

Progress = Callable[[int, "int | None"], None]
CHUNK = 1 << 20
USER_AGENT = "sg3stream-downloader/0.1"


def models_dir() -> Path:
    env = os.environ.get("SG3STREAM_CACHE")
    if env:
        return Path(env).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sg3stream" / "models"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _total_from_headers(resp, offset: int) -> int | None:
    cr = resp.headers.get("Content-Range")  # "bytes 100-999/1000"
    if cr and "/" in cr:
        tail = cr.rsplit("/", 1)[1].strip()
        if tail.isdigit():
            return int(tail)
    cl = resp.headers.get("Content-Length")
    if cl and cl.isdigit():
        return int(cl) + (offset if resp.status == 206 else 0)
    return None


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
             progress: Progress | None = None, timeout: float = 60.0, retries: int = 3) -> Path:
    """Download `url` to `dest` (resumable, checksum-verified, atomic). Returns dest.

    A `<dest>.part` file from an interrupted download is resumed with a Range request; servers that ignore Range
    restart from zero. With `sha256` the digest must match, otherwise the partial file is deleted and a UserError
    raised. `size`, when known, must match the final length. Connection errors are retried `retries` times,
    resuming each time.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_err: Exception | None = None
    for attempt in range(retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if offset:
            req.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if offset and resp.status != 206:
                    offset = 0  # server ignored the Range header: start over
                total = _total_from_headers(resp, offset)
                mode = "ab" if offset else "wb"
                done = offset
                if progress:
                    progress(done, total)
                with open(part, mode) as f:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
                if total is not None and done < total:
                    raise urllib.error.URLError(f"connection closed after {done} of {total} bytes")
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # range not satisfiable: the .part is already complete (or bogus)
                break
            if e.code in (404, 410):
                part.unlink(missing_ok=True)
            raise UserError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
            last_err = e
            if attempt == retries:
                raise UserError(f"download of {url} failed after {retries + 1} attempts: {e}; run the command again "
                                f"to resume from {part.stat().st_size if part.exists() else 0} bytes") from None
    got = part.stat().st_size if part.exists() else 0
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise UserError(f"download of {url} has {got} bytes, expected {size}; the partial file was removed")
    digest = sha256_file(part)
    if sha256 is not None and digest.lower() != sha256.lower():
        part.unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {url}: sha256 {digest}, expected {sha256}; the file was removed")
    os.replace(part, dest)
    try:
        dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    except OSError:
        pass
    del last_err
    return dest


def cached_path(name: str) -> Path:
    """Where registry entry `name` lives in the cache (whether or not it is there)."""
    return models_dir() / get_entry(name).filename


def download_model(name: str, *, progress: Progress | None = None, force: bool = False) -> Path:
    """Download registry entry `name` into models_dir() (no-op when already there, unless force)."""
    entry: ModelEntry = get_entry(name)
    dest = models_dir() / entry.filename
    if dest.is_file() and not force:
        return dest
    if entry.url is None:
        raise UserError(f"{name} cannot be downloaded automatically (it is a folder): get it from {entry.page} and "
                        f"pass its path instead")
    return download(entry.url, dest, sha256=entry.sha256, size=entry.size, progress=progress)


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A path to existing weights: `name_or_path` itself when it is a file, else the cached file of a registry name.

    Raises UserError when neither (resolve.resolve_model says how to get it), or for a built-in name (no file).
    """
    from .resolve import resolve_model

    source = resolve_model(name_or_path)
    if source.path is None:
        raise UserError(f"{source.spec} is a built-in model (random weights from a fixed seed): it has no weights file")
    return source.path


def recorded_sha256(path: Path) -> str | None:
    """The sha256 that `download` wrote beside `path` (NAME.sha256), if any."""
    try:
        digest = path.with_name(path.name + ".sha256").read_text().split()[0].lower()
    except (OSError, IndexError):
        return None
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def describe_models() -> list[dict]:
    """The built-in names and the registry, each with what is known: size and sha256 (the registry's, else the
    cached file's size and the sum recorded when it was downloaded), whether it is cached, where it comes from."""
    from .resolve import builtin_names

    seeded = ("no file: weights from a fixed seed (demo: generator and encoder for trying the pipeline; the others: "
              "benchmarks)")
    oracle = "no network: renders the input's own faces, to measure what the pipeline itself loses"
    rows = [dict(name=name, kind="built-in", size=None, sha256=None, sha256_from=None, cached=None, url=None,
                 page=None, description=oracle if name == "oracle" else seeded)
            for name in builtin_names()]
    for name, entry in REGISTRY.items():
        path = models_dir() / entry.filename
        cached = path.exists()
        size = entry.size
        if size is None and path.is_file():
            size = path.stat().st_size
        sha, sha_from = entry.sha256, "registry" if entry.sha256 else None
        if sha is None and path.is_file():
            sha = recorded_sha256(path)
            sha_from = "download" if sha else None
        rows.append(dict(name=name, kind=entry.kind, size=size, sha256=sha, sha256_from=sha_from,
                         cached=str(path) if cached else None, url=entry.url, page=entry.page,
                         description=entry.description))
    return rows
