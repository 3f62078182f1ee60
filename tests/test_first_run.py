"""A first run that looks finished: no TensorFlow/CUDA start-up noise, help for every option,
tables that fit 80 columns, and a demo that shows progress and prints its table once.

The noise test runs the real `swarm` processes (publish and export of a tiny model) with the
environment a user has (no TF_* variables set) and requires an empty stderr; with
``SWARM_DEBUG_TF=1`` the same command shows TensorFlow's lines again, so the filter is what
hides them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from apps.cli import build_parser
from apps.procs import free_port

REPO = Path(__file__).resolve().parent.parent
TF_NOISE = re.compile(r"cuda|cudnn|cublas|tensorflow|absl|oneDNN|computation placer|cpu_feature_guard|ydf|hdf5", re.IGNORECASE)


def _user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of the TF variables tests or peers set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "TFDF_", "SWARM_")) and k != "CUDA_VISIBLE_DEVICES"}  # fmt: skip
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    missing = []
    for name, sub in {"swarm": parser, **_subcommands(parser)}.items():
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_swarm_help_and_every_subcommand_help_print_and_exit_0() -> None:
    commands = [[], *[[name] for name in _subcommands(build_parser())]]
    for argv in commands:
        proc = subprocess.run([sys.executable, "-m", "apps.cli", *argv, "--help"], cwd=REPO, env=_user_env(COLUMNS="80"),
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 0 and proc.stdout.startswith("usage: swarm"), (argv, proc.stderr)
        assert proc.stderr == "", (argv, proc.stderr)
        assert all(len(line) <= 80 for line in proc.stdout.splitlines()), argv


async def _swarm(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "apps.cli", *argv, cwd=REPO, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_publish_and_export_print_no_tensorflow_start_up_lines(server: str, tmp_path: Path) -> None:
    publish = ["publish", server, "--identity", str(tmp_path / "k.key"), "--hidden", "4", "--input-size", "3",
               "--classes", "2", "--dataset", "none"]  # fmt: skip
    code, out, err = await _swarm(*publish, env=_user_env())
    assert code == 0 and err == "", err
    join_url = out.strip().splitlines()[-1].split(": ", 1)[1].strip()
    code, out, err = await _swarm("export", join_url, "--out", str(tmp_path / "e"), env=_user_env())
    assert code == 0 and err == "", err
    assert not TF_NOISE.search(out), out

    # the same command with SWARM_DEBUG_TF=1 shows TensorFlow's lines: the filter is what hid them
    code, _, err = await _swarm(*publish, env=_user_env(SWARM_DEBUG_TF="1"))
    assert code == 0 and TF_NOISE.search(err), err


def _row(step: int = 123456) -> dict[str, Any]:
    return {"peer_id": "ab" * 16, "step": step, "test_acc": 0.9123, "neighbors": 3,
            "links": [{"pair": "host"}, {"pair": "srflx"}, {"pair": "relay"}], "exchanges": {"merged": 12345},
            "served": 9999, "bytes_sent": 1234.5e6, "bytes_received": 5678.9e6, "rejected": {"bad_signature": 999}}  # fmt: skip


def test_the_demo_table_fits_80_columns_with_its_widest_values() -> None:
    from apps import demo

    class Peer:
        def __init__(self, name: str, latest: dict[str, Any] | None) -> None:
            self.name, self.latest = name, latest

    browsers = [{"peer_id": "cd" * 16, "claimed_steps": 999999, "claimed_test_acc": 0.5, "updates_verified_by_others": 99999}]
    console = Console(width=80, record=True, color_system=None)
    console.print(demo._live([Peer("peer10", _row()), Peer("peer11", None)], 0.9, 12345.6, browsers))  # type: ignore[list-item]
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    header = next(line for line in text.splitlines() if line.startswith("peer "))
    assert header.split() == ["peer", "id", "step", "acc", "links", "exch", "MB", "out/in", "rej"], header
    assert "…" not in header and "13344" not in text and "22344" in text and "1234.5/5678.9" in text, text


@pytest.mark.timeout(300)
def test_the_demo_shows_peers_starting_prints_its_table_once_and_no_tensorflow_lines(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "apps.cli", "demo", "--peers", "2", "--target", "0.5", "--linger", "0",
           "--timeout", "200", "--port", str(free_port()), "--workdir", str(tmp_path / "demo")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=_user_env(COLUMNS="80"), capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr
    out = proc.stdout
    assert out.count("gossip swarm ·") == 1, out  # the table, once, at the end
    assert "peer1 is training" in out and "peer2 is training" in out, out
    assert out.index("peer1 is training") < out.index("gossip swarm ·")
    assert all(len(line) <= 80 for line in out.splitlines() if "/s/" not in line), out  # links are never folded
    assert not TF_NOISE.search(out), out
    for log in (tmp_path / "demo").glob("peer*.log"):  # the peers' own output: no start-up noise either
        assert not TF_NOISE.search(log.read_text()), (log, log.read_text()[-2000:])
