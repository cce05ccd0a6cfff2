"""``python -m s2v_core.cli`` (and ``torchrun -m s2v_core.cli pretrain ...``) runs the ``s2v`` command line."""

import sys

from s2v_core.cli.main import main

sys.exit(main())
