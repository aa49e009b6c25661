"""``python -m nasmerc`` (and ``torchrun ... -m nasmerc``): the ``nasmerc`` command."""

import sys

from nasmerc.cli import main

sys.exit(main())
