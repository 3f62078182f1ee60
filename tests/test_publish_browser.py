"""The publish page: a browser designs an MLP, reviews it, signs the manifest with its own key, publishes.

Headless Chromium drives ``/peer/publish.html`` against a real server that already hosts the
built-in MNIST (published once from Python); the page's swarm must be listed, its manifest
must verify, and a Python peer must be able to build and run its TF.js model.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import numpy as np

from apps.publish import upload
from protocols.manifest import parse_envelope

from browser import chromium
from publish_helpers import open_publish_page


async def test_publish_page_publishes_an_mlp_that_python_peers_can_build(server: str, default_publication: Any) -> None:
    from peer.trainer import build_model

    await upload(server, default_publication)
    async with chromium() as browser:
        page, errors = await open_publish_page(browser, server)
        await page.fill("#name", "browser-mlp")
        await page.fill(".layer-row .units", "64")
        await page.click("#add-layer")
        await page.locator(".layer-row .activation").nth(1).select_option("tanh")
        await page.locator(".layer-row .units").nth(1).fill("16")
        await page.fill("#clipnorm", "2")
        await page.fill("#warmup_steps", "10")
        await page.fill("#local_steps", "20")
        # a TURN password would be public in the manifest: the server refuses it and says what to do instead
        await page.fill("#ice_servers", "stun:stun.example.org:3478\nturn:turn.example.org:3478,user,secret")
        await page.click("#review")
        await page.wait_for_selector("#review-section[data-ready='1']", timeout=30_000)
        review = await page.text_content("#review-table") or ""
        assert "Dense(64, relu) > Dense(16, tanh) > Dense(10, softmax)" in review, review
        await page.click("#publish")
        refusal = page.locator("p.error")
        await refusal.wait_for(timeout=30_000)
        assert "TURN password" in (await refusal.text_content() or "") and "--turn-secret-file" in (await refusal.text_content() or "")
        await page.fill("#ice_servers", "stun:stun.example.org:3478")
        assert await page.is_hidden("#review-section")  # a changed form must be reviewed again
        await page.click("#review")
        await page.wait_for_selector("#review-section[data-ready='1']", timeout=30_000)
        await page.click("#publish")
        await page.wait_for_selector("#join-link", timeout=30_000)
        swarm_id = await page.text_content("#swarm-id")
        join_link = await page.get_attribute("#join-link", "href")
        assert not errors, errors

    assert join_link == f"{server}/s/{swarm_id}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/api/swarms") as resp:
            listed = {s["swarm_id"]: s for s in (await resp.json())["swarms"]}
        async with http.get(f"{server}/api/swarms/{swarm_id}") as resp:
            manifest = parse_envelope(await resp.read()).verify()
        async with http.get(f"{server}/content/{manifest.model.initial_weights.digest}") as resp:
            weights = await resp.read()
        async with http.get(f"{server}/swarms") as resp:
            index = await resp.text()
    assert listed[swarm_id]["name"] == "browser-mlp" and len(listed) == 2
    assert "Dense(64, relu) &gt; Dense(16, tanh) &gt; Dense(10, softmax)" in index
    t = manifest.training
    assert (t.clipnorm, t.warmup_steps, t.local_steps) == (2.0, 10, 20)
    assert [s.urls for s in manifest.ice_servers] == [["stun:stun.example.org:3478"]]
    assert manifest.dataset == default_publication.manifest.dataset  # the hosted MNIST shards, reused
    assert manifest.publisher_key != default_publication.manifest.publisher_key  # signed by the browser's key
    model = build_model(manifest, weights)
    assert model.count_params() == 784 * 64 + 64 + 64 * 16 + 16 + 16 * 10 + 10
    probs = model(np.zeros((3, 784), np.float32), training=False).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
