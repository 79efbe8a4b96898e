"""``python -m lirdrec`` = the ``lirdrec`` command."""

import sys

from lirdrec.cli.main import main

sys.exit(main())
