"""``swarm gcs``: the ground station, a web page showing the swarm's agreed map and
health live, with operator actions (docs/gcs.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm gcs", allow_abbrev=False,
        description="Serve the ground station page: the swarm's agreed map and health, live, "
                    "with operator actions. Give --config FILE, or --swarm (and --broker).")
    parser.add_argument("--config", type=Path, help="config file (docs/gcs.md)")
    parser.add_argument("--swarm", help="swarm id (overrides the config file)")
    parser.add_argument("--broker", action="append", metavar="HOST:PORT",
                        help="MQTT broker; repeat to fail over (overrides the config file)")
    parser.add_argument("--host", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve on (default 8080)")
    parser.add_argument("--token-file", type=Path,
                        help="file holding the operator token (required off loopback)")
    parser.add_argument("--tiles", type=Path, help="offline tiles: a z/x/y folder or .mbtiles")
    tls = parser.add_argument_group("TLS (override the config file)")
    tls.add_argument("--tls-ca", type=Path, metavar="FILE",
                     help="MQTT over TLS: the CA that signed the brokers' certificates")
    tls.add_argument("--tls-cert", type=Path, metavar="FILE",
                     help="MQTT over TLS: the station's client certificate (with --tls-key)")
    tls.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (mode 0600)")
    tls.add_argument("--https-cert", type=Path, metavar="FILE",
                     help="serve the page over HTTPS with this certificate (with --https-key)")
    tls.add_argument("--https-key", type=Path, metavar="FILE", help="its private key (mode 0600)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.config is None and args.swarm is None:
        parser.error("give --config FILE or --swarm ID")
    from swarm.gcs import ConfigError, load_config, serve

    try:
        config = load_config(args.config, swarm=args.swarm, brokers=args.broker,
                             host=args.host, port=args.port, token_file=args.token_file,
                             tiles=args.tiles, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                             tls_key=args.tls_key, https_cert=args.https_cert,
                             https_key=args.https_key)
    except (ConfigError, ValueError) as exc:
        print(f"swarm gcs: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(config, lambda text: print(text, flush=True)))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"swarm gcs: error: cannot serve on {config.host}:{config.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
