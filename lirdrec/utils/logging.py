"""The one logging set-up of the command line (the library itself never adds handlers)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["setup_logging", "progress_enabled", "set_quiet", "close_log_files"]

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """No progress bars anywhere unless a call asks for them (``lirdrec -q``)."""
    global _QUIET
    _QUIET = bool(quiet)


def _interactive() -> bool:
    """A person is watching: stderr is a terminal, or code runs in a Jupyter kernel."""
    shell = sys.modules.get("IPython")
    if shell is not None:
        try:
            ip = shell.get_ipython()
        except AttributeError:
            ip = None
        if ip is not None and type(ip).__name__ == "ZMQInteractiveShell":
            return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_enabled(show_progress: bool | None = None) -> bool:
    """The one rule for progress bars, from the CLI, the Python API and notebooks alike.

    An explicit ``True``/``False`` wins; ``None`` means: on for a terminal or a notebook, off
    when output is redirected (no carriage returns in log files) or after ``lirdrec -q``.
    """
    if show_progress is not None:
        return bool(show_progress)
    return not _QUIET and _interactive()


def setup_logging(verbosity: int = 0, log_file: Path | None = None) -> None:
    """Console handler (INFO, or DEBUG with -v; WARNING with -q) and an optional run log file."""
    if int(os.environ.get("RANK", "0") or 0) != 0:  # torchrun worker > 0: rank 0 alone logs
        verbosity, log_file = -1, None
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    set_quiet(verbosity < 0)
    root = logging.getLogger("lirdrec")
    root.setLevel(min(level, logging.INFO) if log_file else level)
    console = [h for h in root.handlers if getattr(h, "_lirdrec", False)]
    if not console:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        h._lirdrec = True  # type: ignore[attr-defined]
        root.addHandler(h)
        console = [h]
    for h in console:  # a later command in the same process: its level, today's stderr
        h.setLevel(level)
        if h.stream is not sys.stderr:  # not setStream: it flushes the old, maybe closed, one
            h.acquire()
            try:
                h.stream = sys.stderr
            finally:
                h.release()
    close_log_files()  # one run log at a time: the previous command's file is closed
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(fh)


def close_log_files(under: Path | None = None) -> None:
    """Close and detach the ``lirdrec`` logger's file handlers (those under ``under`` only)."""
    root = logging.getLogger("lirdrec")
    for h in list(root.handlers):
        if not isinstance(h, logging.FileHandler):
            continue
        if under is not None and not Path(h.baseFilename).resolve().is_relative_to(
                Path(under).resolve()):
            continue
        root.removeHandler(h)
        h.close()
