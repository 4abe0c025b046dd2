"""``swarm init-drone --id N --swarm ID --voters 1-5 --broker URL ...``: write one drone's
commented config (drone.toml) and its systemd unit (swarm/deploy/init_drone.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from swarm.deploy.init_drone import UNIT_NAME, DroneSetup, InitError, write_files
    from swarm.deploy.node_ids import parse_node_ids

    parser = argparse.ArgumentParser(
        prog="swarm init-drone", allow_abbrev=False,
        description="Write a drone's commented config and a hardened systemd unit for its "
                    "agent (docs/deploy-pi.md). The config is checked with the agent's parser "
                    "before it is written.")
    parser.add_argument("--id", type=int, required=True, help="this drone's Raft node id")
    parser.add_argument("--swarm", required=True, help="swarm id (the same on every drone)")
    parser.add_argument("--voters", required=True,
                        help="node ids of the initial cluster: 1,2,3 or 1-5")
    parser.add_argument("--broker", action="append", required=True, dest="brokers",
                        help="broker URL, mqtts://HOST:8883 (repeat for fail-over brokers)")
    parser.add_argument("--serial", default="/dev/serial0",
                        help="flight controller link (default /dev/serial0); 'none' for no FC")
    parser.add_argument("--baud", type=int, default=921600, help="serial baud (default 921600)")
    parser.add_argument("--sysid", type=int, help="the flight controller's SYSID_THISMAV "
                                                  "(default: the node id)")
    parser.add_argument("--profile", choices=("radio", "lan"), default="radio",
                        help="timing profile (default radio)")
    parser.add_argument("--config-dir", type=Path, default=Path("/etc/wildfire-swarm"),
                        help="where drone.toml and its secrets live on the drone "
                             "(default /etc/wildfire-swarm)")
    parser.add_argument("--data-root", type=Path, default=Path("/var/lib/wildfire-swarm"),
                        help="persistent storage for the Raft store (default /var/lib/wildfire-swarm)")
    parser.add_argument("--user", default="swarm", help="unprivileged user running the agent")
    parser.add_argument("--swarm-command", default="",
                        help="absolute path of the swarm script (default: this installation's)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder to write drone.toml and the unit into (default .)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    try:
        setup = DroneSetup(
            node_id=args.id, swarm=args.swarm, voters=parse_node_ids(args.voters),
            brokers=tuple(args.brokers),
            serial=None if args.serial == "none" else args.serial, baud=args.baud,
            sysid=args.sysid, profile=args.profile, config_dir=args.config_dir,
            data_root=args.data_root, user=args.user, swarm_command=args.swarm_command)
        written = write_files(setup, args.out, force=args.force)
    except (InitError, ValueError) as exc:
        print(f"swarm init-drone: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"swarm init-drone: error: cannot write into {args.out}: {exc.strerror}",
              file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    print(f"""next, on the drone (docs/deploy-pi.md):
  sudo install -d -o root -g {setup.user} -m 0750 {setup.config_dir}
  sudo install -o root -g {setup.user} -m 0644 {written[0]} {setup.config_path}
  sudo install -o {setup.user} -g {setup.user} -m 0600 swarm.key mqtt.password {setup.config_dir}/
  sudo install -m 0644 {written[1]} /etc/systemd/system/{UNIT_NAME}
  sudo -u {setup.user} swarm doctor --config {setup.config_path}
  sudo systemctl daemon-reload && sudo systemctl enable --now {UNIT_NAME}""")
    return 0
