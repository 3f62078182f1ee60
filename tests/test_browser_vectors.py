"""The browser's protocol modules (browser_peer/src/protocol/*.js) against the Python reference.

The page browser_peer/tests/vectors.html runs every vector of protocols/vectors/*.json through
the JS modules; the other tests pass signatures, frames and codec payloads between Chromium
and Python, and compare reject reasons on mutated frames, so the two peers agree byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from browser import chromium
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import ConsoleMessage, Error, Page

from protocols.codecs import FLOAT16_OVERFLOW, CodecId, codec_for
from protocols.crypto import private_key_seed, public_key_bytes, sign, verify
from protocols.errors import ProtocolError
from protocols.frame import FIXED_HEADER_SIZE, Frame, FrameKind, build_frame, decode_frame, parse_header
from protocols.make_vectors import VECTORS_DIR
from peer.verifier import FrameRejected, FrameVerifier
from rogue import hostile_frame

VECTORS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(VECTORS_DIR.glob("*.json"))}
SWARM, MODEL = bytes.fromhex("5eed" * 8), bytes(range(32))
SHAPES = [(3, 2), (4,), ()]


@pytest.fixture
async def page(server: str) -> AsyncIterator[Page]:
    """The vectors page, loaded; fails the test on any console error or uncaught page error."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console: {msg.text} ({msg.location.get('url')})")

    async with chromium() as browser:
        page = await browser.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        await page.goto(f"{server}/peer/tests/vectors.html")
        try:
            await page.wait_for_function("window.vectorsReady === true", timeout=10_000)
        except Error:
            pytest.fail(f"vectors.html did not load its modules: {errors}")
        yield page
        await page.close()
    assert not errors, errors


def _python_reason(data: bytes) -> str:
    try:
        with np.errstate(all="ignore"):
            decode_frame(data).tensors()
    except ProtocolError as exc:
        return exc.reason
    return "ok"


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(np.random.default_rng(seed).bytes(32))


def _frame(key: Ed25519PrivateKey, kind: FrameKind, codec: int, tensors: list[np.ndarray], seed: int) -> Frame:
    rng = np.random.default_rng(seed)
    return build_frame(
        key, kind=kind, swarm_id=SWARM, model_id=MODEL, receiver=rng.bytes(32),
        session=int(rng.integers(2**63)) * 2 + 1, seq=2**64 - 1 - seed, exchange_id=2**53 + seed,
        sample_weight=float(rng.uniform(0, 1e9)), step=2**60 + seed, tensors=tensors, codec=codec,
    )  # fmt: skip


NO_TENSORS = (FrameKind.EXCHANGE_DECLINE, FrameKind.PULL_REQUEST, FrameKind.EXCHANGE_PROPOSE, FrameKind.EXCHANGE_ACCEPT)


def _tensors(rng: np.random.Generator, kind: FrameKind) -> list[np.ndarray]:
    if kind in NO_TENSORS:
        return []
    return [(rng.standard_normal(s) * 10).astype(np.float32) for s in SHAPES]


def _spec(frame: Frame, seed: bytes | None, tensors: list[np.ndarray]) -> dict[str, Any]:
    h = frame.header
    return {
        "seed": seed.hex() if seed else None, "kind": int(h.kind), "codec": h.codec,
        "swarm_id": h.swarm_id.hex(), "model_id": h.model_id.hex(), "receiver": h.receiver.hex(),
        "session": str(h.session), "seq": str(h.seq), "exchange_id": str(h.exchange_id),
        "sample_weight": h.sample_weight, "step": str(h.step),
        "tensors": [{"shape": list(t.shape), "hex": t.astype("<f4").tobytes().hex()} for t in tensors],
    }  # fmt: skip


# ---- the committed vectors -----------------------------------------------------------------


async def test_every_vector_passes_in_the_browser(page: Page) -> None:
    results = await page.evaluate("v => runVectors(v)", VECTORS)
    failed = [f"{r['name']}: {r['detail']}" for r in results if not r["ok"]]
    assert not failed, "JS disagrees with the vectors:\n" + "\n".join(failed)
    names = {r["name"] for r in results}
    # every vector of every file was checked (a runner that skips a group fails here)
    expected = (
        [f"keys/{k['name']}/public_key" for k in VECTORS["keys"]["keys"]]
        + [f"keys/signature{i}/{s['key']}/sign" for i, s in enumerate(VECTORS["keys"]["signatures"])]
        + [f"codecs/{c['codec_name']}/{c['name']}/encode" for c in VECTORS["codecs"]["cases"]]
        + [f"codecs/{c['codec_name']}/{c['name']}/decode" for c in VECTORS["codecs"]["cases"]]
        + [f"frames/{v['name']}/{part}" for v in VECTORS["frames"]["frames"] for part in ("rebuild", "fields", "decoded")]
        + [f"chunks/{c['name']}/{part}" for c in VECTORS["chunks"]["cases"] for part in ("split", "reassemble")]
        + [f"join/{c['key']}/signature" for c in VECTORS["join"]["cases"]]
        + [f"link/fingerprints/{c['name']}" for c in VECTORS["link"]["fingerprint_cases"]]
        + ["link/offer/message", "link/offer/sign", "link/offer/mitm_refused", "link/answer/message",
           "link/answer/sign", "link/answer/other_offer_refused", "link/offer_json", "link/answer_json"]
        + [f"receipt/{c['name']}/{part}" for c in VECTORS["receipt"]["cases"] for part in ("message", "sign", "report_json")]
        + ["receipt/context", "receipt/book/due", "receipt/book/nothing_new", "receipt/book/resend_all"]
        + ["manifest/signed_message", "manifest/sign", "manifest/verify", "manifest/publisher_fingerprint",
           "manifest/pin_from_link", "manifest/bad_pin_refused", "manifest/contract", "identity/indexeddb/persists"]
        + [f"contract/{c['contract']}/{c['name']}" for c in VECTORS["contract"]["cases"]]
        + [f"dataset/{s['name']}/{part}" for s in VECTORS["dataset"]["shards"] for part in ("x", "y", "shape", "targets")]
    )
    assert not [n for n in expected if n not in names], "vectors the page did not check"
    assert len(results) > 300


# ---- signatures across languages -----------------------------------------------------------


async def test_a_browser_signature_verifies_in_python(page: Page) -> None:
    message = np.random.default_rng(1).bytes(300)
    got = await page.evaluate("m => crossSign(m)", message.hex())
    assert got["extractable"] is False
    verify(bytes.fromhex(got["publicKey"]), bytes.fromhex(got["signature"]), message)
    with pytest.raises(ProtocolError):
        verify(bytes.fromhex(got["publicKey"]), bytes.fromhex(got["signature"]), message + b"\x00")


async def test_a_python_signature_verifies_in_the_browser(page: Page) -> None:
    key = _key(2)
    message = np.random.default_rng(2).bytes(77)
    pub, sig = public_key_bytes(key).hex(), sign(key, message)
    cross = "([p, s, m]) => crossVerify(p, s, m)"
    assert await page.evaluate(cross, [pub, sig.hex(), message.hex()]) is True
    bad_sig = bytes([sig[0] ^ 0x01]) + sig[1:]
    assert await page.evaluate(cross, [pub, bad_sig.hex(), message.hex()]) is False
    bad_msg = message[:-1] + bytes([message[-1] ^ 0x80])
    assert await page.evaluate(cross, [pub, sig.hex(), bad_msg.hex()]) is False
    assert await page.evaluate(cross, [pub[:-2], sig.hex(), message.hex()]) is False


# ---- frames across languages ----------------------------------------------------------------


@pytest.mark.parametrize("codec", list(CodecId), ids=lambda c: c.name)
async def test_python_frames_decode_in_the_browser(page: Page, codec: CodecId) -> None:
    rng = np.random.default_rng(int(codec))
    for kind in FrameKind:
        tensors = _tensors(rng, kind)
        frame = _frame(_key(int(rng.integers(1000))), kind, int(codec), tensors, int(kind))
        got = await page.evaluate("f => decodeTestFrame(f)", frame.encode().hex())
        assert got["reason"] == "ok", (kind, got)
        h, f = frame.header, got["fields"]
        assert (f["kind"], f["codec"], f["version"], f["flags"]) == (int(h.kind), h.codec, 1, 0)
        assert [f["swarm_id"], f["model_id"], f["sender"], f["receiver"]] == [
            h.swarm_id.hex(), h.model_id.hex(), h.sender.hex(), h.receiver.hex()]  # fmt: skip
        assert [f["session"], f["seq"], f["exchange_id"], f["step"]] == [
            str(h.session), str(h.seq), str(h.exchange_id), str(h.step)]  # fmt: skip
        assert f["sample_weight"] == h.sample_weight and f["payload_len"] == h.payload_len
        assert [tuple(s) for s in f["shapes"]] == list(h.shapes)
        assert got["tensors"] == [t.astype("<f4").tobytes().hex() for t in frame.tensors()]


@pytest.mark.parametrize("codec", list(CodecId), ids=lambda c: c.name)
async def test_browser_frames_decode_in_python(page: Page, codec: CodecId) -> None:
    rng = np.random.default_rng(10 + int(codec))
    for kind in FrameKind:
        tensors = _tensors(rng, kind)
        template = _frame(_key(0), kind, int(codec), tensors, int(kind))
        # a fresh browser key: Python decodes it and gets the same fields and values
        built = await page.evaluate("s => buildTestFrame(s)", _spec(template, None, tensors))
        frame = decode_frame(bytes.fromhex(built["frame"]))
        assert frame.header.sender.hex() == built["publicKey"]
        assert {**frame.header.__dict__, "sender": b"", "signature": b""} == {
            **template.header.__dict__, "sender": b"", "signature": b""}  # fmt: skip
        assert frame.payload == template.payload
        # the same seed: the browser builds Python's frame byte for byte
        seeded = await page.evaluate("s => buildTestFrame(s)", _spec(template, private_key_seed(_key(0)), tensors))
        assert seeded["frame"] == template.encode().hex()


async def test_mutated_frames_get_the_same_reason_as_python(page: Page) -> None:
    """Differential: every byte flip, truncation and hostile re-signing is refused alike."""
    key = _key(3)
    rng = np.random.default_rng(3)
    good = _frame(key, FrameKind.EXCHANGE_REQUEST, 0, _tensors(rng, FrameKind.EXCHANGE_REQUEST), 3).encode()
    header_len = parse_header(good)[1]
    cases = [good]
    for index in range(header_len + 8):
        for mask in (0x01, 0x80):
            cases.append(good[:index] + bytes([good[index] ^ mask]) + good[index + 1 :])
    cases += [good[:n] for n in range(0, len(good), 7)] + [good + b"\x00"]
    signed_len = header_len - 64
    for _ in range(300):  # a key holder signing arbitrary headers: exercises the checks after the signature
        signed = bytearray(good[:signed_len])
        for _ in range(int(rng.integers(1, 4))):
            index = int(rng.choice([4, 5, 6, 160, 161, 162, 163, 164, 165, *range(166, signed_len)]))
            signed[index] = int(rng.integers(256)) if rng.random() < 0.5 else signed[index] ^ 1
        payload = good[header_len:][: int(rng.integers(0, len(good) - header_len + 2))]
        cases.append(bytes(signed) + sign(key, bytes(signed)) + payload)
    cases.append(_signed_nan_scale(key))
    want = [_python_reason(c) for c in cases]
    got = await page.evaluate("fs => frameReasons(fs)", [c.hex() for c in cases])
    diff = [(i, w, g) for i, (w, g) in enumerate(zip(want, got, strict=True)) if w != g]
    assert not diff, f"(case, python, browser): {diff[:20]}"
    assert len(set(want)) >= 8, set(want)  # the cases reach many different checks


async def test_the_browser_verifier_admits_and_rejects_like_python(page: Page) -> None:
    """Differential over one verifier's lifetime: check order, replay window, session eviction."""
    rng = np.random.default_rng(5)
    me, members, stranger = _key(50), [_key(51), _key(52)], _key(53)
    shapes = [(3, 2), (4,)]
    config = {"swarm_id": SWARM.hex(), "model_id": MODEL.hex(), "own_key": public_key_bytes(me).hex(),
              "known": [public_key_bytes(k).hex() for k in members], "shapes": [list(s) for s in shapes],
              "max_frame_size": 700, "max_sessions": 3}  # fmt: skip
    python = FrameVerifier(
        swarm_id=SWARM, model_id=MODEL, own_key=public_key_bytes(me), is_known=set(map(bytes.fromhex, config["known"])).__contains__,
        shapes=shapes, max_frame_size=700, max_sessions=3,
    )  # fmt: skip
    frames: list[tuple[bytes, bytes]] = []
    for _ in range(400):
        key = [*members, stranger][int(rng.integers(3)) if rng.random() < 0.2 else int(rng.integers(2))]
        link = key if rng.random() < 0.9 else members[int(rng.integers(2))]
        wrong = lambda p, good, bad: bad if rng.random() < p else good  # noqa: E731
        kind = FrameKind(int(rng.integers(1, len(FrameKind) + 1)))
        tensors = [] if kind in NO_TENSORS else [
            rng.standard_normal(s).astype(np.float32) for s in wrong(0.1, shapes, [(2, 3), (4,)])]  # fmt: skip
        nan = bool(tensors) and rng.random() < 0.05
        if nan:
            tensors[0][0] = np.nan
        codec = int(rng.integers(3))
        fields: dict[str, Any] = {
            "kind": kind, "swarm_id": wrong(0.1, SWARM, b"\x09" * 16), "model_id": wrong(0.1, MODEL, b"\x09" * 32),
            "receiver": wrong(0.1, public_key_bytes(me), public_key_bytes(stranger)), "session": int(rng.integers(5)),
            "seq": int(rng.integers(30)), "exchange_id": 1, "sample_weight": wrong(0.05, 10.0, -1.0), "step": 1,
        }  # fmt: skip
        if nan:  # our encoders refuse NaN: a hostile sender signs it anyway (as float32/float16 values)
            data = hostile_frame(key, tensors, codec if codec != CodecId.INT8 else CodecId.FLOAT32, **fields)
        else:
            data = build_frame(key, tensors=tensors, codec=codec, **fields).encode()
        if rng.random() < 0.1:
            index = int(rng.integers(len(data)))
            data = data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]
        frames.append((data, public_key_bytes(link)))
    want = []
    for data, link in frames:
        try:
            with np.errstate(all="ignore"):
                _, tensors = python.admit(data, link)
            want.append(["ok", [t.astype("<f4").tobytes().hex() for t in tensors]])
        except FrameRejected as exc:
            want.append([exc.reason, []])
    got = await page.evaluate("([c, fs]) => verifierReasons(c, fs)", [config, [[d.hex(), k.hex()] for d, k in frames]])
    diff = [(i, w[0], g[0]) for i, (w, g) in enumerate(zip(want, got["reasons"], strict=True)) if w != g]
    assert not diff, f"(frame, python, browser): {diff[:20]}"
    assert got["rejected"] == dict(python.rejected) and got["accepted"] == dict(python.accepted)
    assert len(python.rejected) >= 10 and sum(python.accepted.values()) >= 40, python.rejected


def _signed_nan_scale(key: Ed25519PrivateKey) -> bytes:
    """An int8 frame whose signed payload carries a NaN scale: both must say non_finite."""
    payload = struct.pack("<f", float("nan")) + b"\x01\x02"
    frame = _frame(key, FrameKind.EXCHANGE_REQUEST, int(CodecId.INT8), [np.zeros(2, np.float32)], 4)
    signed = replace(frame.header, digest=hashlib.sha256(payload).digest()).signed_bytes()
    data = signed + sign(key, signed) + payload
    assert _python_reason(data) == "non_finite"
    return data


# ---- codecs on random values ----------------------------------------------------------------


def _hard_values(rng: np.random.Generator) -> np.ndarray:
    """float32 values that stress rounding: float16 ties and subnormals, huge and tiny values."""
    f16 = rng.integers(0, 2**16, 4000, dtype=np.uint16).view(np.float16).astype(np.float32)
    f16 = f16[np.isfinite(f16)]
    normal = f16[np.abs(f16) >= 2**-14]
    halfway = (normal.view(np.uint32) + np.uint32(1 << 12)).view(np.float32)  # ties between float16 values
    sub = np.arange(1, 1024, dtype=np.float32) * np.float32(2**-24)  # float16 subnormals, and ties between them
    random = rng.standard_normal(2000).astype(np.float32) * np.float32(10.0) ** rng.integers(-12, 6, 2000)
    edges = np.array([65504, 65519, 65520, -65520, 2**-25, 3 * 2**-26, 2**-26, 1e-30, 3e38, -0.0], np.float32)
    parts = [f16, halfway, sub, sub + np.float32(2**-25), -sub - np.float32(2**-25), random.astype(np.float32), edges]
    return np.concatenate(parts)


@pytest.mark.parametrize("codec", list(CodecId), ids=lambda c: c.name)
async def test_codecs_match_numpy_on_random_values(page: Page, codec: CodecId) -> None:
    rng = np.random.default_rng(20 + int(codec))
    values = _hard_values(rng)
    if codec == CodecId.FLOAT16:
        values = values[np.abs(values) < FLOAT16_OVERFLOW]  # beyond it both encoders refuse (below)
    chunks = [values[i : i + 97] for i in range(0, len(values), 97)]  # int8: a scale per tensor
    chunks += [np.array([], np.float32), (rng.integers(-300, 300, 255) / np.float32(2)).astype(np.float32)]
    with np.errstate(all="ignore"):
        want = codec_for(codec).encode(chunks)
    got = await page.evaluate("([c, ts]) => encodeTensors(c, ts)", [int(codec), [c.tobytes().hex() for c in chunks]])
    assert got == want.hex()
    # what a codec cannot carry, both languages refuse to encode: NaN (any payload), infinities, float16 overflow
    nans = np.array([0x7FC00000, 0x7F800001, 0x7FA00000, 0xFFC00001, 0x7FBFE000], np.uint32).view(np.float32)
    bad = [*nans, np.float32(np.inf), np.float32(-np.inf)] + ([np.float32(65520), np.float32(-3e38)] if codec == CodecId.FLOAT16 else [])
    for value in bad:
        tensors = [np.ones(3, np.float32), np.array([0.5, value, 2.0], np.float32)]
        with pytest.raises(ValueError, match="tensor 1"):
            codec_for(codec).encode(tensors)
        refused = await page.evaluate("""([c, ts]) => { try { encodeTensors(c, ts); return "encoded"; }
                                         catch (e) { return e instanceof RangeError && /tensor 1/.test(e.message) ? "refused" : String(e); } }""",
                                      [int(codec), [t.tobytes().hex() for t in tensors]])  # fmt: skip
        assert refused == "refused", (value, refused)
    shapes = [list(c.shape) for c in chunks]
    with np.errstate(all="ignore"):
        decoded = codec_for(codec).decode(want, [tuple(s) for s in shapes])
    got_decoded = await page.evaluate("([c, p, s]) => decodeTensors(c, p, s)", [int(codec), want.hex(), shapes])
    assert got_decoded == [d.astype("<f4").tobytes().hex() for d in decoded]
    if codec == CodecId.FLOAT16:  # every binary16 bit pattern widens exactly, NaN payloads included
        every = np.arange(2**16, dtype=np.uint16).view(np.float16)
        got_all = await page.evaluate("([c, p, s]) => decodeTensors(c, p, s)", [1, every.tobytes().hex(), [[2**16]]])
        assert got_all == [every.astype(np.float32).tobytes().hex()]
