"""`swarm publish` gossip flags reach the manifest, and a bad value names its flag."""

from __future__ import annotations

import pytest

from apps.cli import _configs, build_parser


def _args(*flags: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["publish", *flags, "http://127.0.0.1:1"])


def test_exchange_timeout_is_a_publish_option() -> None:
    _, gossip = _configs(_args("--exchange-timeout", "60"))
    assert gossip.exchange_timeout_s == 60.0
    _, default = _configs(_args())
    assert default.exchange_timeout_s == 10.0


def test_a_bad_exchange_timeout_names_its_flag() -> None:
    with pytest.raises(ValueError, match="^--exchange-timeout: "):
        _configs(_args("--exchange-timeout", "0"))
