"""``swarm``: the command line of the gossip swarm (serve, publish, join, demo)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path


def _loop_policy() -> None:
    try:
        import uvloop  # faster event loop: aiortc's SCTP is CPU-bound in Python

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from signaling.app import default_browser_dir, make_app
    from signaling.config import ServerConfig

    config = ServerConfig(data_dir=Path(args.data_dir), public_url=args.public_url, browser_dir=default_browser_dir())
    web.run_app(make_app(config), host=args.host, port=args.port, print=lambda *_: None)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from peer.identity import load_or_create

    from .publish import default_publication, upload

    key = load_or_create(Path(args.identity) if args.identity else None)
    hidden = [int(h) for h in args.hidden.split(",")] if args.hidden else [128]
    pub = default_publication(key, name=args.name, swarm_id=args.swarm_id, hidden=hidden, shards=args.shards,
                              partition=args.partition, alpha=args.alpha, seed=args.seed)  # fmt: skip
    reply = asyncio.run(upload(args.server, pub))
    print(json.dumps(reply, indent=2))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from peer.config import PeerConfig, parse_join_url
    from peer.node import PeerNode
    from protocols.signaling import IceServer

    server, swarm_id = parse_join_url(args.url)
    ice_servers = None
    if args.ice_server:
        ice_servers = []
        for spec in args.ice_server:
            url, *cred = spec.split(",")
            if len(cred) not in (0, 2):
                raise ValueError(f"--ice-server {spec!r}: use URL or URL,USERNAME,CREDENTIAL")
            ice_servers.append(IceServer(urls=[url], username=cred[0] if cred else None,
                                         credential=cred[1] if cred else None))  # fmt: skip
    config = PeerConfig(
        server=server, swarm_id=swarm_id, identity=args.identity, ice_addresses=args.ice_address or None,
        ice_servers=ice_servers, degree=args.degree, data=args.data, metrics_out=args.metrics_out, checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval_s=args.checkpoint_interval, max_steps=args.max_steps, duration_s=args.duration,
        eval_limit=args.eval_limit, seed=args.seed, progress=not args.quiet,
    )  # fmt: skip

    async def main() -> dict:
        node = PeerNode(config)
        _install_stop(node.stop)
        return await node.run()

    _loop_policy()
    summary = asyncio.run(main())
    print(json.dumps({k: summary.get(k) for k in ("peer_id", "step", "test_acc", "exchanges", "rejected")}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _loop_policy()
    return asyncio.run(run_demo(args))


def cmd_experiment(args: argparse.Namespace) -> int:
    from research.config import load
    from research.experiment import run_experiment

    config = load(args.config, args.set or [])
    out = args.out or Path("runs") / config.name
    summary = run_experiment(config, out, show_progress=not args.quiet)
    for method, entry in summary["methods"].items():
        print(f"{method:8s} final mean accuracy {entry['final_mean_acc']:.4f}  MB sent {entry['bytes_sent'] / 1e6:9.1f}")
    print(f"outputs in {out}/ (timeseries.csv, summary.json, accuracy_vs_time.png, accuracy_vs_bytes.png, report.md)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="swarm", description="Peer-to-peer gossip training over WebRTC.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the signaling server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--data-dir", default="swarm-data", help="where published manifests and blobs are stored")
    s.add_argument("--public-url", help="base URL used in join links (e.g. behind a reverse proxy)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("publish", help="publish the default MNIST MLP swarm (or a no-code MLP) to a server")
    s.add_argument("server", help="signaling server base URL, e.g. http://127.0.0.1:8765")
    s.add_argument("--name", default="mnist-mlp")
    s.add_argument("--swarm-id", help="32 hex chars (default: random)")
    s.add_argument("--hidden", help="hidden layer sizes, e.g. 128 or 256,64")
    s.add_argument("--shards", type=int, default=4)
    s.add_argument("--partition", choices=["iid", "dirichlet"], default="iid")
    s.add_argument("--alpha", type=float, default=0.5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--identity", help="publisher key file (default: ~/.config/gossip-swarm/identity.key)")
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser("join", help="join a swarm by its link and train")
    s.add_argument("url", help="join link printed by the publisher, http(s)://HOST:PORT/s/<swarm id>")
    s.add_argument("--identity", type=Path, help="key file (default: ~/.config/gossip-swarm/identity.key)")
    s.add_argument("--ice-address", action="append",
                   help="host candidate address to offer (repeatable); 127.0.0.1 for a loopback mesh")  # fmt: skip
    s.add_argument("--ice-server", action="append", metavar="URL[,USER,CREDENTIAL]",
                   help="STUN/TURN server replacing the swarm's list (repeatable), e.g. turn:host:3478,u,p")  # fmt: skip
    s.add_argument("--degree", type=int, help="target number of neighbors (default: the swarm's)")
    s.add_argument("--data", type=Path, help="train on a local .npz (x, y) instead of the published shard")
    s.add_argument("--metrics-out", type=Path, help="append metrics as JSON lines here")
    s.add_argument("--checkpoint-dir", type=Path)
    s.add_argument("--checkpoint-interval", type=float, default=60.0, help="seconds")
    s.add_argument("--max-steps", type=int, help="stop training after N local steps, keep gossiping")
    s.add_argument("--duration", type=float, help="leave after N seconds")
    s.add_argument("--eval-limit", type=int, help="evaluate on the first N test examples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_join)

    s = sub.add_parser("experiment", help="compare gossip with central averaging (FedAvg), local and pooled")
    s.add_argument("config", type=Path, nargs="?", help="experiment TOML (see experiments/)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. swarm.peers=64 (repeatable)")
    s.add_argument("--out", type=Path, help="output directory (default: runs/<name>)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_experiment)

    s = sub.add_parser("demo", help="local demo: server, default model, 3 Python peers, browser link")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--peers", type=int, default=3)
    s.add_argument("--target", type=float, default=0.90, help="stop when every peer reaches this test accuracy")
    s.add_argument("--timeout", type=float, default=600.0, help="give up after N seconds")
    s.add_argument("--workdir", type=Path, default=Path("runs/demo"))
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except (ValueError, RuntimeError, ConnectionError, FileNotFoundError) as exc:
        print(f"swarm {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
