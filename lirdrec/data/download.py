"""Resumable, checksummed downloads of public dataset archives (standard library only).

``fetch(url, dest, md5=...)`` downloads into ``dest.part``, resuming an interrupted transfer with
an HTTP ``Range`` request when the server allows it, verifies the checksum and only then moves the
file to ``dest``. A mismatch deletes the partial file and raises a :class:`DataError` naming the
expected and the found digest; an interruption keeps ``dest.part`` and says that running the same
command again resumes it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from lirdrec.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["fetch", "file_digest"]

_CHUNK = 1 << 16


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: str | Path, md5: str | None = None, sha256: str | None = None,
          timeout: float = 60.0, show_progress: bool | None = None) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``) and verify its checksum.

    Args:
        url: ``http(s)://`` or ``file://`` address.
        dest: final path; an existing file with the right checksum is kept as is.
        md5: expected MD5 digest (lowercase hex); ``None``: not checked (the digest found is
            logged so a card can record it).
        sha256: expected SHA-256 digest instead (takes precedence over ``md5``).
        timeout: seconds without data before the transfer counts as interrupted.
        show_progress: tqdm bar (default: when logging is at INFO and stderr is a terminal).

    Raises:
        DataError: the server refuses, the connection breaks (``dest.part`` kept: run again to
            resume), or the checksum differs (partial file deleted).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    algorithm, expected = ("sha256", sha256) if sha256 else ("md5", md5)
    if dest.is_file() and (expected is None or file_digest(dest, algorithm) == expected):
        logger.info("%s: already downloaded", dest)
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "lirdrec"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/file only)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            response = None
        else:
            raise DataError(None, message=f"{url}: the server answered {exc.code} {exc.reason}"
                            ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(None, message=f"{url}: cannot connect ({getattr(exc, 'reason', exc)})"
                        ) from None
    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            resumed = have and status == 206
            if have and not resumed:
                logger.info("%s: the server does not resume; downloading from the start", url)
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            show = (logger.isEnabledFor(logging.INFO) and os.isatty(2)) if show_progress is None \
                else show_progress
            bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, disable=not show,
                       desc=dest.name)
            try:
                with part.open("ab" if resumed else "wb") as fh:
                    while True:
                        block = response.read(_CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        bar.update(len(block))
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                raise DataError(None, message=f"{url}: download interrupted after "
                                f"{part.stat().st_size} bytes ({exc}); run the same command "
                                "again to resume") from None
            finally:
                bar.close()
            if total is not None and part.stat().st_size < total:
                raise DataError(None, message=f"{url}: download interrupted after "
                                f"{part.stat().st_size} of {total} bytes; run the same command "
                                "again to resume")
    found = file_digest(part, algorithm)
    if expected is not None and found != expected:
        part.unlink()
        raise DataError(part.with_name(dest.name), expected=f"{algorithm} {expected}",
                        found=f"{algorithm} {found} (file deleted; a changed or corrupt archive)")
    if expected is None:
        logger.info("%s: %s %s (no published checksum to compare)", dest.name, algorithm, found)
    os.replace(part, dest)
    return dest
