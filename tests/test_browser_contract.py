"""A live tab validates what the signaling server sends it: every out-of-contract message of
protocols/vectors/contract.json is refused and counted by Python's reason, and the session goes on.

The tab joined a real swarm (its manifest, envelope and every signaling message so far passed
the browser's schema validation); the refused texts go through the mesh's own message handler,
as the WebSocket would deliver them (the real server never relays them: it validates too).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from browser import chromium
from protocols.contract import CONTRACT_VECTORS_PATH, case_text
from test_browser_signaling_resilience import MESH, eventually, open_tab, swarm  # noqa: F401 - swarm is a fixture

REFUSED = [c for c in json.loads(CONTRACT_VECTORS_PATH.read_text(encoding="utf-8"))["cases"]
           if c["contract"] == "server_to_client" and c["reason"] != "ok"]  # fmt: skip


@pytest.mark.timeout(120)
async def test_out_of_contract_server_messages_are_counted_like_python(swarm: tuple[str, str, str]) -> None:  # noqa: F811
    join_url, _, _ = swarm
    errors: list[str] = []
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await open_tab(page, join_url)
        before = await page.evaluate(f"() => ({{...{MESH}.stats.signalRejects}})")
        texts = [case_text(c) for c in REFUSED] + ["not json", '{"v": 1, "type": "welcome"}']
        await page.evaluate(f"(texts) => {{ const m = {MESH}; for (const t of texts) m._onMessage(m._ws, t); }}", texts)
        after = await page.evaluate(f"() => ({{...{MESH}.stats.signalRejects}})")
        got = Counter({k: after.get(k, 0) - before.get(k, 0) for k in after})
        assert +got == Counter(c["reason"] for c in REFUSED) + Counter(malformed=2)
        stats = await page.evaluate(f"() => ({{ sessions: {MESH}.stats.sessions, connected: {MESH}.connected }})")
        assert stats == {"sessions": 1, "connected": True}  # refused and counted, never the end of the session
        # and what the tab sends is checked against the client schema before it leaves
        refused = await page.evaluate(f"""() => {{ try {{ {MESH}._send({{ type: "report", step: -1 }}); return "sent"; }}
                                                 catch (e) {{ return e.reason; }} }}""")
        assert refused == "malformed"

        async def keeps_reporting() -> bool:
            return bool(await page.evaluate(f"() => {MESH}.connected"))

        await eventually(keeps_reporting, "the tab is still connected")
    assert not errors, errors
