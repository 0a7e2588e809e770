"""``python -m serving <export_dir>`` = ``recsys-mtl-serve``."""

import sys

from serving.cli import main

sys.exit(main())
