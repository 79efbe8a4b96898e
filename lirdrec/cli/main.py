"""``lirdrec`` command line: a thin layer over the Python API.

One module per command in this package (``lirdrec/cli/<command>.py``), each with
``add_parser(subparsers)`` (which sets ``func``, and optionally ``check(parser, args)``) and
``run(args)``; :data:`COMMANDS` lists them in ``--help`` order. A
:class:`~lirdrec.errors.LirdrecError` prints one line to stderr and exits 1; anything else is a
bug: one line naming it and exit 2 (``--debug`` shows the traceback). Ctrl-C says how the
interrupted command continues.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from lirdrec.errors import LirdrecError
from lirdrec.utils.logging import setup_logging

__all__ = ["COMMANDS", "build_parser", "main", "setup_logging"]

#: Command modules under ``lirdrec.cli``, in ``--help`` order.
COMMANDS = (
    "demo",
    "validate",
    "train",
    "evaluate",
    "grid",
    "prepare",
    "gradient_bias",
    "experiment",
    "download",  # adds `datasets` and `download`
    "tune",
    "represent",  # NoteLLM-2: train / evaluate / export item representations
    "recommend",  # adds `recommend` and `similar-items`
)


def build_parser() -> argparse.ArgumentParser:
    """The ``lirdrec`` parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="lirdrec", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbose",
                        help="warnings only, no progress bars")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"lirdrec.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lirdrec`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "check", None) is not None:
        args.check(parser, args)
    finished = False
    try:
        from lirdrec.cli.launch import launch_if_asked

        launched = launch_if_asked(args, argv)  # --nproc N > 1: the command under torchrun
        if launched is not None:
            return launched
        code = int(args.func(args) or 0)
        finished = code == 0
        return code
    except LirdrecError as exc:
        if args.debug:
            raise
        print(f"lirdrec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lirdrec: interrupted; {_how_to_continue(args)}", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"lirdrec: internal error: {type(exc).__name__}: {first}{_origin(exc)} (a bug in "
              "lirdrec or a dependency; rerun with --debug for the traceback)", file=sys.stderr)
        return 2
    finally:
        _leave_process_group(finished)


def _leave_process_group(finished: bool) -> None:
    """Under torchrun (the command joined a process group): ranks that finished meet at a barrier
    before the group is destroyed, so none destroys it while a peer's last collective is in flight
    (a rank aborting at exit, "terminate called without an active exception"); a rank that failed
    tears down at once (a barrier would wait for a dead peer). As ``distributed.spawn`` does.
    """
    distributed = sys.modules.get("lirdrec.train.distributed")  # not imported: no group
    if distributed is not None:
        distributed.teardown(sync=finished)


def _how_to_continue(args) -> str:
    """What continues an interrupted command (each keeps its finished work)."""
    command = args.command
    if command == "train":
        run_dir = getattr(args, "resume", None) or getattr(args, "out", None)
        return (f"continue with `lirdrec train --resume {run_dir}`" if run_dir else
                "continue with `lirdrec train --resume RUN_DIR` (the run directory printed above)")
    if command in ("grid", "experiment", "tune", "download", "prepare", "gradient-bias"):
        kept = {"grid": "finished grid points are kept", "experiment": "finished runs are kept",
                "tune": "finished trials are kept", "download": "the partial file is kept",
                "prepare": "finished chunks of each modality are cached",
                "gradient-bias": "nothing is kept"}[command]
        return f"run the same command again to continue ({kept})"
    return "nothing to continue"


def _origin(exc: BaseException) -> str:
    """`` at file:line`` of the innermost frame of the error, for a one-line report."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    return f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
