// No-code publisher: design an MLP, reuse a dataset hosted on this server, set the training
// knobs, sign the manifest with this browser's key and POST it to /api/publish.
//
// The manifest mirrors protocols/manifest.py (the server rejects unknown fields). The model
// is built with the global `tf`; tf.io.withSaveHandler hands back exactly the TF.js layers
// artifacts (modelTopology, weightSpecs, weightData) that the Python peers deserialize.
// The dataset is not uploaded: its shard blobs are already on the server (GET /api/datasets
// lists the datasets of published swarms, e.g. the built-in MNIST of `swarm publish`).
import { bytesToHex, sha256, utf8 } from "./protocol/bytes.js";
import { loadOrCreateIdentity, manifestMessage, sign } from "./protocol/crypto.js";
import { parseManifest } from "./protocol/manifest.js";

const ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu", "selu", "softplus", "linear"];
const $ = (id) => document.getElementById(id);
let datasets = [];

function layerRow(units = 128, activation = "relu") {
  const row = document.createElement("div");
  row.className = "layer-row";
  row.innerHTML = `<label>Units <input class="units" type="number" min="1" max="65536" value="${units}"></label>
    <label>Activation <select class="activation">${ACTIVATIONS.map((a) => `<option${a === activation ? " selected" : ""}>${a}</option>`).join("")}</select></label>
    <button type="button" class="remove">Remove</button>`;
  row.querySelector(".remove").addEventListener("click", () => { row.remove(); showParams(); });
  row.querySelectorAll("input, select").forEach((el) => el.addEventListener("input", showParams));
  $("layers").appendChild(row);
  showParams();
}

/** @returns {{units: number, activation: string}[]} */
function hiddenLayers() {
  return [...document.querySelectorAll(".layer-row")].map((row) => ({
    units: Number(row.querySelector(".units").value),
    activation: row.querySelector(".activation").value,
  }));
}

function selectedDataset() {
  return datasets[Number($("dataset").value)]?.spec;
}

function showParams() {
  const spec = selectedDataset();
  if (!spec) return;
  let prev = spec.input_shape.reduce((a, b) => a * b, 1);
  let params = 0;
  for (const n of [...hiddenLayers().map((l) => l.units), spec.num_classes]) {
    params += prev * n + n;
    prev = n;
  }
  $("param-count").textContent = `${params.toLocaleString()} parameters.`;
}

async function loadDatasets() {
  const resp = await fetch("/api/datasets");
  datasets = (await resp.json()).datasets;
  const select = $("dataset");
  select.innerHTML = datasets
    .map((d, i) => `<option value="${i}">${d.spec.name} — ${d.spec.input_shape.join("x")} inputs, ${d.spec.num_classes} classes, ${d.spec.train_shards.length} shards (${d.spec.partition}) from "${d.swarm_name}"</option>`)
    .join("");
  const mnist = datasets.findIndex((d) => d.spec.name.startsWith("mnist"));
  if (mnist >= 0) select.value = String(mnist);
  $("dataset-info").textContent = datasets.length ? "" :
    "No dataset is hosted yet. Run `swarm publish URL` once (it publishes the built-in MNIST) and reload.";
  $("publish").disabled = datasets.length === 0;
  showParams();
}

/** TF.js layers artifacts of a fresh MLP: {topology, weights: [{name, shape, dtype}], data: Uint8Array}. */
export async function buildMlp(inputSize, hidden, classes) {
  const model = tf.sequential();
  hidden.forEach((l, i) => model.add(tf.layers.dense({ units: l.units, activation: l.activation, ...(i === 0 ? { inputShape: [inputSize] } : {}) })));
  model.add(tf.layers.dense({ units: classes, activation: "softmax", ...(hidden.length ? {} : { inputShape: [inputSize] }) }));
  let artifacts;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
  }));
  model.dispose();
  const weights = artifacts.weightSpecs.map((w) => ({ name: w.name, shape: w.shape, dtype: "float32" }));
  return { topology: artifacts.modelTopology, weights, data: new Uint8Array(artifacts.weightData) };
}

function numberOr(id, fallback) {
  const v = $(id).value.trim();
  return v === "" ? fallback : Number(v);
}

function iceServers() {
  return $("ice_servers").value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const [url, username, credential] = line.split(",");
    if (line.split(",").length === 2) throw new Error(`ICE server "${line}": use URL or URL,USER,CREDENTIAL`);
    return username === undefined ? { urls: [url] } : { urls: [url], username, credential };
  });
}

function randomHex(nBytes) {
  return bytesToHex(crypto.getRandomValues(new Uint8Array(nBytes)));
}

/** Build, sign and upload; returns the server's reply {swarm_id, model_id, join_url}. */
export async function publish() {
  const spec = selectedDataset();
  if (!spec) throw new Error("pick a dataset hosted on this server");
  const hidden = hiddenLayers();
  if (hidden.some((l) => !(l.units >= 1))) throw new Error("every hidden layer needs at least one unit");
  const inputSize = spec.input_shape.reduce((a, b) => a * b, 1);
  const model = await buildMlp(inputSize, hidden, spec.num_classes);
  const digest = bytesToHex(await sha256(model.data));
  const identity = await loadOrCreateIdentity();
  const training = {
    optimizer: $("optimizer").value, learning_rate: numberOr("learning_rate", 0.001), batch_size: numberOr("batch_size", 32),
    loss: "sparse_categorical_crossentropy", metrics: ["accuracy"], local_steps: numberOr("local_steps", 50),
    target_accuracy: numberOr("target_accuracy", 0.9), clipnorm: numberOr("clipnorm", null), l2: numberOr("l2", 0),
    warmup_steps: numberOr("warmup_steps", 0),
  };
  const manifest = {
    format: "gossip-swarm/manifest/1", swarm_id: randomHex(16), name: $("name").value.trim() || "mlp",
    publisher_key: bytesToHex(identity.publicKey),
    model: { format: "layers-model", topology: model.topology, weights: model.weights, initial_weights: { digest, size: model.data.length } },
    training, gossip: { degree: numberOr("degree", 4) }, dataset: spec, ice_servers: iceServers(),
  };
  const text = JSON.stringify(manifest);
  parseManifest(text); // refused here, with the field, rather than by the server after the upload
  const signature = bytesToHex(await sign(identity.privateKey, await manifestMessage(utf8(text))));
  const form = new FormData();
  form.append("manifest", new Blob([JSON.stringify({ manifest: text, signature })], { type: "application/json" }), "manifest.json");
  form.append("blob", new Blob([model.data], { type: "application/octet-stream" }), digest);
  const resp = await fetch("/api/publish", { method: "POST", body: form });
  const body = await resp.json().catch(() => ({ message: `HTTP ${resp.status}` }));
  if (resp.status !== 201) throw new Error(body.message || `publish refused (${resp.status})`);
  return body;
}

function showResult(reply, error) {
  const out = $("result");
  if (error) {
    out.innerHTML = `<p class="error"></p>`;
    out.querySelector("p").textContent = `Not published: ${error.message}`;
    return;
  }
  out.innerHTML = `<h2>Published</h2><dl><dt>Swarm id</dt><dd><code id="swarm-id"></code></dd>
    <dt>Join link</dt><dd><a id="join-link"></a></dd></dl><p><a href="/swarms">See all swarms</a></p>`;
  $("swarm-id").textContent = reply.swarm_id;
  $("join-link").textContent = reply.join_url;
  $("join-link").href = reply.join_url;
}

async function main() {
  $("add-layer").addEventListener("click", () => layerRow(64, "relu"));
  $("dataset").addEventListener("change", showParams);
  layerRow(128, "relu");
  $("publish-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("publish").disabled = true;
    $("result").textContent = "publishing…";
    try {
      showResult(await publish(), null);
    } catch (err) {
      showResult(null, err);
    } finally {
      $("publish").disabled = false;
    }
  });
  await loadDatasets();
  document.body.dataset.ready = "1";
}

main();
