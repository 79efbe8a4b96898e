"""``python -m lirdrec.diagnostics``: the gradient-bias script (see :mod:`lirdrec.diagnostics.cli`)."""

import sys

from lirdrec.diagnostics.cli import main

sys.exit(main())
