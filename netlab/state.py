"""Run ids, per-run state files, and removal of what a crashed run left behind.

Each live ``Internet`` owns ``/run/netlab/<id>.json``: the owner's pid and start time, every
namespace and root-namespace link it may create, and its helper processes (link shapers). The
file is written *before* anything is created, so whatever exists can be found again. A run whose
owner is gone (dead, a zombie, or a recycled pid with another start time) is stale.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .sh import delete_namespace, kill_pid, list_namespaces, list_root_links, process_start_time, sh

STATE_DIR = Path("/run/netlab")
#: Every netlab namespace is ``nl<4 hex>-<role>``; every root-namespace link ``nl<4 hex>t<...>``.
NAME_RE = re.compile(r"^nl([0-9a-f]{4})[-t]")


@dataclass
class RunState:
    """What one run owns; serialized as its state file."""

    run_id: str
    pid: int
    start_time: int | None
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    helpers: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, start time)

    @property
    def path_name(self) -> str:
        return f"{self.run_id}.json"

    def owner_alive(self) -> bool:
        return self.start_time is not None and process_start_time(self.pid) == self.start_time

    def save(self, state_dir: Path) -> None:
        """Write atomically (temp file, rename): a reader never sees half a file."""
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / f".{self.path_name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, state_dir / self.path_name)

    @classmethod
    def load(cls, path: Path) -> RunState:
        data = json.loads(path.read_text())
        data["helpers"] = [tuple(h) for h in data.get("helpers", [])]
        return cls(**data)


def claim_run(pid: int, state_dir: Path = STATE_DIR) -> RunState:
    """A fresh run id, claimed by creating its state file exclusively (complete on first sight).

    The id is 4 hex digits that no state file, namespace or root link uses; ``os.link`` of a
    fully written temp file makes the claim atomic against a concurrent run picking the same id.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    taken_names = list_namespaces() + list_root_links()
    for _ in range(100):
        state = RunState(run_id=secrets.token_hex(2), pid=pid, start_time=process_start_time(pid))
        if any(n.startswith(f"nl{state.run_id}") for n in taken_names):
            continue
        tmp = state_dir / f".{state.path_name}.{os.getpid()}.claim"
        tmp.write_text(json.dumps(asdict(state), indent=1))
        try:
            os.link(tmp, state_dir / state.path_name)
        except FileExistsError:
            continue
        finally:
            tmp.unlink()
        return state
    raise RuntimeError("netlab: no free run id after 100 tries; run `python -m netlab cleanup`")


def remove_run(state: RunState, state_dir: Path = STATE_DIR) -> None:
    """Delete everything ``state`` names: helpers, namespaces (with their processes), links, file."""
    helpers = [(pid, start) for pid, start in state.helpers if start is not None and process_start_time(pid) == start]
    for pid, _ in helpers:
        kill_pid(pid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0  # SIGKILL is asynchronous: wait until they are gone
    while any(process_start_time(pid) == start for pid, start in helpers) and time.monotonic() < deadline:
        time.sleep(0.01)
    existing = set(list_namespaces())
    for ns in state.namespaces:
        if ns in existing:
            delete_namespace(ns)
    root_links = set(list_root_links())
    for link in state.links:
        if link in root_links:
            sh(["ip", "link", "del", link], check=False)
    (state_dir / state.path_name).unlink(missing_ok=True)


def cleanup_stale(state_dir: Path = STATE_DIR) -> list[str]:
    """Remove every run whose owner is dead, and netlab-named leftovers no live run claims.

    Returns the run ids removed. Namespaces are listed *before* state files: a starting run
    writes its file before creating anything, so a namespace seen here without a live file
    really is an orphan.
    """
    namespaces = list_namespaces()
    root_links = list_root_links()
    live: set[str] = set()
    removed: list[str] = []
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            state = RunState.load(path)
        except (OSError, ValueError, TypeError, KeyError):
            state = RunState(run_id=path.stem, pid=0, start_time=None)
        if state.owner_alive():
            live.add(state.run_id)
            continue
        remove_run(state, state_dir)
        removed.append(state.run_id)
    for name in namespaces + root_links:
        match = NAME_RE.match(name)
        if match and match.group(1) not in live:
            if name in namespaces:
                delete_namespace(name)
            else:
                sh(["ip", "link", "del", name], check=False)
            if match.group(1) not in removed:
                removed.append(match.group(1))
    return removed


def list_runs(state_dir: Path = STATE_DIR) -> list[tuple[RunState, bool]]:
    """Every run with a state file, and whether its owner is alive."""
    runs = []
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            state = RunState.load(path)
        except (OSError, ValueError, TypeError, KeyError):
            continue
        runs.append((state, state.owner_alive()))
    return runs
