"""``python -m audioset_data`` runs the ``audioset`` command."""

import sys

from .cli import main

sys.exit(main())
