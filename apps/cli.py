"""``swarm``: the command line of the gossip swarm (serve, publish, export, join, demo)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from .quiet import DEBUG_ENV, import_tensorflow, quiet_environment

NEEDS_TENSORFLOW = ("publish", "export", "join", "demo", "experiment")


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

    from signaling.app import default_browser_dir, make_app, self_signed_certificate, tls_context
    from signaling.config import ServerConfig

    data_dir = Path(args.data_dir)
    if args.self_signed and (args.tls_cert or args.tls_key):
        raise ValueError("give either --self-signed or --tls-cert/--tls-key, not both")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    cert, key = (Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else (None, None)
    if args.self_signed:
        cert, key = self_signed_certificate(data_dir / "tls", [args.host, *(args.tls_name or [])])
        print(f"self-signed certificate {cert} (browsers will ask to accept it; Python peers: SSL_CERT_FILE={cert})")
    ssl_context = tls_context(cert, key) if cert and key else None
    scheme = "https" if ssl_context else "http"
    overrides: dict[str, Any] = {"max_upload_bytes": int(args.max_upload_mb * 1024 * 1024)} if args.max_upload_mb else {}
    if bool(args.turn_url) != bool(args.turn_secret_file):
        raise ValueError("--turn-url and --turn-secret-file go together (coturn with use-auth-secret; see `swarm turn-config`)")
    if args.turn_url:
        from signaling.ice import load_turn_secret

        overrides |= {"turn_urls": args.turn_url, "turn_secret": load_turn_secret(Path(args.turn_secret_file)),
                      "turn_ttl_s": args.turn_ttl}  # fmt: skip
    stun = None if args.no_stun else args.stun_port
    from .prepare import PREPARE_COMMAND

    config = ServerConfig(data_dir=data_dir, public_url=args.public_url, browser_dir=default_browser_dir(),
                          prepare_command=PREPARE_COMMAND, stun_port=stun, stun_bind=args.host, stun_host=args.stun_host, **overrides)  # fmt: skip
    print(f"serving {scheme}://{args.host}:{args.port}/ (swarm index at /swarms, no-code publishing at /peer/publish.html)")
    if stun is not None:
        print(f"STUN on udp {args.host}:{stun} (peers of swarms listing no ICE servers get it in their welcome)")
    web.run_app(make_app(config), host=args.host, port=args.port, ssl_context=ssl_context, print=lambda *_: None)
    return 0


def cmd_turn_config(args: argparse.Namespace) -> int:
    import secrets

    from signaling.ice import coturn_config

    path = Path(args.secret_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
        print(f"# new secret written to {path} (mode 600)", file=sys.stderr)
    print(coturn_config(secret_file=path, realm=args.realm, listening_ip=args.listening_ip, external_ip=args.external_ip,
                        port=args.port, min_port=args.min_port, max_port=args.max_port), end="")  # fmt: skip
    return 0


def _ice_specs(specs: list[str] | None) -> list:
    """The ``--ice-server`` values as IceServers (``protocols.signaling.ice_server_from_spec``)."""
    from protocols.signaling import ice_server_from_spec

    try:
        return [ice_server_from_spec(spec) for spec in specs or []]
    except ValueError as exc:
        raise ValueError(f"--ice-server {exc}") from None


def _ice_server_list(specs: list[str] | None) -> list:
    servers = _ice_specs(specs)
    from protocols.manifest import static_turn_password

    refused = static_turn_password(servers)
    if refused is not None:
        raise ValueError(f"--ice-server {refused}")
    return servers


def _configs(args: argparse.Namespace) -> tuple:
    """TrainingConfig and GossipConfig from the publish flags; a bad value names its flag."""
    from pydantic import ValidationError

    from protocols.manifest import GossipConfig, TrainingConfig

    training = {"optimizer": args.optimizer, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
                "loss": args.loss, "metrics": args.metrics.split(",") if args.metrics else None,
                "local_steps": args.local_steps, "target_accuracy": args.target_accuracy, "eval_every": args.eval_every,
                "clipnorm": args.clipnorm, "l2": args.l2, "warmup_steps": args.warmup_steps}  # fmt: skip
    gossip = {"degree": args.degree, "max_degree": args.max_degree, "codec": args.codec, "robust": args.robust,
              "exchange_timeout_s": args.exchange_timeout, "mixing": args.mixing, "fanout": args.fanout}
    out = []
    for cls, values in ((TrainingConfig, training), (GossipConfig, gossip)):
        try:
            out.append(cls(**{k: v for k, v in values.items() if v is not None}))
        except ValidationError as exc:
            first = exc.errors()[0]
            flag = "--" + str(first["loc"][0]).removesuffix("_s").replace("_", "-") if first["loc"] else cls.__name__
            raise ValueError(f"{flag}: {first['msg']}") from None
    return out[0], out[1]


def cmd_publish(args: argparse.Namespace) -> int:
    from peer.identity import load_or_create

    from .publish import DataOptions, build_publication, parse_hidden, upload

    training, gossip = _configs(args)
    data = DataOptions(args.dataset, label_column=args.label_column, test_fraction=args.test_fraction, shards=args.shards,
                       partition=args.partition, alpha=args.alpha, classes_per_shard=args.classes_per_shard)  # fmt: skip
    hidden = parse_hidden(args.hidden) if args.hidden is not None else None
    name = args.name or (Path(args.model).stem if args.model else "mnist-mlp" if args.dataset == "mnist" else "mlp")
    key = load_or_create(Path(args.identity) if args.identity else None)
    pub = build_publication(key, model=args.model, hidden=hidden, input_size=args.input_size, classes=args.classes,
                            data=data, name=name, swarm_id=args.swarm_id, seed=args.seed, training=training,
                            gossip=gossip, ice_servers=_ice_server_list(args.ice_server),
                            python_only=args.python_peers_only)  # fmt: skip
    for notice in pub.notices:
        print(f"swarm publish: note: {notice}", file=sys.stderr)
    reply = asyncio.run(upload(args.server, pub))
    # the pin comes from our own key, never from the server's reply: it is what lets joiners refuse
    # a manifest the server swapped (the fragment never reaches the server)
    from peer.config import pinned_join_url
    from protocols.crypto import public_key_bytes, publisher_fingerprint

    fingerprint = publisher_fingerprint(public_key_bytes(key))
    pinned = pinned_join_url(reply["join_url"], fingerprint)
    if args.json:
        print(json.dumps({**reply, "publisher": fingerprint, "pinned_join_url": pinned}, indent=2))
    else:
        print(f"swarm id:  {reply['swarm_id']}\nmodel id:  {reply['model_id']}\n"
              f"publisher: {fingerprint} (joiners of this link refuse manifests signed by any other key)\n"
              f"join link: {pinned}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    summary = export_model(args.source, Path(args.out))
    print(json.dumps(summary, indent=2))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from peer.config import PeerConfig, parse_join_link
    from peer.fetch import PUBLISHER_PIN
    from peer.node import PeerNode

    server, swarm_id, pin = parse_join_link(args.url)  # a pinned link refuses another publisher's manifest
    ice_servers = _ice_specs(args.ice_server) if args.ice_server else None
    config = PeerConfig(
        server=server, swarm_id=swarm_id, identity=args.identity, ice_addresses=args.ice_address or None,
        ice_servers=ice_servers, ice_relay_only=args.ice_relay_only, degree=args.degree, data=args.data, metrics_out=args.metrics_out, checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval_s=args.checkpoint_interval, max_steps=args.max_steps, duration_s=args.duration,
        eval_limit=args.eval_limit, seed=args.seed, progress=not args.quiet,
    )  # fmt: skip

    async def main() -> dict:
        node = PeerNode(config)
        _install_stop(node.stop)
        return await node.run()

    _loop_policy()
    PUBLISHER_PIN.set(pin)  # asyncio.run copies this context into the peer's task
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

    overrides = list(args.set or [])
    if args.backend:
        overrides.append(f"backend={args.backend}")
    if args.ray_address:
        overrides.append(f"sim.ray_address={args.ray_address}")
    if args.ray_workers:
        overrides.append(f"sim.ray_workers={args.ray_workers}")
    config = load(args.config, overrides)
    out = args.out or Path("runs") / config.name
    summary = run_experiment(config, out, show_progress=not args.quiet)
    for method, entry in summary["methods"].items():
        print(f"{method:8s} final mean accuracy {entry['final_mean_acc']:.4f}  MB sent {entry['bytes_sent'] / 1e6:9.1f}")
    print(f"outputs in {out}/ (timeseries.csv, summary.json, accuracy_vs_time.png, accuracy_vs_bytes.png, report.md)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="swarm", description="Peer-to-peer gossip training over WebRTC.",
                                epilog=f"TensorFlow's start-up logs are hidden; {DEBUG_ENV}=1 shows them.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the signaling server")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument("--port", type=int, default=8765, help="TCP port of HTTP(S) and WebSocket signaling (default 8765)")
    s.add_argument("--data-dir", default="swarm-data", help="where published manifests and blobs are stored")
    s.add_argument("--public-url", help="base URL used in join links (e.g. behind a reverse proxy)")
    s.add_argument("--tls-cert", help="PEM certificate (chain) to serve HTTPS/WSS")
    s.add_argument("--tls-key", help="PEM private key of --tls-cert")
    s.add_argument("--self-signed", action="store_true",
                   help="serve HTTPS with a self-signed certificate kept in DATA_DIR/tls/ (made on first use; for a LAN)")  # fmt: skip
    s.add_argument("--tls-name", action="append", metavar="NAME",
                   help="extra host name or IP for the self-signed certificate (repeatable)")  # fmt: skip
    s.add_argument("--max-upload-mb", type=float, help="largest publish upload in MiB (default 256)")
    g = s.add_argument_group("NAT traversal (docs/NETWORK.md)")
    g.add_argument("--stun-port", type=int, default=3478, help="UDP port of the built-in STUN server (default 3478)")
    g.add_argument("--no-stun", action="store_true", help="do not run the built-in STUN server")
    g.add_argument("--stun-host", help="host name peers use for the STUN server (default: --public-url's, else "
                                       "the host name each peer used to reach this server)")  # fmt: skip
    g.add_argument("--turn-url", action="append", metavar="URL",
                   help="TURN server peers may relay through, e.g. turn:HOST:3478 (repeatable; coturn with use-auth-secret)")
    g.add_argument("--turn-secret-file", metavar="FILE", help="coturn's static-auth-secret; each peer gets its own "
                                                              "time-limited credentials made from it")  # fmt: skip
    g.add_argument("--turn-ttl", type=int, default=24 * 3600, help="lifetime of issued TURN credentials in s (default 1 day)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("turn-config", help="print a coturn config that accepts the TURN credentials this server issues")
    s.add_argument("--secret-file", required=True, help="the shared secret (made if missing), as for --turn-secret-file")
    s.add_argument("--realm", default="gossip-swarm", help="TURN realm (any name; default gossip-swarm)")
    s.add_argument("--listening-ip", help="address coturn listens and relays on (default: all)")
    s.add_argument("--external-ip", help="public address, when coturn is behind a 1:1 NAT (cloud VMs)")
    s.add_argument("--port", type=int, default=3478, help="TURN port (default 3478)")
    s.add_argument("--min-port", type=int, default=49152, help="lowest relay port (default 49152)")
    s.add_argument("--max-port", type=int, default=65535, help="highest relay port (default 65535)")
    s.set_defaults(func=cmd_turn_config)

    s = sub.add_parser("publish", help="publish a model (Keras .h5, TF.js directory, or a no-code MLP) to a server",
                       description="Publish a swarm. Without --model, a no-code MLP is built from --hidden "
                                   "(default 128:relu) sized to the dataset. Prints the swarm id and join link.")  # fmt: skip
    s.add_argument("server", help="signaling server base URL, e.g. http://127.0.0.1:8765")
    s.add_argument("--name", help="swarm name shown on the index page (default: from the model)")
    s.add_argument("--swarm-id", help="32 hex chars (default: random; reuse one to publish a new version)")
    s.add_argument("--identity", help="publisher key file (default: ~/.config/gossip-swarm/identity.key)")
    s.add_argument("--seed", type=int, default=0, help="seed of the initial weights, split and sharding")
    s.add_argument("--json", action="store_true", help="print the server's reply as JSON")
    g = s.add_argument_group("model (one source)")
    g.add_argument("--model", help="Keras .keras or .h5 file (Keras 3 or tf_keras), or TF.js layers directory "
                                   "(model.json + weight files); see docs/PUBLISHING.md")  # fmt: skip
    g.add_argument("--python-peers-only", action="store_true",
                   help="publish a model browsers cannot load or train (the refusal names the layers); "
                        "only Python peers can join, and the join page says so")  # fmt: skip
    g.add_argument("--hidden", help="no-code MLP hidden layers UNITS[:ACTIVATION],... e.g. 128 or 256:relu,64:tanh")
    g.add_argument("--input-size", type=int, help="no-code MLP input features (default: the dataset's)")
    g.add_argument("--classes", type=int, help="no-code MLP output classes (default: the dataset's)")
    g = s.add_argument_group("dataset")
    g.add_argument("--dataset", default="mnist",
                   help="mnist (built-in digits), none (peers bring --data), or a .npz (x, y) / .csv file")  # fmt: skip
    g.add_argument("--label-column", help="CSV column holding the label: a header name or a 0-based index (-1: the last); "
                   "default: the column named label, labels, target, class, y, outcome, species or category")
    g.add_argument("--test-fraction", type=float, default=0.2, help="share of every class held out for testing")
    g.add_argument("--shards", type=int, default=4, help="training shards (the server hands each peer the least-used)")
    g.add_argument("--partition", choices=["iid", "dirichlet", "by_class"], default="iid",
                   help="how the train split is cut into shards: iid (default), dirichlet (label skew, --alpha), "
                        "by_class (--classes-per-shard)")  # fmt: skip
    g.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew concentration (smaller: more skew)")
    g.add_argument("--classes-per-shard", type=int, default=2, help="by_class partition: classes in each shard")
    g = s.add_argument_group("training")
    g.add_argument("--optimizer", choices=["adam", "sgd", "rmsprop"], help="optimizer of every peer (default adam)")
    g.add_argument("--learning-rate", type=float, help="optimizer learning rate (default 0.001)")
    g.add_argument("--batch-size", type=int, help="examples per local step (default 32)")
    g.add_argument("--loss", choices=["sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
                                      "mean_squared_error", "mean_absolute_error"], metavar="LOSS",
                   help="the task: sparse_categorical_crossentropy, categorical_crossentropy, binary_crossentropy, "
                        "mean_squared_error or mean_absolute_error (default: what the model's output implies: softmax -> sparse_categorical_crossentropy, "
                        "sigmoid -> binary_crossentropy, else mean_squared_error; a no-code MLP: regression when the "
                        "targets are fractional)")  # fmt: skip
    g.add_argument("--metrics", help="comma-separated: accuracy (classification), mae, mse (default: the task's, "
                                     "accuracy or mae)")  # fmt: skip
    g.add_argument("--local-steps", type=int, help="local steps between gossip exchanges (default 50)")
    g.add_argument("--target-accuracy", type=float, help="test accuracy the swarm aims for (default 0.90)")
    g.add_argument("--eval-every", type=int, help="local steps between test evaluations")
    g.add_argument("--clipnorm", type=float, help="clip each gradient tensor to this L2 norm")
    g.add_argument("--l2", type=float, help="L2 penalty on kernels: loss += L2 * sum(w**2)")
    g.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up over this many local steps")
    g = s.add_argument_group("gossip and network")
    g.add_argument("--degree", type=int, help="target number of neighbors (default 4)")
    g.add_argument("--max-degree", type=int, help="refuse connections beyond this many neighbors (default 8)")
    g.add_argument("--codec", choices=["float32", "float16", "int8"],
                   help="how weight updates are encoded on the wire (default float32; int8 sends ~4x fewer bytes)")
    g.add_argument("--robust", choices=["none", "clip"],
                   help="clip (default): self-centered clipping of neighbors' models; none: plain averaging (no defence)")
    g.add_argument("--exchange-timeout", type=float, metavar="SECONDS",
                   help="least time an exchange step may take (default 10); peers wait longer for large models "
                        "on slow links (frame size / measured rate, docs/PROTOCOL.md)")  # fmt: skip
    g.add_argument("--mixing", choices=["random", "exponential"],
                   help="whom peers exchange with (label skew, docs/RESEARCH.md): random (default) or exponential, "
                        "the one-peer exponential graph over the members sorted by peer id")  # fmt: skip
    g.add_argument("--fanout", type=int, help="open links a peer exchanges with per round, one after another (default 1)")
    g.add_argument("--ice-server", action="append", metavar="URL[,USER,CREDENTIAL]",
                   help="STUN server for every peer of the swarm (repeatable), e.g. stun:host:3478; default: the "
                        "signaling server's own STUN. TURN passwords are refused: see `swarm serve --turn-url`")  # fmt: skip
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser("export", help="save a peer's model as Keras .h5 and TF.js layers format")
    s.add_argument("source", help="a peer's checkpoint directory (model.h5, state.json), or a join link "
                                  "(exports the swarm's published model)")  # fmt: skip
    s.add_argument("--out", required=True, help="output directory (model.h5, tfjs/, export.json)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("join", help="join a swarm by its link and train")
    s.add_argument("url", help="join link printed by the publisher, http(s)://HOST:PORT/s/<swarm id>[#pk=<publisher "
                               "fingerprint>]; a pinned link refuses a manifest signed by anyone else")  # fmt: skip
    s.add_argument("--identity", type=Path, help="key file (default: ~/.config/gossip-swarm/identity.key)")
    s.add_argument("--ice-address", action="append",
                   help="host candidate address to offer (repeatable); 127.0.0.1 for a loopback mesh")  # fmt: skip
    s.add_argument("--ice-server", action="append", metavar="URL[,USER,CREDENTIAL]",
                   help="STUN/TURN server replacing the swarm's list (repeatable), e.g. turn:host:3478,u,p")  # fmt: skip
    s.add_argument("--ice-relay-only", action="store_true",
                   help="use TURN relay candidates only (the swarm's or --ice-server TURN servers)")
    s.add_argument("--degree", type=int, help="target number of neighbors (default: the swarm's)")
    s.add_argument("--data", type=Path, help="train on a local .npz (x, y) instead of the published shard")
    s.add_argument("--metrics-out", type=Path, help="append metrics as JSON lines here")
    s.add_argument("--checkpoint-dir", type=Path,
                   help="where the model is checkpointed (default ~/.local/share/gossip-swarm/<swarm>/<peer>/)")
    s.add_argument("--checkpoint-interval", type=float, default=60.0, help="seconds between checkpoints (default 60)")
    s.add_argument("--max-steps", type=int, help="stop training after N local steps, keep gossiping")
    s.add_argument("--duration", type=float, help="leave after N seconds")
    s.add_argument("--eval-limit", type=int, help="evaluate on the first N test examples")
    s.add_argument("--seed", type=int, default=0, help="seed of the batch order (default 0)")
    s.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    s.set_defaults(func=cmd_join)

    s = sub.add_parser("experiment", help="compare gossip with central averaging (FedAvg), local and pooled")
    s.add_argument("config", type=Path, nargs="?", help="experiment TOML (see experiments/)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. swarm.peers=64 (repeatable)")
    s.add_argument("--backend", choices=["sim", "webrtc", "ray"],
                   help="override the config's backend; ray: the simulator with its peer blocks on Ray workers")
    s.add_argument("--ray-address", metavar="ADDR", help="ray backend: an existing cluster (default: a local Ray instance)")
    s.add_argument("--ray-workers", type=int, metavar="N", help="ray backend: actors to spread sim.blocks over (default: one per block)")
    s.add_argument("--out", type=Path, help="output directory (default: runs/<name>)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_experiment)

    s = sub.add_parser("demo", help="local demo: server, default model, 3 Python peers, browser link")
    s.add_argument("--port", type=int, default=8765, help="port of the demo's signaling server (default 8765)")
    s.add_argument("--peers", type=int, default=3, help="headless Python peers to start (default 3)")
    s.add_argument("--target", type=float, help="stop when every peer reaches this test accuracy (default: the "
                                                  "manifest's training.target_accuracy, 0.90 for the embedded default)")  # fmt: skip
    s.add_argument("--timeout", type=float, default=600.0, help="give up after N seconds")
    s.add_argument("--linger", type=float, default=90.0,
                   help="keep the swarm up N seconds after the target, so a browser tab can join (0: stop at once)")
    s.add_argument("--workdir", type=Path, default=Path("runs/demo"),
                   help="where the server data, peer logs, metrics and summary.json go (default runs/demo)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    quiet_environment()  # before anything imports TensorFlow
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command in NEEDS_TENSORFLOW:
        import_tensorflow()  # now, with its start-up lines filtered, rather than wherever it is first needed
    try:
        return int(args.func(args))
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"swarm {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
