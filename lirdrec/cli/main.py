"""``lirdrec`` command line: a thin layer over the Python API.

One module per command in this package (``lirdrec/cli/<command>.py``), each with
``add_parser(subparsers)`` (which sets ``func``, and optionally ``check(parser, args)``) and
``run(args)``; :data:`COMMANDS` lists them in ``--help`` order. A
:class:`~lirdrec.errors.LirdrecError` prints one line to stderr and exits 1; anything else is a
bug and keeps its traceback.
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
)


def build_parser() -> argparse.ArgumentParser:
    """The ``lirdrec`` parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="lirdrec", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbose",
                        help="warnings only")
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
    try:
        return int(args.func(args) or 0)
    except LirdrecError as exc:
        print(f"lirdrec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lirdrec: interrupted; a run can continue with `lirdrec train --resume RUN_DIR`",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
