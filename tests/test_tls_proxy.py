"""The documented public deployment: nginx terminates TLS in front of ``swarm serve`` (docs/NETWORK.md).

Debian's nginx with the config docs/NETWORK.md gives (TLS, WebSocket upgrade, large uploads),
a self-signed certificate standing in for a real one; the server runs plain HTTP on loopback
with ``--public-url`` set to the proxy's address. Through the proxy: health answers, a publish
returns a join link on the public URL, and two signaling clients join over ``wss://`` and link.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import free_port, start_server
from protocols.manifest import envelope_json
from signaling.app import self_signed_certificate

from tiny_swarm import publish_form, tiny_publication

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs" / "NETWORK.md"


def nginx_config(text: str, *, listen: int, upstream: int, cert: Path, key: Path, workdir: Path) -> str:
    """The nginx block of docs/NETWORK.md, with this test's ports, certificate and scratch paths."""
    start = text.index("```nginx\n") + len("```nginx\n")
    block = text[start : text.index("```", start)]
    block = (block.replace("swarm.example.org", "127.0.0.1").replace("listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;")
             .replace("/etc/letsencrypt/live/127.0.0.1/fullchain.pem", str(cert))
             .replace("/etc/letsencrypt/live/127.0.0.1/privkey.pem", str(key))
             .replace("127.0.0.1:8765", f"127.0.0.1:{upstream}"))  # fmt: skip
    scratch = "".join(f"  {name}_temp_path {workdir / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\nworker_processes 1;\npid {workdir / 'nginx.pid'};\nerror_log {workdir / 'error.log'} info;\n"
            f"events {{}}\nhttp {{\n  access_log off;\n{scratch}{block}}}\n")  # fmt: skip


@pytest.mark.timeout(120)
async def test_the_app_works_behind_an_nginx_that_terminates_tls(tmp_path: Path) -> None:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(exe).exists():
        raise RuntimeError("nginx is missing: run ./scripts/setup.sh --browser (it installs nginx for this test)")
    cert, key = self_signed_certificate(tmp_path / "tls", ["127.0.0.1"])
    listen = free_port()
    public = f"https://127.0.0.1:{listen}"
    runner, upstream = await start_server(tmp_path / "data", public_url=public)
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(DOCS.read_text(), listen=listen, upstream=int(upstream.rsplit(":", 1)[1]), cert=cert,
                                 key=key, workdir=tmp_path))  # fmt: skip
    proc = subprocess.Popen([exe, "-c", str(conf), "-p", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with http.get(f"{public}/health", ssl=ctx) as resp:
                        assert resp.status == 200 and (await resp.json())["status"] == "ok"
                        break
                except aiohttp.ClientConnectorError:
                    assert proc.poll() is None, (tmp_path / "error.log").read_text()
                    assert time.monotonic() < deadline, "nginx did not come up"
                    await asyncio.sleep(0.2)
            pub = tiny_publication(Ed25519PrivateKey.generate())
            async with http.post(f"{public}/api/publish", data=publish_form(envelope_json(pub.signed), pub.parts()),
                                 ssl=ctx) as resp:  # fmt: skip
                reply = await resp.json()
                assert resp.status == 201, reply
        assert reply["join_url"] == f"{public}/s/{pub.swarm_id}"  # the link people share names the proxy
        # two peers join over wss:// through the proxy and link (their WebRTC goes peer to peer)
        ws = public.replace("https", "wss", 1) + "/ws"
        # (a subprocess, so SSL_CERT_FILE is read before aiohttp builds its SSL context; async, so
        # this event loop, which runs the server, keeps serving)
        probe = await asyncio.create_subprocess_exec(
            sys.executable, str(TESTS / "mesh_probe.py"), ws, pub.swarm_id, "127.0.0.1",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"SSL_CERT_FILE": str(cert), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(probe.communicate(), 60)
        assert probe.returncode == 0, stderr.decode()[-3000:]
        result = json.loads(stdout.decode().strip().splitlines()[-1])
        assert result["joined"] and all(len(side) == 1 for side in result["links"]), result
    finally:
        proc.terminate()
        proc.wait(10)
        await runner.cleanup()
