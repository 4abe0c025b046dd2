"""The subcommands of ``swarm`` (see :mod:`swarm.__main__` for the table that lists
them). Each module here exposes ``main(argv: list[str]) -> int`` and builds its own
argparse parser with ``prog="swarm <command>"`` and ``allow_abbrev=False``."""
