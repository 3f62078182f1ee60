// Partner choice against label skew (mirrors peer/skew.py; protocols/vectors/skew.json pins both).
// Two published remedies that change only whom a peer averages with, so every exchange stays a
// conserving pairwise average: the one-peer exponential graph (Ying et al., NeurIPS 2021: at its
// round r member i of n, sorted by peer id, exchanges with i + 2^(r mod ceil(log2 n))) and fanout
// (k distinct partners per round). Peer ids sort the same in both languages (lowercase hex).

/** ceil(log2 n) for n >= 2, at least 1 (an integer loop: no floating-point logarithm). */
function hopsOf(n) {
  let hops = 0;
  while (2 ** hops < n) hops += 1;
  return Math.max(1, hops);
}

const sortedMembers = (swarm) => [...new Set(swarm)].sort();

/** The exponential graph's partner of `me` at its round `round` (`swarm`: every member, `me` included). */
export function exponentialPartner(me, swarm, round) {
  const order = sortedMembers(swarm);
  const n = order.length;
  if (n < 2) throw new RangeError("an exponential graph needs at least two peers");
  const i = order.indexOf(me);
  if (i < 0) throw new RangeError(`${me} is not a member of the swarm it chooses partners in`);
  return order[(i + 2 ** (round % hopsOf(n))) % n];
}

/** Every partner of `me` in the exponential graph over `swarm`: member i + 2^k for k < ceil(log2 n), distinct, in k order. */
export function exponentialNeighbors(me, swarm) {
  const order = sortedMembers(swarm);
  const n = order.length;
  if (n < 2) return [];
  const i = order.indexOf(me);
  if (i < 0) throw new RangeError(`${me} is not a member of the swarm it chooses partners in`);
  const partners = [];
  for (let k = 0; k < hopsOf(n); k += 1) {
    const p = order[(i + 2 ** k) % n];
    if (p !== me && !partners.includes(p)) partners.push(p);
  }
  return partners;
}

/**
 * The links `me` keeps in the exponential graph (peer/skew.py exponential_links): its partners
 * i + 2^k, then the members whose partner it is, i - 2^k, distinct. Both ends offer the link: a
 * peer is announced before it accepts links, and its own offer opens the link once it is ready.
 */
export function exponentialLinks(me, swarm) {
  const order = sortedMembers(swarm);
  const n = order.length;
  if (n < 2) return [];
  const i = order.indexOf(me);
  const links = exponentialNeighbors(me, swarm);
  for (let k = 0; k < hopsOf(n); k += 1) {
    const p = order[(((i - 2 ** k) % n) + n) % n];
    if (p !== me && !links.includes(p)) links.push(p);
  }
  return links;
}

/** The exponential links of `me` to offer: not in `skip` (a Set), at most `room` of them, in exponentialLinks order. */
export function partnersToLink(me, swarm, skip, room) {
  return exponentialLinks(me, swarm).filter((p) => !skip.has(p)).slice(0, Math.max(0, room));
}

/** `k` distinct partners among `options` (all of them if fewer), in random order (`random`: [0, 1)). */
export function fanoutPartners(options, k, random = Math.random) {
  if (!(k >= 1)) throw new RangeError(`fanout must be at least 1, not ${k}`);
  const pool = [...options];
  const out = [];
  while (out.length < k && pool.length > 0) out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]);
  return out;
}

/**
 * The partners of one round, in exchange order (peer/skew.py choose_partners): "random" (one random
 * open link) or "exponential" (the round's exponential partner if it is an option, else a random
 * one), and with fanout > 1 more distinct random options after it. `options`: open links' peer
 * ids; `swarm`: every member `me` knows, `me` included.
 */
export function choosePartners(me, options, swarm, round, { mixing = "random", fanout = 1, random = Math.random } = {}) {
  if (options.length === 0) return [];
  if (mixing === "exponential") {
    const partner = exponentialPartner(me, swarm, round);
    const first = options.includes(partner) ? partner : options[Math.floor(random() * options.length)];
    return fanout === 1 ? [first] : [first, ...fanoutPartners(options.filter((o) => o !== first), fanout - 1, random)];
  }
  if (mixing !== "random") throw new RangeError(`unknown mixing ${mixing}: use random or exponential`);
  return fanout === 1 ? [options[Math.floor(random() * options.length)]] : fanoutPartners(options, fanout, random);
}
