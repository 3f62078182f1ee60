// A browser peer, composed like peer/node.py: fetch the swarm, join the mesh, train, gossip.
// The dashboard only reads `snapshot()`; tests read the same object through window.swarmPeer.
/* global tf */
import { ClippedPairAverage, boundedPairAverage } from "./averaging.js";
import { checkExamples, decodeShard } from "./dataset.js";
import { adopt, aggregatorPeerId, roleOf } from "./fedavg.js";
import { GossipEngine, Lock, Outcome, withTimeout } from "./gossip.js";
import { fetchBlob, fetchManifest } from "./manifest.js";
import { Mesh } from "./mesh.js";
import { bytesToHex, hexToBytes } from "./protocol/bytes.js";
import { CODEC } from "./protocol/codecs.js";
import { generateIdentity, loadOrCreateIdentity } from "./protocol/crypto.js";
import { frameSize } from "./protocol/frame.js";
import { ReceiptBook } from "./receipts.js";
import { choosePartners, exponentialPartner } from "./skew.js";
import { MeshTransport } from "./transport.js";
import { Trainer, numClassesOf, preferredBackend, useBackend } from "./trainer.js";
import { FrameVerifier } from "./verifier.js";

const TRAIN_CHUNK = 10; // steps per lock hold: a responder waits at most this long to merge
const EVAL_LIMIT = 2000;
const MAX_HISTORY = 5000;

/** Yield to the event loop without timers: hidden tabs throttle setTimeout to 1/s or less. */
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
const yieldNow = () => new Promise((resolve) => { waiting.push(resolve); channel.port2.postMessage(null); });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function equalBytes(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Bytes of this model's largest frame: a float32 frame (protocol/frame.js frameSize, as Python's max_frame_size). */
export function maxFrameSize(manifest) {
  return frameSize(manifest.model.weights.map((w) => w.shape), CODEC.FLOAT32);
}

const allFinite = (weights) => weights.every((w) => w.every(Number.isFinite));

/**
 * The last finite state of the local model (weights, gossip weight, step, optimizer state), as
 * peer/node.py LastGood: copied at every evaluation and before every exchange; a training chunk
 * that leaves the model non-finite is rolled back to it while the trainer's lock is still held,
 * so no neighbor is ever sent those weights. Call every method inside trainer.lock.run.
 */
export class LastGood {
  constructor(trainer) {
    this.trainer = trainer;
    this.rollbacks = 0;
    this.copy = null;
  }

  async save() {
    const t = this.trainer;
    const weights = t.getWeights();
    if (!allFinite(weights)) return;
    const got = await t.optimizer.getWeights(); // its variables, and a fresh scalar for the iteration count
    const optimizer = got.map(({ name, tensor }) => ({ name, tensor: tf.clone(tensor) }));
    tf.dispose(got.filter((w) => w.name === "iter").map((w) => w.tensor));
    if (this.copy) tf.dispose(this.copy.optimizer.map((w) => w.tensor));
    this.copy = { weights, gossipWeight: t.gossipWeight, step: t.step, optimizer };
  }

  /** True if the model is finite; otherwise roll back to the last good copy and return false. */
  async check() {
    const t = this.trainer;
    if (allFinite(t.getWeights())) return true;
    if (!this.copy) throw new Error("the model's weights are not finite and no finite copy exists (the published initial weights hold NaN)");
    const { weights, gossipWeight, step, optimizer } = this.copy;
    t.assign(weights.map((w) => w.slice()), gossipWeight);
    const restored = optimizer.map(({ name, tensor }) => ({ name, tensor: tf.clone(tensor) }));
    await t.optimizer.setWeights(restored); // it makes variables of copies: ours go
    tf.dispose(restored.map((w) => w.tensor));
    const lost = t.step - step;
    t.step = step;
    this.rollbacks += 1;
    console.warn(`the local model went non-finite (NaN or infinity) after training; rolled back ${lost} steps to the last finite weights`);
    return false;
  }
}

export class BrowserPeer {
  /**
   * degree: target number of neighbors in a gossip swarm (default the manifest's; Python `--degree`);
   * relayOnly: TURN relay candidates only (Python `--ice-relay-only`). The join link's ?degree= and
   * ?ice-relay-only give them (app.js).
   */
  constructor({ server, swarmId, backend = null, seed = Math.floor(Math.random() * 2 ** 31), ephemeralKey = false,
                degree = null, relayOnly = false }) {
    Object.assign(this, { server, swarmId, backendOverride: backend, seed, ephemeralKey, degree, relayOnly });
    this.role = null; // "gossip", or in a FedAvg swarm "client" (peer/node.py _role)
    this.status = "starting";
    this.error = null;
    this.running = true;
    this.history = []; // {t, step, loss, testLoss, testAcc}
    this.metrics = { framesSent: 0, framesAccepted: 0, rejected: {}, acceptedFrom: {} };
    this.exchangesDone = 0;
    this.rounds = 0; // exchange rounds started: the exponential graph's r (peer/schedule.py Exchanges)
    this.onSchedule = 0; // rounds that began with the round's exponential partner (not a fallback)
    this.partners = {}; // neighbor -> exchanges this tab started with it
    this.timeouts = new Map(); // neighbor -> exchange timeouts in a row
    this._background = null; // the exchange in flight beside training, if any
    this.startedAt = performance.now();
    this.events = [];
  }

  log(text) {
    this.events = [...this.events.slice(-49), `${new Date().toLocaleTimeString()} ${text}`];
  }

  async start() {
    try {
      await this._start();
    } catch (err) {
      this.status = "error";
      this.error = String(err && err.message ? err.message : err);
      this.log(this.error);
      throw err;
    }
  }

  async _start() {
    this.status = "loading the swarm";
    const { manifest, modelId } = await fetchManifest(this.server, this.swarmId);
    this.manifest = manifest;
    this.modelId = modelId;
    const initial = await fetchBlob(this.server, manifest.model.initial_weights);
    this.backend = await useBackend(this.backendOverride || preferredBackend(manifest.model.topology));
    this.log(`model ${modelId.slice(0, 12)}…, backend ${this.backend}`);

    this.identity = this.ephemeralKey ? await generateIdentity() : await loadOrCreateIdentity();
    const welcome = await this._join(manifest);
    this.status = "loading data";
    const ds = manifest.dataset;
    if (!ds && !this.ownData) throw new Error("this swarm publishes no dataset: choose a CSV file of your own");
    const test = ds ? decodeShard(await fetchBlob(this.server, ds.test)) : this.ownData; // no published test set: our own
    if (this.ownData) { // checked as the CSV picker checks (dataset.js checkExamples); numClasses null: regression
      const outWidth = manifest.model.weights.at(-1).shape.at(-1);
      checkExamples(this.ownData, {
        inputSize: (ds ? ds.input_shape : this.ownData.shape).reduce((a, b) => a * b, 1),
        numClasses: numClassesOf(manifest, outWidth), outWidth,
      });
    }
    const train = this.ownData || decodeShard(await fetchBlob(this.server, ds.train_shards[welcome.shard % ds.train_shards.length]));
    this.shard = welcome.shard;
    this.trainer = await Trainer.create(manifest, initial, train, test, this.seed);
    this.trainer.lock = new Lock();
    const model = {
      lock: this.trainer.lock,
      current: () => this.trainer.current(),
      assign: (w, n) => this.trainer.assign(w, n),
    };
    this.engine = this._engine(manifest, model);
    this.verifier = new FrameVerifier({
      swarmId: hexToBytes(this.swarmId), modelId: hexToBytes(modelId), ownKey: this.identity.publicKey,
      isKnown: (key) => [...this.mesh.links.values()].some((l) => equalBytes(l.remoteKey, key)),
      shapes: this.trainer.shapes, maxFrameSize: maxFrameSize(manifest),
    });
    this.transport = new MeshTransport(this.identity, {
      swarmId: hexToBytes(this.swarmId), modelId: hexToBytes(modelId), verifier: this.verifier, engine: this.engine,
      metrics: this.metrics, links: () => this.mesh.links, codec: CODEC[manifest.gossip.codec.toUpperCase()],
      shapes: this.trainer.shapes, frameBytes: maxFrameSize(manifest), exchangeTimeoutS: manifest.gossip.exchange_timeout_s,
    });
    this.engine.holdMs = (peerId) => this.transport.deadline(peerId); // how long an accepted proposal waits for its request
    this.transport.onMisbehaving = (peerId, why) => {
      this.log(`banned ${peerId.slice(0, 8)} for 5 minutes: ${why}`);
      this.mesh.ban(peerId);
    };
    const receipts = new ReceiptBook(this.identity, this.swarmId, this.peerId, () => this.metrics.acceptedFrom);
    let sessions = this.mesh.stats.sessions;
    this.mesh.reportSource = async () => { // claims, and signed receipts for the frames others sent us
      if (this.mesh.stats.sessions !== sessions) { // a new signaling session: the server may have forgotten them
        sessions = this.mesh.stats.sessions;
        receipts.resendAll();
      }
      const last = this.history.at(-1);
      return { step: this.trainer.step, test_acc: last ? last.testAcc : null, receipts: await receipts.due() };
    };
    this.mesh.acceptLinks();
    if (this.role === "gossip" && welcome.peers.length > 0) await this._pullFirst();
    this.status = "training";
    this._loop();
  }

  /**
   * The engine of our role (peer/node.py _engine): a FedAvg client adopts the aggregator's round
   * average (fedavg.js adopt), a gossip peer averages pairwise, clipped unless the swarm says none.
   */
  _engine(manifest, model) {
    if (this.role === "client") return new GossipEngine(model, adopt);
    const clip = manifest.gossip.robust === "clip" ? new ClippedPairAverage(manifest.gossip.clip_multiplier) : null;
    this.clip = clip;
    const engine = new GossipEngine(model, clip ? (...a) => clip.average(...a) : boundedPairAverage, this.peerId);
    engine.clip = clip;
    return engine;
  }

  /**
   * Our role and mesh options (peer/node.py _role, _mesh_config): a FedAvg client links with the
   * aggregator only (degree 1, onlyPeers its peer id); a gossip peer with `degree` neighbors
   * (the tab's override, else the manifest's). relayOnly applies to either.
   */
  async _meshConfig(manifest) {
    const g = manifest.gossip;
    this.role = roleOf(manifest, bytesToHex(this.identity.publicKey));
    if (this.role === "aggregator") {
      throw new Error("this tab's key is the swarm's FedAvg aggregator, and a tab cannot aggregate: run the aggregator " +
                      "as a Python peer (swarm join URL --identity KEYFILE with the aggregator's key)");
    }
    if (this.role === "client") {
      return { degree: 1, maxDegree: 1, onlyPeers: new Set([await aggregatorPeerId(manifest)]), relayOnly: this.relayOnly };
    }
    return { degree: this.degree ?? g.degree, maxDegree: g.max_degree, relayOnly: this.relayOnly, mixing: g.mixing ?? "random" };
  }

  async _join(manifest) {
    const wsUrl = this.server.replace(/^http/, "ws") + "/ws";
    const config = await this._meshConfig(manifest);
    const handlers = {
      maxFrameSize: maxFrameSize(manifest),
      onFrame: (link, data) => (this.transport ? this.transport.onFrame(link, data) : undefined),
      onChunkError: (reason) => { // counted, and a strike against the link that refused it
        this.metrics.rejected[reason] = (this.metrics.rejected[reason] || 0) + 1;
        if (this.transport) this.transport.collectAbuse();
      },
      onEvent: (kind, detail) => { if (kind === "signaling") this.log(detail.connected ? "signaling connected" : "signaling lost; reconnecting"); },
    };
    this.status = "joining";
    this.mesh = new Mesh(this.identity, wsUrl, this.swarmId, config, handlers);
    try {
      return this._joined(await this.mesh.start());
    } catch (err) {
      if (err.code !== "already_joined") throw err;
      // this browser's key is already in the swarm (another tab): join with a key of this tab's own
      this.log(`this browser's key is already joined (another tab?): ${err.message}; joining with a key of this tab's own`);
      this.mesh.close();
      this.identity = await generateIdentity();
      this.mesh = new Mesh(this.identity, wsUrl, this.swarmId, config, handlers);
      return this._joined(await this.mesh.start());
    }
  }

  /** Say what the mesh options mean for this swarm, once joined; returns the welcome. */
  _joined(welcome) {
    const turn = (welcome.ice_servers || []).some((s) => [].concat(s.urls).some((u) => /^turns?:/.test(u)));
    if (this.relayOnly) {
      this.log(turn ? "relay only: every link goes through the swarm's TURN server"
                    : "relay only, but the server offers no TURN server: no link can open");
    }
    if (this.role === "client") this.log(`FedAvg client of aggregator ${[...this.mesh.config.onlyPeers][0].slice(0, 8)}`);
    else if (this.degree !== null) this.log(`aiming for ${this.degree} neighbors (the swarm's default is ${this.manifest.gossip.degree})`);
    return welcome;
  }

  /** Start from the most trained neighbor's model, as the Python peer does (peer/node.py). */
  async _pullFirst() {
    this.status = "catching up with the swarm";
    const deadline = performance.now() + 10000;
    while (this.mesh.openLinks().length === 0 && performance.now() < deadline) await sleep(200);
    if (this.mesh.openLinks().length > 0) await sleep(1000);
    const timeout = this.manifest.gossip.exchange_timeout_s * 1000;
    const replies = await Promise.all(this.mesh.openLinks().slice(0, 3).map(async (link) => {
      try {
        return [link.peerId, await withTimeout((signal) => this.transport.pull(link.peerId, signal), timeout, "pull")];
      } catch {
        return [link.peerId, null];
      }
    }));
    const got = replies.filter(([, u]) => u);
    if (got.length === 0) {
      this.log("no neighbor to pull from: training from the published initial weights");
      return;
    }
    const [peerId, update] = got.reduce((a, b) => (b[1].step > a[1].step ? b : a));
    await this.trainer.lock.run(() => this.trainer.assign(update.weights, this.trainer.gossipWeight));
    this.pulledFrom = peerId;
    this.log(`pulled the model of ${peerId.slice(0, 8)} (step ${update.step}) before training`);
  }

  get peerId() { return this.mesh ? this.mesh.peerId : null; }

  async evaluate(limit = EVAL_LIMIT) {
    return this.trainer.lock.run(() => this.trainer.evaluate(limit));
  }

  async _record(loss) {
    const { loss: testLoss, accuracy } = await this.evaluate();
    const row = { t: (performance.now() - this.startedAt) / 1000, step: this.trainer.step, loss, testLoss, testAcc: accuracy };
    this.history.push(row);
    if (this.history.length > MAX_HISTORY) this.history.splice(0, this.history.length - MAX_HISTORY);
    return row;
  }

  /** Whether an exchange started beside training is still in flight. */
  get exchangeInFlight() { return this._background !== null; }

  async _loop() {
    const t = this.manifest.training;
    const beside = this.role === "gossip"; // a FedAvg client waits for its round's average (synchronous FedAvg)
    let sinceExchange = 0;
    let loss = NaN;
    await this._record(loss);
    this.lastGood = new LastGood(this.trainer);
    await this.trainer.lock.run(() => this.lastGood.save());
    while (!this.stopped) {
      if (!this.running) {
        await sleep(200); // paused: still answers neighbors' exchanges
        continue;
      }
      // a FedAvg client trains no further than its round until the round's average came (peer/schedule.py)
      const waiting = this.role === "client" && sinceExchange >= t.local_steps;
      if (!waiting) {
        const left = t.local_steps - sinceExchange; // none left: an exchange is in flight, train on meanwhile
        const n = left > 0 ? Math.min(TRAIN_CHUNK, left) : TRAIN_CHUNK;
        loss = await this.trainer.lock.run(async () => {
          const mean = await this.trainer.trainSteps(n);
          await this.lastGood.check(); // non-finite: rolled back before the lock lets a neighbor read it
          return mean;
        });
        sinceExchange += n;
        if (this.trainer.step % t.eval_every < n) {
          await this._record(loss);
          await this.trainer.lock.run(() => this.lastGood.save());
        }
      }
      if (sinceExchange >= t.local_steps && !this.exchangeInFlight) {
        await this.trainer.lock.run(() => this.lastGood.save()); // the weights this exchange sends
        const exchange = this._exchange();
        if (beside) { // beside training (peer/node.py): the merge lands when the reply does
          this._background = exchange;
          exchange.catch((err) => console.error("exchange failed", err)).finally(() => { this._background = null; });
          sinceExchange = 0;
        } else if (await exchange > 0 || this.role !== "client") {
          sinceExchange = 0;
        } else {
          await sleep(200); // no round's average (the aggregator is not linked, or timed out): wait, then ask again
        }
      }
      await yieldNow();
    }
  }

  /**
   * The partners of the next round among the open links, in exchange order (peer/schedule.py
   * Exchanges.round_partners): gossip.mixing and gossip.fanout through skew.js choosePartners.
   */
  roundPartners() {
    const open = this.mesh.openLinks().map((l) => l.peerId);
    if (open.length === 0) return [];
    const mixing = this.mesh.config.mixing ?? "random"; // the role's: a FedAvg client's is random
    const members = this.mesh.members();
    const chosen = choosePartners(this.peerId, open, members, this.rounds, { mixing, fanout: this.manifest.gossip.fanout ?? 1 });
    if (mixing === "exponential" && chosen[0] === exponentialPartner(this.peerId, members, this.rounds)) this.onSchedule += 1;
    this.rounds += 1;
    return chosen;
  }

  /** One round: an exchange with each of its partners in turn; each deadline comes from the frame size and that link. */
  async _exchange() {
    let merged = 0;
    for (const peer of this.roundPartners()) {
      if (!this.mesh.links.has(peer)) continue; // closed while an earlier partner of this round was exchanging
      this.partners[peer] = (this.partners[peer] || 0) + 1;
      if (await this._exchangeWith(peer) === Outcome.MERGED) merged += 1;
    }
    return merged; // how many of the round's exchanges merged (0 with no open link)
  }

  async _exchangeWith(peer) {
    const outcome = await this.engine.initiate(peer, this.transport, this.transport.deadline(peer));
    if (outcome === Outcome.MERGED) this.exchangesDone += 1;
    if (outcome === Outcome.TIMEOUT) {
      // a neighbor that stops answering is dropped, not waited for: two misses in a row (one can
      // be a busy machine), as the Python peer does
      const misses = (this.timeouts.get(peer) || 0) + 1;
      this.timeouts.set(peer, misses);
      if (misses >= 2) {
        this.timeouts.delete(peer);
        this.mesh.links.get(peer)?.close();
      }
    } else if (outcome === Outcome.MERGED || outcome === Outcome.DECLINED || outcome === Outcome.CROSSED) {
      this.timeouts.delete(peer);
    }
    if (outcome !== Outcome.MERGED) await sleep(Math.random() * 50); // desynchronize retries after a decline
    return outcome;
  }

  pause() { this.running = false; }
  resume() { this.running = true; }

  stop() {
    this.stopped = true;
    if (this.mesh) this.mesh.close();
  }

  /** Everything the dashboard shows, as plain data. */
  snapshot() {
    const links = this.mesh ? [...this.mesh.links.values()] : [];
    const last = this.history.at(-1) || null;
    return {
      status: this.status, error: this.error, running: this.running, peerId: this.peerId, role: this.role,
      relayOnly: this.relayOnly, gossipWeight: this.trainer ? this.trainer.gossipWeight : null,
      backend: this.backend || null, stepMs: this.trainer ? this.trainer.stepMs : null,
      step: this.trainer ? this.trainer.step : 0, shard: this.shard ?? null,
      signaling: this.mesh ? this.mesh.connected : false,
      known: this.mesh ? [...this.mesh.known.values()].map((p) => ({ peerId: p.peer_id, client: p.client })) : [],
      neighbors: links.map((l) => ({ peerId: l.peerId, client: l.info.client, state: l.state, ice: l.iceInfo || null })),
      links: this.mesh ? this.mesh.linkReport() : [],
      signalRejects: this.mesh ? { ...this.mesh.stats.signalRejects } : {},
      signalingErrors: this.mesh ? this.mesh.stats.signalingErrors.slice(-20) : [],
      rollbacks: this.lastGood ? this.lastGood.rollbacks : 0,
      sessions: this.mesh ? this.mesh.stats.sessions : 0,
      testAcc: last ? last.testAcc : null, loss: last ? last.loss : null,
      history: this.history.slice(),
      exchanges: this.engine ? { ...this.engine.outcomes, served: this.engine.served } : {},
      exchangesDone: this.exchangesDone + (this.engine ? this.engine.served : 0),
      mixing: this.mesh ? this.mesh.config.mixing ?? "random" : null, fanout: this.manifest ? this.manifest.gossip.fanout ?? 1 : null,
      exchangeRounds: this.rounds, onSchedule: this.onSchedule, exchangePartners: { ...this.partners },
      exponentialPartners: this.mesh ? this.mesh.exponentialPartners() : [],
      bytesSent: links.reduce((s, l) => s + l.bytesSent, 0) + (this.mesh ? this.mesh.closedBytes.sent : 0),
      bytesReceived: links.reduce((s, l) => s + l.bytesReceived, 0) + (this.mesh ? this.mesh.closedBytes.received : 0),
      rejected: { ...this.metrics.rejected },
      acceptedFrom: { ...this.metrics.acceptedFrom },
      clipped: this.clip ? this.clip.clipped : 0, bans: this.metrics.bans || 0, pulledFrom: this.pulledFrom || null,
      events: this.events.slice(),
    };
  }
}

