// Central averaging (FedAvg) for the tab, mirroring peer/fedavg.py's client side: in a swarm
// whose manifest says gossip.method = "central", the tab links only to the aggregator named by
// gossip.aggregator, runs the same GossipEngine with `adopt` instead of a pairwise average, and
// waits for each round's average before training on (synchronous FedAvg). The aggregator itself
// (peer/fedavg.py FedAvgAggregator) is a Python peer: a tab cannot be one.
import { hexToBytes } from "./protocol/bytes.js";
import { peerIdOf } from "./protocol/crypto.js";

/**
 * A FedAvg client takes the global model; its weight stays its sample count (peer.fedavg.adopt).
 * Pairwise averaging would instead grow the tab's gossip weight towards the round's total and
 * skew the aggregator's sample-weighted average towards the tab.
 */
export function adopt(mine, myWeight, theirs, theirWeight) {
  if (mine.length !== theirs.length || mine.some((m, i) => m.length !== theirs[i].length)) {
    throw new Error("the aggregator's model has another tensor layout than ours");
  }
  return [theirs.map((t) => Float32Array.from(t)), myWeight];
}

/** "gossip", or for FedAvg swarms "aggregator" / "client" (peer/node.py PeerNode._role); ownKeyHex is our public key. */
export function roleOf(manifest, ownKeyHex) {
  if (manifest.gossip.method === "gossip") return "gossip";
  return manifest.gossip.aggregator === ownKeyHex ? "aggregator" : "client";
}

/** The aggregator's peer id (the hash of its key, as every peer id): the only peer a client links to. */
export async function aggregatorPeerId(manifest) {
  return peerIdOf(hexToBytes(manifest.gossip.aggregator));
}
