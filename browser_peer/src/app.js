// The page: starts a BrowserPeer for the swarm in the URL (/s/<swarm id>) and renders its
// snapshot twice a second. window.swarmPeer is the peer itself (tests read its snapshot).
// The mesh's signaling counters and each link's ICE pair are read from peer.mesh itself
// (stats, links), which is also where tests read them.
/* global Chart */
import { readOwnCsv, swarmOf, swarmOfManifest } from "./datafile.js";
import { fetchManifest, pinPublisher, publisherPinFromHash } from "./manifest.js";
import { BrowserPeer } from "./peer.js";
import { numClassesOf } from "./trainer.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const swarmId = (location.pathname.match(/\/s\/([0-9a-f]{32})/) || [])[1] || params.get("swarm");

const fmtMs = (ms) => (ms < 10 ? ms.toFixed(1) : Math.round(ms).toString());

/** "srflx · 42 ms": the neighbor's selected ICE candidate pair and its RTT, once known. */
function iceText(info) {
  if (!info || !info.pair) return "";
  return info.rtt_ms === null ? ` · ${info.pair}` : ` · ${info.pair} · ${fmtMs(info.rtt_ms)} ms`;
}

const fmtBytes = (n) => (n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n > 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);

function lineChart(canvas, label, color, yMax) {
  return new Chart(canvas, {
    type: "line",
    data: { datasets: [{ label, data: [], borderColor: color, pointRadius: 0, borderWidth: 2 }] },
    options: {
      animation: false, parsing: false, responsive: true,
      scales: { x: { type: "linear", title: { display: true, text: "seconds" } }, y: { min: 0, max: yMax } },
      plugins: { legend: { display: false } },
    },
  });
}

function drawMesh(canvas, snap) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const others = snap.known;
  const linked = new Map(snap.neighbors.map((n) => [n.peerId, n.state]));
  const cx = w / 2, cy = h / 2, r = Math.min(w, h) / 2 - 24;
  const pos = others.map((p, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, others.length) - Math.PI / 2;
    return [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
  others.forEach((p, i) => {
    const state = linked.get(p.peerId);
    if (!state) return;
    ctx.strokeStyle = state === "open" ? "#2fbf71" : "#f5a524";
    ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(...pos[i]); ctx.stroke();
  });
  const node = (x, y, color, text) => {
    ctx.fillStyle = color; ctx.beginPath(); ctx.arc(x, y, 9, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = "#1d2330"; ctx.font = "10px system-ui"; ctx.textAlign = "center"; ctx.fillText(text, x, y + 21);
  };
  others.forEach((p, i) => node(...pos[i], p.client === "browser" ? "#8b5cf6" : "#3b82f6", `${p.peerId.slice(0, 6)} ${p.client === "browser" ? "web" : "py"}`));
  node(cx, cy, "#e5484d", "me");
}

function setupDrawing(peer) {
  const canvas = $("draw");
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); $("probs").innerHTML = ""; $("prediction").textContent = "Draw a digit."; };
  clear();
  let drawing = false;
  const at = (e) => { const b = canvas.getBoundingClientRect(); return [e.clientX - b.left, e.clientY - b.top]; };
  canvas.addEventListener("pointerdown", (e) => { drawing = true; ctx.beginPath(); ctx.moveTo(...at(e)); });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 16; ctx.lineCap = "round"; ctx.lineTo(...at(e)); ctx.stroke();
  });
  const finish = () => { if (drawing) { drawing = false; predict(); } };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointerleave", finish);
  $("clear").onclick = clear;

  function predict() {
    if (!peer.trainer || peer.trainer.inputSize !== 784) {
      $("prediction").textContent = "Drawing works for 28x28 digit models.";
      return;
    }
    // MNIST digits sit in a 20x20 box inside 28x28: scale the drawing the same way
    const small = document.createElement("canvas");
    small.width = small.height = 28;
    const s = small.getContext("2d");
    s.fillStyle = "#000"; s.fillRect(0, 0, 28, 28);
    s.drawImage(canvas, 4, 4, 20, 20);
    const pixels = s.getImageData(0, 0, 28, 28).data;
    const example = new Float32Array(784);
    for (let i = 0; i < 784; i++) example[i] = pixels[4 * i] / 255;
    const probs = peer.trainer.predict(example);
    const best = probs.indexOf(Math.max(...probs));
    // the publisher's names of the classes (dataset.class_names), else their indices
    const names = peer.trainer.classNames || [...probs].map((_, d) => String(d));
    const esc = (t) => t.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
    $("prediction").textContent = `Prediction: ${names[best]} (${(100 * probs[best]).toFixed(1)}%)`;
    $("probs").innerHTML = [...probs].map((p, d) =>
      `<div class="bar"><b>${esc(names[d] ?? String(d))}</b><span class="fill" style="width:${Math.round(150 * p)}px"></span>${(100 * p).toFixed(1)}%</div>`).join("");
  }
}

function render(peer, charts) {
  const snap = peer.snapshot();
  $("status").textContent = snap.error ? `error: ${snap.error}` : snap.status + (snap.status === "training" && !snap.running ? " (paused)" : "");
  $("status-dot").className = `dot ${snap.error ? "err" : snap.status === "training" && snap.signaling ? "ok" : "wait"}`;
  $("peer-id").textContent = snap.peerId || "–";
  $("signaling").textContent = snap.signaling ? "connected" : signalingTrouble(snap.signalingErrors);
  $("backend").textContent = snap.backend || "–";
  $("step-ms").textContent = snap.stepMs === null ? "–" : `${snap.stepMs.toFixed(1)} ms`;
  $("steps").textContent = snap.step;
  $("shard").textContent = snap.shard ?? "–";
  $("exchanges").textContent = snap.exchangesDone;
  $("bytes-sent").textContent = fmtBytes(snap.bytesSent);
  $("bytes-received").textContent = fmtBytes(snap.bytesReceived);
  $("accepted").textContent = Object.values(snap.acceptedFrom).reduce((a, b) => a + b, 0);
  const rejected = Object.entries(snap.rejected);
  $("rejected-total").textContent = rejected.reduce((s, [, n]) => s + n, 0);
  $("rejected").tBodies[0].innerHTML = rejected.map(([r, n]) => `<tr><td>${r}</td><td>${n}</td></tr>`).join("");
  const links = peer.mesh ? peer.mesh.links : new Map();
  $("neighbors").innerHTML = snap.neighbors.map((n) =>
    `<li>${n.peerId.slice(0, 12)} (${n.client}) ${n.state}${iceText(links.get(n.peerId)?.iceInfo)}, ` +
    `${snap.acceptedFrom[n.peerId] || 0} updates accepted</li>`).join("");
  renderSignaling(peer.mesh);
  $("log").innerHTML = snap.events.slice().reverse().map((e) => `<li>${e}</li>`).join("");
  $("toggle").textContent = snap.running ? "Pause training" : "Start training";
  drawMesh($("mesh"), snap);
  charts.acc.data.datasets[0].data = snap.history.map((r) => ({ x: r.t, y: r.testAcc }));
  charts.loss.data.datasets[0].data = snap.history.filter((r) => Number.isFinite(r.loss)).map((r) => ({ x: r.t, y: r.loss }));
  charts.acc.update();
  charts.loss.update();
}

/** Why signaling is down, when the server said: a refused join is shown, not retried in silence. */
function signalingTrouble(errors) {
  const last = errors && errors.length ? errors[errors.length - 1] : null;
  if (last === "already_joined") return "refused: this key is already joined from another tab or device (close it, or open the link with ?key=ephemeral)";
  return "disconnected (the mesh keeps training)";
}

/** Signaling sessions and the relayed messages the mesh refused, by reason. */
function renderSignaling(mesh) {
  $("sessions").textContent = mesh ? mesh.stats.sessions : 0;
  const refused = mesh ? Object.entries(mesh.stats.signalRejects) : [];
  $("signal-rejected-total").textContent = refused.reduce((s, [, n]) => s + n, 0);
  $("signal-rejected").tBodies[0].innerHTML = refused.map(([r, n]) => `<tr><td>${r}</td><td>${n}</td></tr>`).join("");
}

/** True when the swarm's manifest has no dataset (the tab waits for a CSV); a manifest that does not load is left to peer.start(). */
async function publishesNoDataset() {
  try {
    return (await fetchManifest(location.origin, swarmId)).manifest.dataset == null;
  } catch {
    return false;
  }
}

/**
 * A swarm published for Python peers only (manifest model.python_only: its model has layers
 * TensorFlow.js cannot load or train) is explained, with the command that joins it, instead of
 * failing on the model ("Unknown layer: ..."). A manifest that does not load is left to peer.start().
 */
async function showPythonOnly() {
  let manifest;
  try {
    ({ manifest } = await fetchManifest(location.origin, swarmId));
  } catch {
    return false;
  }
  if (!manifest.model.python_only) return false;
  $("python-only").hidden = false;
  $("python-only-command").textContent = `swarm join ${location.origin}${location.pathname}${location.hash}`;
  $("swarm-name").textContent = `— ${manifest.name}`;
  $("status").textContent = "Python peers only: this swarm's model cannot run in a browser";
  $("status-dot").className = "dot wait";
  return true;
}

/**
 * The neighbor options of `swarm join` as join-link query parameters (docs/NETWORK.md):
 * ?degree=N (target number of neighbors, default the swarm's) and ?ice-relay-only (TURN relay
 * candidates only; `?ice-relay-only=0` or `=false` turns it off). A bad value is refused, not guessed.
 */
export function meshOptions(query) {
  const options = { degree: null, relayOnly: false };
  if (query.has("degree")) {
    const text = query.get("degree");
    const degree = Number(text);
    if (!/^[0-9]+$/.test(text) || degree < 1 || degree > 64) {
      throw new Error(`?degree=${text} is not a number of neighbors from 1 to 64 (leave it out for the swarm's default)`);
    }
    options.degree = degree;
  }
  if (query.has("ice-relay-only")) options.relayOnly = !["0", "false"].includes(query.get("ice-relay-only"));
  return options;
}

async function main() {
  if (!swarmId) {
    $("status").textContent = "no swarm id in the link: open /s/<swarm id>";
    return;
  }
  // a pinned join link (#pk=<publisher fingerprint>; the fragment never reaches the server): only
  // a manifest signed by that publisher is accepted. Without it, the key the server presents is trusted.
  let pin;
  try {
    pin = publisherPinFromHash(location.hash);
  } catch (err) {
    $("status").textContent = `error: ${err.message}`;
    return;
  }
  pinPublisher(pin);
  const seed = params.has("seed") ? Number(params.get("seed")) : undefined;
  let options;
  try {
    options = meshOptions(params);
  } catch (err) {
    $("status").textContent = `error: ${err.message}`;
    return;
  }
  const peer = new BrowserPeer({ server: location.origin, swarmId, backend: params.get("backend"), seed,
                                 ephemeralKey: params.get("key") === "ephemeral", ...options });
  window.swarmPeer = peer;
  if (pin) peer.log(`the join link pins publisher ${pin}`);
  const charts = { acc: lineChart($("acc-chart"), "test accuracy", "#2fbf71", 1), loss: lineChart($("loss-chart"), "training loss", "#3b82f6") };
  $("backend-select").value = params.get("backend") || "";
  $("backend-select").onchange = (e) => { params.set("backend", e.target.value); if (!e.target.value) params.delete("backend"); location.search = params; };
  $("toggle").onclick = () => (peer.running ? peer.pause() : peer.resume());
  // the tab's current model in TF.js layers format; `swarm export` turns it into Keras .h5
  $("download").onclick = () => peer.trainer.lock.run(() => peer.trainer.model.save(`downloads://swarm-${swarmId.slice(0, 8)}-step${peer.trainer.step}`));
  $("evaluate").onclick = async () => {
    $("eval-result").textContent = "evaluating…";
    const r = await peer.evaluate(null);
    $("eval-result").textContent = `test accuracy ${(100 * r.accuracy).toFixed(2)}% on ${peer.trainer.test.n} examples (loss ${r.loss.toFixed(3)})`;
  };
  let ownDataPicked = null; // resolves with the first usable CSV when the swarm publishes no dataset
  const picked = new Promise((resolve) => { ownDataPicked = resolve; });
  $("csv").onchange = async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    if (!peer.trainer) { // nothing to train on yet: the file is this tab's data from the start
      try {
        const { manifest } = await fetchManifest(location.origin, swarmId);
        const data = readOwnCsv(new Uint8Array(await file.arrayBuffer()), swarmOfManifest(manifest, numClassesOf));
        for (const notice of data.notices) peer.log(`${file.name}: ${notice}`);
        peer.log(`training on ${data.n} examples from ${file.name} (they never leave this device)`);
        ownDataPicked(data);
      } catch (err) {
        peer.status = `cannot use ${file.name}: ${err.message} (choose another file)`;
        peer.log(peer.status);
      }
      return;
    }
    try {
      // read as `swarm join --data` reads a file (datafile.js): label column, class names, pixel scaling
      const data = readOwnCsv(new Uint8Array(await file.arrayBuffer()), swarmOf(peer.trainer));
      for (const notice of data.notices) peer.log(`${file.name}: ${notice}`);
      await peer.trainer.lock.run(() => peer.trainer.setTrainingData(data));
      peer.log(`training on ${data.n} examples from ${file.name} (they never leave this device)`);
    } catch (err) {
      peer.log(`cannot use ${file.name}: ${err.message}`);
    }
  };
  if (await showPythonOnly()) return;
  setupDrawing(peer);
  setInterval(() => render(peer, charts), 500);
  render(peer, charts);
  if (await publishesNoDataset()) {
    peer.status = "this swarm publishes no dataset: choose a CSV file of your own to start training";
    peer.ownData = await picked;
  }
  await peer.start();
  $("toggle").disabled = false;
  $("download").disabled = false;
  $("evaluate").disabled = false;
  const name = peer.manifest ? peer.manifest.name : "";
  $("swarm-name").textContent = name ? `— ${name}` : "";
}

main().catch((err) => console.error(err));
