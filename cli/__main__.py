"""``python -m traindash.cli``: the same as the ``traindash`` command."""

import sys

from traindash.cli import main

sys.exit(main())
