"""``python -m afford.cli``: the ``afford`` command."""

import sys

from afford.cli import main

sys.exit(main())
