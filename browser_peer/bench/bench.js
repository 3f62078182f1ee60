// Benchmark hooks for benchmarks/browser.py: training step time per backend, and raw
// data-channel / WebSocket transfer to and from a Python peer. The same modules as the peer.
/* global tf */
import { decodeShard } from "../src/dataset.js";
import { fetchBlob, fetchManifest } from "../src/manifest.js";
import { Mesh } from "../src/mesh.js";
import { MAX_MESSAGE_SIZE, Reassembler, splitFrame } from "../src/protocol/chunking.js";
import { generateIdentity } from "../src/protocol/crypto.js";
import { Trainer, useBackend } from "../src/trainer.js";

/** Milliseconds per optimizer step on `backend`, in chunks of 10 steps as the peer trains. */
window.benchSteps = async (swarmId, backend, steps = 200, warmup = 20) => {
  const server = location.origin;
  const { manifest } = await fetchManifest(server, swarmId);
  const single = backend === "wasm-1thread";
  const used = await useBackend(single ? "wasm" : backend, { wasmThreads: single ? 1 : 0 });
  if (used !== (single ? "wasm" : backend)) return { backend, error: `${backend} unavailable (fell back to ${used})` };
  const threads = used === "wasm" ? tf.backend().getThreadsCount?.() ?? null : null;
  const initial = await fetchBlob(server, manifest.model.initial_weights);
  const train = decodeShard(await fetchBlob(server, manifest.dataset.train_shards[0]));
  const trainer = await Trainer.create(manifest, initial, train, train, 0);
  for (let s = 0; s < warmup; s += 10) await trainer.trainSteps(10);
  const started = performance.now();
  for (let s = 0; s < steps; s += 10) await trainer.trainSteps(10);
  const ms = (performance.now() - started) / steps;
  trainer.model.dispose();
  return { backend, msPerStep: ms, threads, isolated: self.crossOriginIsolated };
};

let mesh = null;
const received = { frames: 0, bytes: 0, first: null, last: null };
window.received = received;
/** Forget what arrived so far (after a warm-up transfer). */
window.resetReceived = () => Object.assign(received, { frames: 0, bytes: 0, first: null, last: null });

/** Join the swarm with a fresh key and link to the one Python peer in it. */
window.benchLink = async (swarmId, maxFrameSize) => {
  const identity = await generateIdentity();
  const onFrame = (link, data) => {
    const now = performance.now();
    if (received.first === null) received.first = now;
    received.last = now;
    received.frames += 1;
    received.bytes += data.length;
  };
  mesh = new Mesh(identity, location.origin.replace(/^http/, "ws") + "/ws", swarmId, { degree: 1, maxDegree: 1 },
                  { maxFrameSize, onFrame });
  await mesh.start();
  mesh.acceptLinks();
  while (mesh.openLinks().length === 0) await new Promise((r) => setTimeout(r, 100));
  return mesh.peerId;
};

/** Send `count` frames of `size` bytes over the data channel, with the peer's backpressure. */
window.benchSendChannel = async (count, size) => {
  const link = mesh.openLinks()[0];
  const frame = crypto.getRandomValues(new Uint8Array(Math.min(size, 65536)));
  const data = new Uint8Array(size);
  for (let o = 0; o < size; o += frame.length) data.set(frame.subarray(0, Math.min(frame.length, size - o)), o);
  for (let i = 0; i < count; i++) await link.send(async () => data);
  return link.pc.sctp ? link.pc.sctp.maxMessageSize : null;
};

/** The same chunk messages over a WebSocket to the benchmark's sink. */
window.benchSendWebSocket = async (url, count, size) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const data = new Uint8Array(size);
  for (let i = 0; i < count; i++) {
    for (const chunk of splitFrame(data, i + 1, MAX_MESSAGE_SIZE)) {
      while (ws.bufferedAmount > 4 * 1024 * 1024) await new Promise((r) => setTimeout(r, 1));
      ws.send(chunk);
    }
  }
  await new Promise((resolve) => { ws.onmessage = resolve; }); // the sink says "done"
  ws.close();
};

/** Receive frames from a WebSocket source, reassembled as the data channel's are. */
window.benchReceiveWebSocket = async (url, count, size) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const reassembler = new Reassembler(size + 1024);
  let frames = 0, first = null, last = null;
  await new Promise((resolve) => {
    ws.onmessage = (e) => {
      const frame = reassembler.feed(new Uint8Array(e.data));
      if (frame) {
        last = performance.now();
        if (first === null) first = last;
        if (++frames === count) resolve();
      }
    };
  });
  ws.close();
  return { frames, seconds: (last - first) / 1000 };
};
window.benchReady = true;
