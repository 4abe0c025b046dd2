"""``python -m consensus.sim``: run seeded fault simulations (see consensus/sim/cli.py)."""

import sys

from consensus.sim.cli import main

sys.exit(main())
