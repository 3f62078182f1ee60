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


def test_one_ice_server_parser_for_publish_and_join() -> None:
    from protocols.signaling import IceServer, ice_server_from_spec

    assert ice_server_from_spec("stun:stun.example.net:3478") == IceServer(urls=["stun:stun.example.net:3478"])
    turn = ice_server_from_spec("turn:198.51.100.7:3478?transport=udp, alice, s3cret")
    assert (turn.urls, turn.username, turn.credential) == (["turn:198.51.100.7:3478?transport=udp"], "alice", "s3cret")
    for bad in ("198.51.100.7:3478", "stun:x,only-user", "turn:198.51.100.7"):
        with pytest.raises(ValueError, match="^'"):
            ice_server_from_spec(bad)
    from apps.cli import _ice_specs

    with pytest.raises(ValueError, match="^--ice-server 'http://x'"):  # the CLI names its flag
        _ice_specs(["http://x"])


def test_mixing_and_fanout_are_publish_options() -> None:
    _, gossip = _configs(_args("--mixing", "exponential", "--fanout", "2"))
    assert (gossip.mixing, gossip.fanout) == ("exponential", 2)
    _, default = _configs(_args())
    assert (default.mixing, default.fanout) == ("random", 1)
    with pytest.raises(ValueError, match="^--fanout: "):
        _configs(_args("--fanout", "0"))


def test_large_models_default_to_int8_and_an_explicit_codec_is_kept() -> None:
    from apps.publish import choose_codec
    from protocols.manifest import GossipConfig, WeightSpec

    small = [WeightSpec(name="k", shape=[784, 128]), WeightSpec(name="b", shape=[128])]
    large = [WeightSpec(name="k", shape=[784, 4096]), WeightSpec(name="k2", shape=[4096, 1536])]
    assert choose_codec(GossipConfig(), small) == (GossipConfig(), [])
    chosen, notes = choose_codec(GossipConfig(), large)
    assert chosen.codec == "int8" and "--codec float32" in notes[0]
    _, explicit = _configs(_args("--codec", "float32"))
    assert choose_codec(explicit, large) == (explicit, [])
