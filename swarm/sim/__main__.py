"""``python -m swarm.sim``: see swarm/sim/cli.py."""

import sys

from swarm.sim.cli import main

sys.exit(main())
