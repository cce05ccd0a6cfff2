"""The ``s2v`` command line: argparse only; every command turns its options into library calls.

:mod:`.main` builds the one parser and runs the one error handler; :mod:`.options` holds the
options several commands share; each other module is one subcommand.
"""

from s2v_core.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
