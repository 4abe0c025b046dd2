"""``python -m swarm.launch FILE [name:=value ...]`` (the same as ``swarm launch``)."""

import sys

from .cli import main

sys.exit(main())
