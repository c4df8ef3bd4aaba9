"""``python -m softcfg`` runs the same command line as the ``softcfg`` console script."""

import sys

from softcfg.cli import main

sys.exit(main())
