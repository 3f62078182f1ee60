// Ed25519 keys, signatures and identifiers (mirrors protocols/crypto.py) over WebCrypto.
// Private keys are non-extractable CryptoKeys unless a caller asks otherwise.

import { concatBytes, hexToBytes, bytesToHex, sha256, utf8 } from "./bytes.js";

export const PUBLIC_KEY_SIZE = 32;
export const SIGNATURE_SIZE = 64;
export const PEER_ID_BYTES = 16;
export const JOIN_CONTEXT = utf8("gossip-swarm/join/v1\x00");
export const MANIFEST_CONTEXT = utf8("gossip-swarm/manifest/v1\x00");
export const OFFER_CONTEXT = utf8("gossip-swarm/offer/v1\x00");
export const ANSWER_CONTEXT = utf8("gossip-swarm/answer/v1\x00");
export const LINK_NONCE_SIZE = 32;

const ED25519 = { name: "Ed25519" };
// PKCS#8 PrivateKeyInfo for an Ed25519 seed (RFC 8410): this prefix followed by the 32 bytes.
const PKCS8_PREFIX = hexToBytes("302e020100300506032b657004220420");
const IDB_STORE = "keys";
const IDB_KEY = "identity";

function base64UrlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "=");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

async function exportPublic(publicKey) {
  return new Uint8Array(await crypto.subtle.exportKey("raw", publicKey));
}

/** The identity of a 32-byte seed: {privateKey: CryptoKey, publicKey: Uint8Array(32)}. */
export async function identityFromSeed(seed32, extractable = false) {
  if (!(seed32 instanceof Uint8Array) || seed32.length !== 32) {
    throw new TypeError("an Ed25519 seed is 32 bytes");
  }
  const pkcs8 = concatBytes(PKCS8_PREFIX, seed32);
  // WebCrypto derives the public key only through a JWK export, which needs an extractable key.
  const probe = await crypto.subtle.importKey("pkcs8", pkcs8, ED25519, true, ["sign"]);
  const publicKey = base64UrlToBytes((await crypto.subtle.exportKey("jwk", probe)).x);
  const privateKey = extractable ? probe : await crypto.subtle.importKey("pkcs8", pkcs8, ED25519, false, ["sign"]);
  return { privateKey, publicKey };
}

/** A fresh identity whose private key never leaves WebCrypto. */
export async function generateIdentity() {
  const pair = await crypto.subtle.generateKey(ED25519, false, ["sign", "verify"]);
  return { privateKey: pair.privateKey, publicKey: await exportPublic(pair.publicKey) };
}

function idbRequest(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDb(dbName) {
  const request = indexedDB.open(dbName, 1);
  request.onupgradeneeded = () => request.result.createObjectStore(IDB_STORE);
  return idbRequest(request);
}

/**
 * The browser's persistent identity: the CryptoKey pair stored in IndexedDB (CryptoKeys are
 * structured-cloneable, so the non-extractable private key is stored without ever being exported).
 * Created on first use.
 */
export async function loadOrCreateIdentity(dbName = "gossip-swarm") {
  const db = await openDb(dbName);
  try {
    const read = db.transaction(IDB_STORE, "readonly").objectStore(IDB_STORE);
    let pair = await idbRequest(read.get(IDB_KEY));
    if (!pair) {
      pair = await crypto.subtle.generateKey(ED25519, false, ["sign", "verify"]);
      const write = db.transaction(IDB_STORE, "readwrite");
      write.objectStore(IDB_STORE).put({ privateKey: pair.privateKey, publicKey: pair.publicKey }, IDB_KEY);
      await new Promise((resolve, reject) => {
        write.oncomplete = resolve;
        write.onerror = () => reject(write.error);
        write.onabort = () => reject(write.error);
      });
    }
    return { privateKey: pair.privateKey, publicKey: await exportPublic(pair.publicKey) };
  } finally {
    db.close();
  }
}

export async function sign(privateKey, bytes) {
  return new Uint8Array(await crypto.subtle.sign(ED25519, privateKey, bytes));
}

/** True only for a valid signature; false for any malformed key, signature or message (never throws). */
export async function verify(publicKeyBytes, signature, message) {
  try {
    if (publicKeyBytes.length !== PUBLIC_KEY_SIZE || signature.length !== SIGNATURE_SIZE) return false;
    const key = await crypto.subtle.importKey("raw", publicKeyBytes, ED25519, false, ["verify"]);
    return await crypto.subtle.verify(ED25519, key, signature, message);
  } catch {
    return false;
  }
}

/** Peer id: hex of the first 16 bytes of SHA-256(public key). */
export async function peerIdOf(publicKey) {
  if (publicKey.length !== PUBLIC_KEY_SIZE) throw new TypeError(`public key must be ${PUBLIC_KEY_SIZE} bytes`);
  return bytesToHex((await sha256(publicKey)).subarray(0, PEER_ID_BYTES));
}

/** What a joining peer signs: JOIN_CONTEXT || nonce (raw bytes) || swarm id (its ASCII hex). */
export function joinMessage(nonceBytes, swarmIdString) {
  return concatBytes(JOIN_CONTEXT, nonceBytes, utf8(swarmIdString));
}

/** What a publisher signs: MANIFEST_CONTEXT || SHA-256(manifest bytes). */
export async function manifestMessage(manifestBytes) {
  return concatBytes(MANIFEST_CONTEXT, await sha256(manifestBytes));
}

/** What a pinned join link carries (#pk=): hex of SHA-256(publisher key)[0:16], as a peer id. */
export const publisherFingerprint = peerIdOf;

function linkFields(swarmId, sender, receiver, nonce) {
  for (const [name, value] of [["swarm id", swarmId], ["sender", sender], ["receiver", receiver]]) {
    if (typeof value !== "string" || !/^[0-9a-f]{32}$/.test(value)) throw new TypeError(`${name} must be 32 lowercase hex characters`);
  }
  if (!(nonce instanceof Uint8Array) || nonce.length !== LINK_NONCE_SIZE) throw new TypeError(`a link nonce is ${LINK_NONCE_SIZE} bytes`);
  return concatBytes(utf8(swarmId + sender + receiver), nonce);
}

function fingerprintText(fingerprints) {
  if (!fingerprints.length || fingerprints.some((f) => f.includes("\n"))) {
    throw new TypeError("sign at least one canonical fingerprint (protocol/signaling.js sdpFingerprints)");
  }
  return utf8(fingerprints.join("\n"));
}

/**
 * What an offerer signs: OFFER_CONTEXT || swarm id || sender id || receiver id (ASCII hex) || nonce
 * || the offer SDP's canonical DTLS fingerprints joined by newlines (mirrors protocols/crypto.py).
 */
export function offerMessage(swarmId, sender, receiver, nonce, fingerprints) {
  return concatBytes(OFFER_CONTEXT, linkFields(swarmId, sender, receiver, nonce), fingerprintText(fingerprints));
}

/** What an answerer signs: ANSWER_CONTEXT || swarm id || sender || receiver || nonce || offer nonce || fingerprints. */
export function answerMessage(swarmId, sender, receiver, nonce, offerNonce, fingerprints) {
  if (!(offerNonce instanceof Uint8Array) || offerNonce.length !== LINK_NONCE_SIZE) {
    throw new TypeError(`an offer nonce is ${LINK_NONCE_SIZE} bytes`);
  }
  return concatBytes(ANSWER_CONTEXT, linkFields(swarmId, sender, receiver, nonce), offerNonce, fingerprintText(fingerprints));
}

export const RECEIPT_CONTEXT = utf8("gossip-swarm/receipt/v1\x00");
export const RECEIPT_SESSION_SIZE = 8;
export const MAX_RECEIPT_FRAMES = 10 ** 12;

/**
 * What a peer signs to vouch for a neighbor on the contribution board (mirrors
 * protocols/crypto.py receipt_message): RECEIPT_CONTEXT || swarm id || voucher id || peer id
 * (ASCII hex) || session (8 raw bytes, random per page load) || frames (u64 big-endian).
 */
export function receiptMessage(swarmId, voucher, peer, session, frames) {
  for (const [name, value] of [["swarm id", swarmId], ["voucher", voucher], ["peer", peer]]) {
    if (typeof value !== "string" || !/^[0-9a-f]{32}$/.test(value)) throw new TypeError(`${name} must be 32 lowercase hex characters`);
  }
  if (!(session instanceof Uint8Array) || session.length !== RECEIPT_SESSION_SIZE) {
    throw new TypeError(`a receipt session is ${RECEIPT_SESSION_SIZE} bytes`);
  }
  if (!Number.isSafeInteger(frames) || frames < 1 || frames > MAX_RECEIPT_FRAMES) {
    throw new TypeError(`a receipt vouches for 1 to ${MAX_RECEIPT_FRAMES} frames, got ${frames}`);
  }
  const count = new Uint8Array(8);
  new DataView(count.buffer).setBigUint64(0, BigInt(frames), false);
  return concatBytes(RECEIPT_CONTEXT, utf8(swarmId + voucher + peer), session, count);
}
