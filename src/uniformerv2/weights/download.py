"""Downloading registry files into the cache: verified, resumable, locked, offline- and mirror-aware.

Cache: ``$UNIFORMERV2_HOME/weights/`` (default ``$XDG_CACHE_HOME/uniformerv2``, i.e. ``~/.cache/uniformerv2``).
A download streams into ``.<file>.part`` beside its final place, under an exclusive lock on
``.<file>.lock`` (removed again when the download ends, failed or not); the file is moved into place (fsync + rename) only once its sha256 matches the registry
(the full digest, or the published prefix).  A mismatch removes the partial file.  A connection that drops
mid-file is resumed with an HTTP ``Range`` request where the server honours it (206), and restarted
where it does not (200).  A later run resumes a ``.part`` left by an interrupted one.  A file verified once
gets a small ``.<file>.sha256`` note (size, mtime, digest) so a cache hit does not re-hash gigabytes.

An entry without a published digest (``"sha256": null``: a third party's copy) is downloaded unchecked; the
first download prints the file's sha256 and records it in the cache note.

Environment: ``UNIFORMERV2_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` (cache only), ``UNIFORMERV2_MIRROR=<base>``
(``https://HOST/PATH`` is fetched as ``<base>/HOST/PATH``), ``UNIFORMERV2_REQUIRE_DIGEST=1`` (refuse entries
without a published digest), and the usual ``HTTP(S)_PROXY`` / ``NO_PROXY``.

Why not ``torch.hub.download_url_to_file``: it restarts every download from zero (no Range resume) and
takes no lock, so eight DDP ranks would fetch the same gigabyte eight times into eight temporary files;
``huggingface_hub`` does both but only for files hosted on the Hugging Face Hub, and most files here are
not.  The standard library (``urllib`` + ``fcntl``) does what is needed without a new dependency.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path

from ..errors import UserError
from .registry import Entry, get_entry

ENV_HOME, ENV_OFFLINE, ENV_MIRROR = "UNIFORMERV2_HOME", "UNIFORMERV2_OFFLINE", "UNIFORMERV2_MIRROR"
ENV_REQUIRE_DIGEST = "UNIFORMERV2_REQUIRE_DIGEST"
TIMEOUT_S = 60.0
CHUNK = 1 << 20
ATTEMPTS = 5  # tries per URL while each try makes progress (a dropped connection resumes)
USER_AGENT = "uniformerv2-weights/1"


class DownloadError(UserError):
    """A file that cannot be fetched (network, HTTP status, checksum) or is missing while offline."""


# ----------------------------------------------------------------------------- places and settings
def cache_dir() -> Path:
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "uniformerv2"


def weights_dir() -> Path:
    return cache_dir() / "weights"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def is_offline() -> bool:
    return _truthy(os.environ.get(ENV_OFFLINE)) or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def _offline_var() -> str:
    return ENV_OFFLINE if _truthy(os.environ.get(ENV_OFFLINE)) else "HF_HUB_OFFLINE"


def mirror_url(url: str, base: str | None = None) -> str:
    """``https://HOST/PATH?Q`` -> ``<base>/HOST/PATH?Q`` when a mirror is set (``$UNIFORMERV2_MIRROR``)."""
    base = os.environ.get(ENV_MIRROR) if base is None else base
    if not base:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    out = f"{base.rstrip('/')}/{parts.netloc}{parts.path}"
    return out + (f"?{parts.query}" if parts.query else "")


def source_urls(entry: Entry) -> list[str]:
    return [mirror_url(u) for u in entry.urls]


def cache_path(entry: Entry) -> Path:
    return weights_dir() / entry.file


def _sidecar(dest: Path, kind: str) -> Path:
    return dest.with_name(f".{dest.name}.{kind}")


# ----------------------------------------------------------------------------- verification
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _matches(digest: str, expected: str) -> bool:
    return digest.startswith(expected.lower())


def _read_note(dest: Path) -> dict | None:
    try:
        note = json.loads(_sidecar(dest, "sha256").read_text())
        st = dest.stat()
        if note.get("size") == st.st_size and note.get("mtime_ns") == st.st_mtime_ns:
            return note
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _write_note(dest: Path, digest: str) -> None:
    st = dest.stat()
    note = _sidecar(dest, "sha256")
    tmp = note.with_name(note.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}) + "\n")
        os.replace(tmp, note)
    except OSError:  # a read-only cache still works, it just re-hashes next time
        tmp.unlink(missing_ok=True)


def cached_file(entry: Entry) -> Path | None:
    """The cached file if it is there and verified (hashing it once if it was put there by hand).

    A cached file with the wrong digest raises when offline (it cannot be replaced) and is ignored (to be
    downloaded again and replaced) otherwise."""
    dest = cache_path(entry)
    if not dest.is_file():
        return None
    note = _read_note(dest)
    if note is not None and _matches(note["sha256"], entry.sha256):
        return dest
    digest = sha256_file(dest)
    if _matches(digest, entry.sha256):
        _write_note(dest, digest)
        return dest
    if is_offline():
        raise DownloadError(f"{dest} does not match the registry: expected sha256 {entry.sha256}, got {digest}; "
                            f"replace it with the file from {entry.urls[0]}")
    return None


def is_cached(entry: Entry) -> bool:
    """Cheap check for listings: the file is there and verified (no hashing of unverified files)."""
    dest = cache_path(entry)
    note = _read_note(dest) if dest.is_file() else None
    return note is not None and _matches(note["sha256"], entry.sha256)


# ----------------------------------------------------------------------------- locking
@contextlib.contextmanager
def _locked(path: Path, what: str, verbose: bool):
    """An exclusive lock on ``path`` (created for the purpose, removed again at the end, so that a failed or
    finished download leaves no lock file behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: msvcrt locks a byte range (the file stays: it cannot go while open)
        import msvcrt

        with open(path, "a+b") as f:
            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    time.sleep(0.5)
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        return
    while True:
        f = open(path, "a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if verbose:
                print(f"waiting for another process downloading {what}", file=sys.stderr)
                verbose = False
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()  # the holder removed the file as it finished: lock the one that is there now
    try:
        yield
    finally:  # removed while held: a process waiting on it sees it gone and locks a new one
        with contextlib.suppress(OSError):
            path.unlink()
        f.close()


# ----------------------------------------------------------------------------- transfer
class _Failed(Exception):
    """One URL failed (message is one line)."""


def _one_line(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    return " ".join(str(e).split()) or type(e).__name__


def _hash_prefix(path: Path, nbytes: int):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = nbytes
        while left and (chunk := f.read(min(8 * CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
    return h


def _request(url: str, start: int):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _transfer(url: str, part: Path, size: int | None, name: str, progress: bool | None) -> str:
    """Fetch ``url`` into ``part`` (resuming what is there); return the sha256 of the whole file."""
    from tqdm.auto import tqdm

    attempts = 0
    while True:
        attempts += 1
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        try:
            resp = _request(url, have)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing left to send: the part is whole (the digest decides) or bogus
                m = _CONTENT_RANGE.search(e.headers.get("Content-Range", "") or "")
                total = int(m.group(3)) if m and m.group(3) != "*" else None
                if total is None or total == have:
                    return _hash_prefix(part, have).hexdigest()
                part.unlink()
                continue
            raise _Failed(_one_line(e)) from None
        except (urllib.error.URLError, HTTPException, OSError, ValueError) as e:
            raise _Failed(_one_line(e)) from None
        with resp:
            status = getattr(resp, "status", None) or 200
            start = 0
            if have and status == 206:
                m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", "") or "")
                start = int(m.group(1)) if m else -1
                if start != have:  # not the range asked for: start again from zero
                    part.unlink()
                    continue
            elif status not in (200, 206):
                raise _Failed(f"HTTP {status}")
            length = resp.headers.get("Content-Length")
            expected = start + int(length) if length and length.isdigit() else size
            h = _hash_prefix(part, start) if start else hashlib.sha256()
            got = start
            bar = tqdm(total=expected, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=name, file=sys.stderr, disable=None if progress is None else not progress,
                       leave=False)
            try:
                with open(part, "ab" if start else "wb") as f:
                    while True:
                        try:
                            chunk = resp.read(CHUNK)
                        except (HTTPException, OSError) as e:
                            chunk, dropped = b"", _one_line(e)
                        else:
                            dropped = None
                        if chunk:
                            f.write(chunk)
                            h.update(chunk)
                            got += len(chunk)
                            bar.update(len(chunk))
                            continue
                        f.flush()
                        os.fsync(f.fileno())
                        break
            finally:
                bar.close()
        if dropped is None and (expected is None or got >= expected):
            return h.hexdigest()
        # dropped mid-file: try again (resuming) while each try brings new bytes
        if got == have or attempts >= ATTEMPTS:
            raise _Failed(f"connection dropped after {got:,} of {expected or '?'} bytes"
                          + (f" ({dropped})" if dropped else ""))


def download(urls: list[str], dest: Path, *, sha256: str, size: int | None = None,
             progress: bool | None = None, name: str | None = None) -> Path:
    """Fetch the first working URL into ``dest``, verified against ``sha256`` (full or prefix).

    The caller holds the lock of ``dest``.  Raises :class:`DownloadError` (one line)."""
    part = _sidecar(dest, "part")
    failures = []
    for url in urls:
        try:
            digest = _transfer(url, part, size, name or dest.name, progress)
        except _Failed as e:
            failures.append(f"{url}: {e}")
            continue
        if not _matches(digest, sha256):
            part.unlink(missing_ok=True)
            failures.append(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest} "
                            "(the download was removed)")
            continue
        os.replace(part, dest)
        with contextlib.suppress(OSError):
            fd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _write_note(dest, digest)
        return dest
    if len(failures) == 1:
        msg = failures[0]
        raise DownloadError(msg if msg.startswith("checksum") else f"cannot download {msg}")
    raise DownloadError(f"cannot download {dest.name}: " + "; ".join(failures))


def fetch(entry: Entry | str, *, progress: bool | None = None, force: bool = False) -> Path:
    """The local path of a registry file, downloading (and verifying) it first if it is not cached.

    ``progress``: None = a bar when stderr is a terminal.  ``force``: download again even if cached."""
    if isinstance(entry, str):
        entry = get_entry(entry)
    if not entry.verified_source and _truthy(os.environ.get(ENV_REQUIRE_DIGEST)):
        raise DownloadError(f"{entry.name} has no published digest (an unverified source: {entry.urls[0]}), and "
                            f"{ENV_REQUIRE_DIGEST}=1 refuses such entries")
    dest = cache_path(entry)
    if not force and (hit := cached_file(entry)) is not None:
        return hit
    if is_offline():
        raise DownloadError(f"offline ({_offline_var()}=1) and {entry.file} is not in the cache: {by_hand(entry)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(_sidecar(dest, "lock"), entry.file, verbose=progress is not False):
        if not force and (hit := cached_file(entry)) is not None:  # another process finished it meanwhile
            return hit
        try:
            path = download(source_urls(entry), dest, sha256=entry.sha256, size=entry.size, progress=progress,
                            name=entry.name)
            if not entry.verified_source:
                note = _read_note(path)
                print(f"{entry.name}: no published digest for {entry.file}; the downloaded file has sha256 "
                      f"{note['sha256'] if note else sha256_file(path)} (recorded in {_sidecar(path, 'sha256')})",
                      file=sys.stderr)
            return path
        except DownloadError as e:
            raise DownloadError(f"{e}. To go on: {by_hand(entry)}, or set {ENV_MIRROR}=<base URL> to fetch "
                                "it from a mirror") from None


def by_hand(entry: Entry) -> str:
    """What to do when a registry file cannot be fetched: where it comes from and where it goes."""
    return f"download {entry.urls[0]} and put it in {cache_path(entry).parent}/ (as {entry.file})"
