"""``python -m unlearnbench``: the same command line as the ``unlearnbench`` script."""

import sys

from harness.cli.main import main

sys.exit(main())
