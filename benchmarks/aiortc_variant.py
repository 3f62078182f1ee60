"""The other aiortc: stock 1.16.0 beside the patched one (patches/), for side-by-side runs.

``scripts/setup.sh`` applies ``patches/aiortc-sctp-burst-after-idle.patch`` to the aiortc in
``.venv``. Benchmarks that compare it with stock aiortc copy the installed package into a
temporary directory, reverse the patch there, and run their child processes with that
directory first on ``PYTHONPATH``; nothing installed is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import aiortc

ROOT = Path(__file__).resolve().parent.parent
SCTP_PATCH = ROOT / "patches" / "aiortc-sctp-burst-after-idle.patch"
SITE = Path(aiortc.__file__).resolve().parent.parent


def _patch(args: list[str], where: Path) -> bool:
    with SCTP_PATCH.open("rb") as diff:
        return subprocess.run(["patch", "-p1", "-s", "-f", *args, "-d", str(where)], stdin=diff, capture_output=True).returncode == 0


def installed_is_patched() -> bool:
    """True if the aiortc this interpreter imports carries the SCTP patch."""
    return _patch(["-R", "--dry-run"], SITE)


def stock_overlay(into: Path) -> Path:
    """A directory holding stock aiortc (the installed one with the patch reversed), for PYTHONPATH.

    Raises RuntimeError if the installed aiortc is not the patched 1.16.0 (run scripts/setup.sh).
    """
    if not installed_is_patched():
        raise RuntimeError("the installed aiortc does not carry patches/aiortc-sctp-burst-after-idle.patch: run scripts/setup.sh")
    shutil.copytree(SITE / "aiortc", into / "aiortc", ignore=shutil.ignore_patterns("__pycache__"))
    if not _patch(["-R"], into):
        raise RuntimeError(f"could not reverse {SCTP_PATCH.name} in {into}")
    return into


def env_with(overlay: Path | None) -> dict[str, str]:
    """This process's environment, with ``overlay`` (if any) first on PYTHONPATH."""
    env = dict(os.environ)
    if overlay is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(overlay), *filter(None, [env.get("PYTHONPATH")])])
    return env
