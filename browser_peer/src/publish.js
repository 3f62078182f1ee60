// The browser publisher: design an MLP or upload a model file, reuse a dataset hosted on this
// server or upload a CSV/.npz, set the training knobs, review what will be published, sign the
// manifest with this browser's key and POST it to /api/publish.
//
// Two ways to a draft, one way to publish:
// - an MLP on a hosted dataset is built here with the global `tf` (tf.io.withSaveHandler hands
//   back exactly the TF.js layers artifacts the Python peers deserialize); the hosted shard blobs
//   are not uploaded again (GET /api/datasets lists them);
// - anything with a file goes to POST /api/prepare, where the server runs `swarm publish`'s own
//   code (Keras 3 / tf_keras / TF.js conversion, the browser-compatibility check, CSV reading
//   and sharding) in a child process and answers an unsigned draft: the model, task, codec and
//   dataset sections and their blobs (base64). See docs/PUBLISHING.md "The publish page".
// Either way the page fills in the name, swarm id, its own key and the knobs, checks the
// manifest against the contract (parseManifest), shows it, and signs only when asked.
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
  row.querySelector(".remove").addEventListener("click", () => { row.remove(); showParams(); invalidate(); });
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
  select.innerHTML = "";
  const option = (value, text) => {
    const el = document.createElement("option"); // text, never markup: names come from other publishers' manifests
    el.value = value;
    el.textContent = text;
    select.appendChild(el);
  };
  datasets.forEach((d, i) => {
    const classes = d.spec.num_classes == null ? "regression" : `${d.spec.num_classes} classes`;
    option(String(i), `${d.spec.name} — ${d.spec.input_shape.join("x")} inputs, ${classes}, ${d.spec.train_shards.length} shards (${d.spec.partition}) from "${d.swarm_name}"`);
  });
  option("upload", "Upload a data file (CSV, TSV or .npz): sharded by this server as swarm publish does");
  option("none", "None: every peer brings its own data (model files only)");
  const mnist = datasets.findIndex((d) => d.spec.name.startsWith("mnist"));
  select.value = mnist >= 0 ? String(mnist) : datasets.length ? "0" : "upload";
  $("dataset-info").textContent = datasets.length ? "" :
    "No dataset is hosted yet: upload one, or run `swarm publish URL` once (it publishes the built-in MNIST) and reload.";
  showParams();
}

/** TF.js layers artifacts of a fresh MLP: {topology, weights: [{name, shape, dtype}], data: Uint8Array}. */
export async function buildMlp(inputSize, hidden, classes, output = "softmax") {
  const model = tf.sequential();
  hidden.forEach((l, i) => model.add(tf.layers.dense({ units: l.units, activation: l.activation, ...(i === 0 ? { inputShape: [inputSize] } : {}) })));
  model.add(tf.layers.dense({ units: classes, activation: output, ...(hidden.length ? {} : { inputShape: [inputSize] }) }));
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

const LOSSES_REGRESSION = ["mean_squared_error", "mean_absolute_error"];

/** The choices of the form that every draft shares. */
function knobs() {
  return {
    training: {
      optimizer: $("optimizer").value, learning_rate: numberOr("learning_rate", 0.001), batch_size: numberOr("batch_size", 32),
      local_steps: numberOr("local_steps", 50), target_accuracy: numberOr("target_accuracy", 0.9),
      clipnorm: numberOr("clipnorm", null), l2: numberOr("l2", 0), warmup_steps: numberOr("warmup_steps", 0),
    },
    degree: numberOr("degree", 4),
  };
}

/** The MLP's hidden layers as `swarm publish --hidden` spells them ("128:relu,64:tanh"). */
function hiddenSpec() {
  const hidden = hiddenLayers();
  if (hidden.some((l) => !(l.units >= 1))) throw new Error("every hidden layer needs at least one unit");
  return hidden.map((l) => `${l.units}:${l.activation}`).join(",");
}

/** A draft built in this tab: an MLP on a hosted dataset (classification). */
async function localDraft(spec) {
  hiddenSpec();
  const loss = $("loss").value || "sparse_categorical_crossentropy";
  if (spec.num_classes == null || LOSSES_REGRESSION.includes(loss)) {
    throw new Error("a regression task on a hosted dataset: upload the data file instead (the page needs its targets' width)");
  }
  const binary = loss === "binary_crossentropy";
  if (binary && spec.num_classes !== 2) throw new Error(`binary cross-entropy needs 2 classes; dataset ${spec.name} has ${spec.num_classes}`);
  const inputSize = spec.input_shape.reduce((a, b) => a * b, 1);
  const model = await buildMlp(inputSize, hiddenLayers(), binary ? 1 : spec.num_classes, binary ? "sigmoid" : "softmax");
  const digest = bytesToHex(await sha256(model.data));
  return {
    draft: {
      model: { format: "layers-model", topology: model.topology, weights: model.weights, initial_weights: { digest, size: model.data.length } },
      training: { loss, metrics: ["accuracy"] }, gossip: {}, dataset: spec,
    },
    blobs: new Map([[digest, model.data]]),
    notices: [],
  };
}

function base64Bytes(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A draft from the server's POST /api/prepare (the model and/or data files uploaded). */
export async function serverDraft({ modelFiles, dataFile, hosted }) {
  const options = { loss: $("loss").value || null, python_only: $("python_only").checked, seed: 0 };
  if (!modelFiles.length) options.hidden = hiddenSpec();
  if (dataFile) {
    Object.assign(options, {
      label_column: $("label_column").value.trim() || null, test_fraction: numberOr("test_fraction", 0.2),
      shards: numberOr("shards", 4), partition: $("partition").value, alpha: numberOr("alpha", 0.5),
    });
  }
  const form = new FormData();
  form.append("options", new Blob([JSON.stringify(options)], { type: "application/json" }), "options.json");
  for (const f of modelFiles) form.append("model", f, f.name);
  if (dataFile) form.append("data", dataFile, dataFile.name);
  const resp = await fetch("/api/prepare", { method: "POST", body: form });
  const body = await resp.json().catch(() => ({ message: `HTTP ${resp.status}` }));
  if (resp.status !== 200) throw new Error(body.message || `the server could not prepare this (${resp.status})`);
  const blobs = new Map();
  for (const [digest, text] of Object.entries(body.blobs || {})) {
    const bytes = base64Bytes(text);
    if (bytesToHex(await sha256(bytes)) !== digest) throw new Error(`the server's blob ${digest.slice(0, 12)}… does not match its digest`);
    blobs.set(digest, bytes);
  }
  const draft = body.draft;
  if (hosted) {
    draft.dataset = hosted;
    for (const digest of blobs.keys()) if (digest !== draft.model.initial_weights.digest) blobs.delete(digest);
  }
  return { draft, blobs, notices: body.notices || [] };
}

/** The manifest of `draft` with this form's name, knobs and ICE servers and this browser's key: {manifest, text}. */
function manifestOf(draft, identity) {
  const k = knobs();
  const manifest = {
    format: "gossip-swarm/manifest/1", swarm_id: randomHex(16), name: $("name").value.trim() || "mlp",
    publisher_key: bytesToHex(identity.publicKey), model: draft.model,
    training: { ...draft.training, ...k.training, loss: draft.training.loss, metrics: draft.training.metrics },
    gossip: { ...draft.gossip, degree: k.degree }, dataset: draft.dataset ?? null, ice_servers: iceServers(),
  };
  const text = JSON.stringify(manifest);
  return { manifest: parseManifest(text), text }; // refused here, with the field, rather than by the server after the upload
}

/** The publication of the form as it stands: {manifest, text, blobs, notices, identity}. */
export async function prepare() {
  const fromFile = $("model-source").value === "file";
  const modelFiles = fromFile ? [...$("model-files").files] : [];
  if (fromFile && !modelFiles.length) throw new Error("choose the model file (.keras or .h5), or model.json together with its .bin files");
  const choice = $("dataset").value;
  const dataFile = choice === "upload" ? $("data-file").files[0] : null;
  if (choice === "upload" && !dataFile) throw new Error("choose the data file (CSV, TSV or .npz)");
  if (choice === "none" && !fromFile) throw new Error("a no-code MLP needs a dataset (its inputs and classes come from it)");
  const hosted = choice === "upload" || choice === "none" ? null : selectedDataset();
  const draft = modelFiles.length || dataFile ? await serverDraft({ modelFiles, dataFile, hosted }) : await localDraft(hosted);
  const identity = await loadOrCreateIdentity();
  return { ...manifestOf(draft.draft, identity), blobs: draft.blobs, notices: draft.notices, identity };
}

function layerSummary(topology) {
  const inner = topology.model_config ?? topology;
  const layers = (inner?.config?.layers ?? []).filter((l) => l.class_name !== "InputLayer");
  return layers.map((l) => {
    const units = l.config?.units ?? l.config?.filters;
    const act = l.config?.activation;
    return units ? `${l.class_name}(${units}${act ? `, ${act}` : ""})` : l.class_name;
  }).join(" > ");
}

/** Rows [label, text] describing a manifest and the blobs it uploads, for the review table. */
export function describe(manifest, blobs) {
  const m = manifest.model;
  const params = m.weights.reduce((sum, w) => sum + w.shape.reduce((a, b) => a * b, 1), 0);
  const ds = manifest.dataset;
  const t = manifest.training;
  const uploadBytes = [...blobs.values()].reduce((s, b) => s + b.length, 0);
  const rows = [
    ["Name", manifest.name],
    ["Model", `${layerSummary(m.topology)} — ${params.toLocaleString()} parameters (${(m.initial_weights.size / 1e6).toFixed(2)} MB)`],
    ["Peers", m.python_only ? "Python peers only: browsers that open the link are told so" : "Python and browser peers"],
    ["Task", `loss ${t.loss}, metric ${t.metrics.join(", ")}, target ${t.target_accuracy}`],
    ["Training", `${t.optimizer}, learning rate ${t.learning_rate}, batch ${t.batch_size}, ${t.local_steps} local steps between exchanges`],
  ];
  if (ds) {
    const train = ds.train_shards.reduce((s, r) => s + r.num_samples, 0);
    const classes = ds.num_classes == null ? "regression (float targets)" : `${ds.num_classes} classes${ds.class_names ? `: ${ds.class_names.join(", ")}` : ""}`;
    rows.push(["Dataset", `${ds.name}: inputs ${ds.input_shape.join("x")}, ${classes}`]);
    rows.push(["Shards", `${ds.train_shards.length} training shards (${ds.partition}) of ${ds.train_shards.map((r) => r.num_samples).join(", ")} examples (${train} in all); test set ${ds.test.num_samples}`]);
  } else {
    rows.push(["Dataset", "none: every peer brings its own data (swarm join --data)"]);
  }
  rows.push(["Gossip", `degree ${manifest.gossip.degree}, codec ${manifest.gossip.codec ?? "float32"}`]);
  rows.push(["ICE servers", manifest.ice_servers.length ? manifest.ice_servers.map((s) => s.urls.join(" ")).join("; ") : "none listed (peers get the server's STUN, if it runs one)"]);
  rows.push(["Upload", `${(uploadBytes / 1e6).toFixed(2)} MB in ${blobs.size} blob(s); signed by this browser's key ${manifest.publisher_key.slice(0, 16)}…`]);
  return rows;
}

/** Sign and upload a prepared publication; returns the server's reply {swarm_id, model_id, join_url}. */
export async function publish(prepared) {
  const signature = bytesToHex(await sign(prepared.identity.privateKey, await manifestMessage(utf8(prepared.text))));
  const form = new FormData();
  form.append("manifest", new Blob([JSON.stringify({ manifest: prepared.text, signature })], { type: "application/json" }), "manifest.json");
  for (const [digest, bytes] of prepared.blobs) form.append("blob", new Blob([bytes], { type: "application/octet-stream" }), digest);
  const resp = await fetch("/api/publish", { method: "POST", body: form });
  const body = await resp.json().catch(() => ({ message: `HTTP ${resp.status}` }));
  if (resp.status !== 201) throw new Error(body.message || `publish refused (${resp.status})`);
  return body;
}

let prepared = null;

function showReview(p) {
  const table = $("review-table");
  table.innerHTML = "";
  for (const [label, text] of describe(p.manifest, p.blobs)) {
    const row = table.insertRow();
    const th = document.createElement("th");
    th.textContent = label;
    row.appendChild(th);
    row.insertCell().textContent = text;
  }
  const list = $("notices");
  list.innerHTML = "";
  for (const n of p.notices) {
    const li = document.createElement("li");
    li.textContent = `Note: ${n}`;
    list.appendChild(li);
  }
  $("review-section").hidden = false;
  $("review-section").dataset.ready = "1";
}

/** Any change to the form: the reviewed publication no longer is what the form says. */
function invalidate() {
  prepared = null;
  $("review-section").hidden = true;
  delete $("review-section").dataset.ready;
}

function showSources() {
  $("mlp-fields").hidden = $("model-source").value !== "mlp";
  $("file-fields").hidden = $("model-source").value !== "file";
  $("data-fields").hidden = $("dataset").value !== "upload";
  showParams();
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

async function busy(button, what, work) {
  button.disabled = true;
  $("result").textContent = what;
  try {
    await work();
  } catch (err) {
    showResult(null, err);
  } finally {
    button.disabled = false;
  }
}

async function main() {
  $("add-layer").addEventListener("click", () => { layerRow(64, "relu"); invalidate(); });
  $("model-source").addEventListener("change", showSources);
  $("dataset").addEventListener("change", showSources);
  $("publish-form").addEventListener("input", invalidate);
  $("publish-form").addEventListener("change", invalidate);
  layerRow(128, "relu");
  $("publish-form").addEventListener("submit", (event) => {
    event.preventDefault();
    invalidate();
    return busy($("review"), "preparing…", async () => {
      prepared = await prepare();
      showReview(prepared);
      $("result").textContent = "";
    });
  });
  $("publish").addEventListener("click", () => busy($("publish"), "publishing…", async () => {
    if (!prepared) throw new Error("review the publication first");
    showResult(await publish(prepared), null);
  }));
  await loadDatasets();
  showSources();
  document.body.dataset.ready = "1";
}

main();
