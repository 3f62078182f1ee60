"""The swarm on emulated WAN links (netlab): data-channel rate, one gossip exchange, time to accuracy.

For each WAN profile (``netlab.PROFILES``), in a fresh emulated internet:

* **transfer**: a Python peer in a home whose WAN link has the profile sends to a Python peer
  in an unshaped ("lan") home, both behind endpoint-independent NATs, over the product's mesh
  and link code (signaling, built-in STUN, ICE, DTLS, SCTP): the receive rate as a fraction of
  the profile's link rate, and the median time of one exchange's transfers (one default-model
  frame each way) against what the link allows (``2 x frame / rate + RTT``, the rate being
  the lower of the link's and the loss-limited rate of ``loss_limited_rate``), run twice: on
  the installed aiortc (patched by scripts/setup.sh, ``patches/``) and on stock aiortc
  (``benchmarks.aiortc_variant``), side by side;
* **browser transfer**: Chromium (default flags, HTTPS join origin) in the shaped home and a
  Python peer in the unshaped one, frames both ways through each side's link code;
* **time to accuracy**: the research ``webrtc`` backend with ``network.profile`` set: the same
  peers, data and seed for gossip and central averaging (FedAvg, the aggregator on a public
  host), peers spread over two homes with the profile (so two peers in different homes see
  twice the profile's RTT). Time to the target mean test accuracy, on one clock. The shards
  are Dirichlet(0.5) by default: with IID shards of the default split one peer alone reaches
  0.92 in about 4 s, before links even form, and the figure would time local training only.

Writes benchmarks/results/wan.json (config, git commit, machine, and netlab's own measurement
of each profile) and prints a table; docs/NETWORK.md quotes it. Root only (network namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.aiortc_variant import env_with, installed_is_patched, stock_overlay
from benchmarks.transfer import machine
from netlab import PROFILES, Home, Internet, NatType

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def git_commit() -> str | None:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return (out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")) if out.returncode == 0 else None


def transfer(profile: str, template: Path, swarm_id: str, frame_bytes: int, exchanges: int, frames: int,
             env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Rate and exchange time between a home on ``profile`` and an unshaped home (``env``: the probes')."""
    from apps.netswarm import swarm_server

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(template, work / "server-data")
        with Internet([Home("a", NatType.EIM, profile), Home("b", NatType.EIM, "lan")]) as net:
            with swarm_server(net, work) as base:
                ws = base.replace("http", "ws", 1) + "/ws"
                probe = [sys.executable, "-m", "benchmarks.wan_probe"]
                sink = net.popen(net.homes["b"].hosts[0], [*probe, "sink", ws, swarm_id, str(work / "sink.json"),
                                                           "--frame-bytes", str(frame_bytes)], cwd=ROOT, env=env)  # fmt: skip
                try:
                    time.sleep(2.0)  # the sink joins first, so the source finds it in its welcome
                    net.run(net.homes["a"].hosts[0], [*probe, "source", ws, swarm_id, str(work / "source.json"),
                                                      "--frame-bytes", str(frame_bytes), "--exchanges", str(exchanges),
                                                      "--frames", str(frames)], cwd=ROOT, check=True, timeout=900, env=env)  # fmt: skip
                finally:
                    sink.kill()
                result: dict[str, Any] = json.loads((work / "source.json").read_text())
    spec = PROFILES[profile]
    if spec.rate_mbit:
        link_mb_s = spec.rate_mbit / 8.0
        result["link_rate_mb_s"] = link_mb_s
        if "rate_mb_s" in result:  # else the bulk part failed (rate_error) and only the exchanges count
            result["rate_fraction_of_link"] = result["rate_mb_s"] / link_mb_s
        result["loss_limited_mb_s"] = loss_limited_rate(spec.rtt_ms, spec.loss_pct) / 1e6
        allowed_rate = min(link_mb_s, result["loss_limited_mb_s"]) * 1e6
        result["exchange_rate_allowed_s"] = 2 * frame_bytes / (link_mb_s * 1e6) + spec.rtt_ms / 1000.0
        allowed = 2 * frame_bytes / allowed_rate + spec.rtt_ms / 1000.0
    else:
        allowed = None  # unshaped: the CPU is the limit, not the link
    result["exchange_allowed_s"] = allowed
    result["exchange_over_allowed"] = result["exchange_median_s"] / allowed if allowed else None
    return result


SCTP_USER_DATA = 1161  # bytes of user data per aiortc SCTP packet (aiortc USERDATA_MAX_LENGTH)


def loss_limited_rate(rtt_ms: float, loss_pct: float, segment: int = SCTP_USER_DATA) -> float:
    """Steady rate (bytes/s) a loss-based congestion control sustains under random loss.

    Mathis, Semke, Mahdavi, Ott, "The macroscopic behavior of the TCP congestion avoidance
    algorithm" (1997): ``rate = segment / RTT * sqrt(3/2) / sqrt(p)``. SCTP's congestion control
    (RFC 4960 section 7, which aiortc and Chromium's usrsctp implement) halves its window per
    loss the same way, so on the 1%-loss mobile profile no reliable data channel moves more
    than about 0.12 MB/s of its 1.25 MB/s link. Infinite with no loss.
    """
    if loss_pct <= 0:
        return float("inf")
    return segment / (rtt_ms / 1000.0) * (1.5 ** 0.5) / ((loss_pct / 100.0) ** 0.5)


def browser_transfer(profile: str, template: Path, swarm_id: str, frame_bytes: int, frames: int) -> dict[str, Any]:
    """Chromium (default flags, HTTPS) in a home on ``profile`` <-> a Python peer in an unshaped home, both ways."""
    from playwright.async_api import async_playwright

    from apps.netswarm import swarm_server

    async def measure(net: Internet, base: str, work: Path) -> dict[str, Any]:
        ws = base.replace("https", "wss", 1) + "/ws"
        probe = [sys.executable, "-m", "benchmarks.wan_probe"]
        wrapper = work / "chromium"
        wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {net.homes['a'].hosts[0].namespace} /usr/bin/chromium \"$@\"\n")
        wrapper.chmod(0o755)
        out: dict[str, Any] = {}
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(wrapper), args=["--no-sandbox"], headless=True)
            try:
                for direction in ("browser_to_python", "python_to_browser"):
                    page = await (await browser.new_context(ignore_https_errors=True)).new_page()
                    await page.goto(f"{base}/peer/bench/bench.html")
                    await page.wait_for_function("window.benchReady === true")
                    result = work / f"{direction}.json"
                    if direction == "browser_to_python":
                        argv = [*probe, "sink", ws, swarm_id, str(result), "--frame-bytes", str(frame_bytes + 64), "--count", str(frames)]
                    else:
                        argv = [*probe, "source", ws, swarm_id, str(result), "--frame-bytes", str(frame_bytes),
                                "--frames", str(frames), "--link-to-browser"]  # fmt: skip
                    cert = {"SSL_CERT_FILE": str(work / "server-data" / "tls" / "cert.pem")}  # the Python side trusts it
                    proc = net.popen(net.homes["b"].hosts[0], argv, cwd=ROOT, env={**os.environ, **cert})
                    try:
                        await asyncio.sleep(2.0)  # the Python side joins first
                        await page.evaluate("([s, m]) => benchLink(s, m)", [swarm_id, frame_bytes + 1024])
                        if direction == "browser_to_python":
                            await page.evaluate("([n, size]) => benchSendChannel(n, size)", [frames, frame_bytes])
                            async with asyncio.timeout(600):
                                while not result.exists():
                                    await asyncio.sleep(0.2)
                            got = json.loads(result.read_text())
                            out[direction + "_mb_s"] = got["bytes_after_first"] / got["seconds"] / 1e6
                        else:
                            await page.wait_for_function(f"window.received.frames >= {frames}", timeout=600_000)
                            got = await page.evaluate("() => window.received")
                            rate = got["bytes"] * (got["frames"] - 1) / got["frames"] / ((got["last"] - got["first"]) / 1000)
                            out[direction + "_mb_s"] = rate / 1e6
                    finally:
                        proc.kill()
                        await page.context.close()
            finally:
                await browser.close()
        return out

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(template, work / "server-data")
        with Internet([Home("a", NatType.EIM, profile), Home("b", NatType.EIM, "lan")]) as net:
            with swarm_server(net, work, tls=True) as base:
                result = asyncio.run(measure(net, base, work))
    spec = PROFILES[profile]
    if spec.rate_mbit:
        for key in ("browser_to_python", "python_to_browser"):
            result[key + "_fraction_of_link"] = result[key + "_mb_s"] / (spec.rate_mbit / 8.0)
    return result


def time_to_accuracy(profile: str, peers: int, target: float, rounds: int, local_steps: int, eval_examples: int,
                     partition: str, alpha: float, seconds: float) -> dict[str, Any]:  # fmt: skip
    from benchmarks.time_to_accuracy import first_time
    from research.config import ExperimentConfig
    from research.webrtc import run_one

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("gossip", "central"):
            config = ExperimentConfig.model_validate({
                "name": f"wan-{profile}", "backend": "webrtc",
                "data": {"eval_examples": eval_examples, "partition": partition, "alpha": alpha},
                "swarm": {"peers": peers, "local_steps": local_steps, "degree": 3},
                "budget": {"rounds": rounds, "eval_every": 1, "seconds": seconds},
                "network": {"profile": profile, "homes": 2},
            })  # fmt: skip
            result = asyncio.run(run_one(config, Path(tmp) / method, method, 0, lambda done: None))
            out[method] = {"seconds_to_target": first_time(result.rows, target), "final_mean_acc": result.rows[-1]["mean_acc"],
                           "bytes_sent": result.rows[-1]["bytes_sent"], "seconds": result.rows[-1]["time_s"]}  # fmt: skip
            print(profile, method, out[method], flush=True)
    g, c = out["gossip"]["seconds_to_target"], out["central"]["seconds_to_target"]
    out["gossip_over_central"] = g / c if g and c else None
    return out


def netlab_measurement(profiles: list[str]) -> Any:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, "-m", "netlab", "measure", *sum((["--profile", p] for p in profiles), []),
                        "--json", f.name], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        return json.loads(Path(f.name).read_text())["results"]


def table(results: dict[str, Any]) -> str:
    lines = ["| profile | link | Python->Python rate (of link) | browser->Python / Python->browser (of link) | "
             "one exchange (2 x frame), patched / stock aiortc | of what rate, RTT and loss allow | gossip / FedAvg to target |", "|---|---|---|---|---|---|---|"]
    for name, r in results["profiles"].items():
        t, a = r["transfer"], r.get("time_to_accuracy")
        if "error" in t:
            t = {"rate_mb_s": float("nan"), "exchange_median_s": float("nan"), "failed": t["error"]}
        if a and "error" in a:
            a = None
        spec = PROFILES[name]
        link = f"{spec.rtt_ms:g} ms, {spec.rate_mbit:g} Mbit/s, {spec.loss_pct:g}% loss" if spec.shaped else "unshaped"
        frac = f"{t['rate_fraction_of_link']:.2f}" if t.get("rate_fraction_of_link") else "-"
        over = f"{t['exchange_over_allowed']:.2f}x" if t.get("exchange_over_allowed") else "-"
        if a:
            g, c = a["gossip"]["seconds_to_target"], a["central"]["seconds_to_target"]
            tta = f"{g:.0f} s / {c:.0f} s" if g and c else f"{g} / {c}"
            tta += f" ({a['gossip_over_central']:.2f}x)" if a.get("gossip_over_central") else ""
        else:
            tta = "not run"
        b = r.get("browser_transfer")
        if b and "error" in b:
            btxt = "failed: " + b["error"][:60]
        elif b:
            fr = (f" ({b['browser_to_python_fraction_of_link']:.2f} / {b['python_to_browser_fraction_of_link']:.2f})"
                  if "browser_to_python_fraction_of_link" in b else "")  # fmt: skip
            btxt = f"{b['browser_to_python_mb_s']:.2f} / {b['python_to_browser_mb_s']:.2f} MB/s{fr}"
        else:
            btxt = "not run"
        if "failed" in t:
            lines.append(f"| {name} | {link} | failed: {t['failed'][:60]} | {btxt} | - | - | {tta} |")
            continue
        ex = f"{1000 * t['exchange_median_s']:.0f} ms"
        st = r.get("transfer_stock_aiortc")
        if st and "exchange_median_s" in st:
            ex += f" / {1000 * st['exchange_median_s']:.0f} ms"
            over += f" / {st['exchange_over_allowed']:.2f}x" if st.get("exchange_over_allowed") else ""
        rate = f"{t['rate_mb_s']:.2f} MB/s ({frac})" if "rate_mb_s" in t else f"failed: {t.get('rate_error', '?')}"
        lines.append(f"| {name} | {link} | {rate} | {btxt} | {ex} | {over} | {tta} |")
    return "\n".join(lines) + "\n"


def attempt(measure: Any, *args: Any) -> dict[str, Any]:
    """Run one measurement; a failure (e.g. a transfer that times out on a lossy link) is recorded, not fatal."""
    try:
        return measure(*args)  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - the benchmark reports what failed and goes on
        print(f"{measure.__name__} {args[0]} failed: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {str(exc)[-500:]}"}


def save(results: dict[str, Any], out: Path = RESULTS / "wan.json") -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(out)  # atomic: a run killed mid-write keeps the previous file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES), help="profile to run, repeatable (default: all)")
    parser.add_argument("--peers", type=int, default=4, help="peers for the time-to-accuracy runs (default 4)")
    parser.add_argument("--target", type=float, default=0.90, help="mean test accuracy to reach (default 0.90)")
    parser.add_argument("--partition", default="dirichlet", choices=["iid", "dirichlet", "by_class"],
                        help="how the training data is sharded (default dirichlet)")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (default 0.5)")
    parser.add_argument("--rounds", type=int, default=80, help="exchange rounds per peer (default 80)")
    parser.add_argument("--seconds", type=float, default=240, help="time budget of each training run in s (default 240)")
    parser.add_argument("--local-steps", type=int, default=25, help="local steps per round (default 25)")
    parser.add_argument("--eval-examples", type=int, default=1000, help="test examples per evaluation (default 1000)")
    parser.add_argument("--exchanges", type=int, default=5, help="timed exchanges per profile (default 5)")
    parser.add_argument("--frames", type=int, default=20, help="frames for the rate (default 20, 8 MB)")
    parser.add_argument("--no-training", action="store_true", help="transfers only (no time-to-accuracy runs)")
    parser.add_argument("--no-browser", action="store_true", help="no browser<->Python transfers (they need Chromium)")
    parser.add_argument("--no-stock-aiortc", action="store_true",
                        help="skip the transfers on stock aiortc (default: each profile's transfer runs on both, side by side)")
    parser.add_argument("--out", type=Path, default=RESULTS / "wan.json", help="results file (default benchmarks/results/wan.json)")
    args = parser.parse_args()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from apps.netswarm import preload
    from apps.publish import default_publication
    from peer.node import max_frame_size

    profiles = args.profile or list(PROFILES)
    pub = default_publication(Ed25519PrivateKey.generate(), seed=0)
    frame_bytes = max_frame_size(pub.manifest)  # one default-model float32 frame
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.wan", *sys.argv[1:]]), "commit": git_commit(), "machine": machine(),
        "config": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "frame_bytes": frame_bytes, "profiles": profiles}, "profiles": {},
        "netlab_measure": netlab_measurement(profiles), "load_average_before": os.getloadavg(),
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "server-data"
        swarm_id = preload(template, pub)
        stock = None if args.no_stock_aiortc else stock_overlay(Path(tmp))
        results["config"]["aiortc_sctp_patch"] = installed_is_patched()
        for name in profiles:
            entry: dict[str, Any] = {"profile": PROFILES[name].to_dict()}
            results["profiles"][name] = entry
            entry["transfer"] = attempt(transfer, name, template, swarm_id, frame_bytes, args.exchanges, args.frames)
            print(name, "transfer", {k: v for k, v in entry["transfer"].items() if k != "exchange_s"}, flush=True)
            if stock is not None:  # the same transfer on stock aiortc, side by side
                entry["transfer_stock_aiortc"] = attempt(transfer, name, template, swarm_id, frame_bytes, args.exchanges,
                                                         args.frames, env_with(stock))  # fmt: skip
                print(name, "transfer, stock aiortc", {k: v for k, v in entry["transfer_stock_aiortc"].items() if k != "exchange_s"},
                      flush=True)  # fmt: skip
            if not args.no_browser:
                entry["browser_transfer"] = attempt(browser_transfer, name, template, swarm_id, frame_bytes, args.frames)
                print(name, "browser transfer", entry["browser_transfer"], flush=True)
            if not args.no_training:
                entry["time_to_accuracy"] = attempt(time_to_accuracy, name, args.peers, args.target, args.rounds,
                                                    args.local_steps, args.eval_examples, args.partition, args.alpha,
                                                    args.seconds)  # fmt: skip
            entry["load_average_after"] = os.getloadavg()  # other work on the machine slows the CPU-bound figures
            save(results, args.out)  # after every profile: a later failure keeps what was measured
    results["table"] = table(results)
    save(results, args.out)
    print(results["table"])
    print(f"machine: {platform.platform()}; results in {args.out}")


if __name__ == "__main__":
    main()
