"""The ``s2v`` command line: one parser, one error handler.

Every subcommand lives in its own module of this package with ``add_parser(sub)``, which sets
``func`` to a handler that turns the parsed options into library calls and returns an exit status.
Bad input is reported as one clear line on stderr (exit status 2) rather than a traceback;
``--debug`` shows the traceback for bug reports. Building the parser imports no torch, so
``s2v --version`` and ``s2v info`` start fast.

``torchrun -m s2v_core.cli pretrain ...`` runs the same command line in every DDP process.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from s2v_core.cli import (
    embed,
    evaluate,
    experiment,
    finetune,
    info,
    night_heads,
    predict,
    prepare,
    pretrain,
    site_probe,
    synth,
)
from s2v_core.cli.options import check_device_option
from s2v_core.cli.output import SafeFormatter, field, safe_output
from s2v_core.errors import S2VError
from s2v_core.shipped import package_version

__all__ = ["COMMANDS", "build_parser", "main"]

log = logging.getLogger(__name__)

COMMANDS = (info, synth, predict, finetune, embed, site_probe, evaluate, night_heads, experiment, prepare, pretrain)
"""The modules of the subcommands, in the order ``s2v --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``s2v`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="s2v", description="sleep2vec studio command line")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``s2v`` command; returns its exit status (2 for bad input, with one line on stderr).

    Everything it prints goes through :func:`s2v_core.cli.output.safe_output`: control
    characters, escape sequences and bidi overrides read from a file are shown escaped.
    """
    with safe_output():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()  # the guarded sys.stderr
    handler.setFormatter(SafeFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    try:
        check_device_option(args)  # --device cuda without CUDA: one line, not an AssertionError
        return int(args.func(args) or 0)
    except S2VError as exc:
        if args.debug:
            raise
        print(f"s2v {args.command}: error: {field(exc)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"s2v {args.command}: error: {type(exc).__name__}: {field(exc)} (rerun with --debug for details)",
              file=sys.stderr)  # fmt: skip
        return 2
