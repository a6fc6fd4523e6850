"""`python -m pipeline` (also what `accelerate launch -m pipeline` runs)."""

import sys

from pipeline.cli import main

sys.exit(main())
