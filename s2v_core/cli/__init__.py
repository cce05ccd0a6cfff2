"""The ``s2v`` command line: argparse only; every command turns its arguments into library calls."""

from s2v_core.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
