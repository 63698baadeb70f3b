// RFC 6962 / RFC 9162 inclusion proofs and C2SP checkpoints, checked in the browser.
//
// Nothing here trusts the server's own verdict: the root is recomputed from the leaf hash and the
// audit path with SHA-256 through WebCrypto (node = SHA-256(0x01 || left || right)) and compared
// with the root in the signed checkpoint. The Ed25519 half of the checkpoint's hybrid signature
// is checked too when the browser's WebCrypto has Ed25519 and the log's public key is given
// (ML-DSA-65 is not in WebCrypto yet: that half is the server's and `qi audit verify-proof`'s).
// The same algorithm in words: docs/audit.md, section 4.

const enc = new TextEncoder();

export function hasWebCrypto() {
  return typeof crypto !== "undefined" && crypto.subtle !== undefined;
}

export function b64decode(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export async function leafHash(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

export async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

// RFC 9162 section 2.1.3.2. Indices are BigInt so trees past 2^31 leaves shift correctly.
export async function rootFromInclusionProof(leafIndex, treeSize, leaf, path) {
  let fn = BigInt(leafIndex);
  let sn = BigInt(treeSize) - 1n;
  if (fn > sn) throw new Error(`leaf index ${leafIndex} is not below the tree size ${treeSize}`);
  if (leaf.length !== 32) throw new Error("the leaf hash is not 32 bytes");
  let r = leaf;
  for (const p of path) {
    if (p.length !== 32) throw new Error("a proof hash is not 32 bytes");
    if (sn === 0n) throw new Error("the proof is longer than the path to the root");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the proof is shorter than the path to the root");
  return r;
}

// true iff the audit path leads from the leaf to ``root`` (RFC 9162 section 2.1.3.2).
export async function verifyInclusion(leafIndex, treeSize, leaf, path, root) {
  try {
    return equal(await rootFromInclusionProof(leafIndex, treeSize, leaf, path), root);
  } catch (e) {
    return false;
  }
}

// A C2SP signed note: body = origin, size, base64 root (each line ending in \n); then a blank
// line and signature lines "— <name> <base64(4-byte key id || signature)>".
export function parseCheckpoint(note) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint has no signature block");
  const body = note.slice(0, split + 1);
  const lines = body.split("\n").slice(0, -1);
  if (lines.length < 3) throw new Error("the checkpoint body needs origin, size and root");
  const [origin, sizeText, rootText] = lines;
  if (!/^[0-9]{1,20}$/.test(sizeText)) throw new Error("the checkpoint's tree size is not a number");
  const root = b64decode(rootText);
  if (root.length !== 32) throw new Error("the checkpoint's root is not 32 bytes");
  const signatures = [];
  for (const line of note.slice(split + 2).split("\n")) {
    if (!line) continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error("a signature line is malformed");
    const raw = b64decode(m[2]);
    signatures.push({ name: m[1], keyId: raw.slice(0, 4), signature: raw.slice(4) });
  }
  return { origin, size: BigInt(sizeText), root, body: enc.encode(body), signatures };
}

async function ed25519KeyId(name, publicKey) {
  return (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a, 0x01), publicKey))).slice(0, 4);
}

// true / false when checked; null when this browser has no Ed25519 in WebCrypto.
export async function verifyCheckpointEd25519(checkpoint, ed25519B64) {
  const publicKey = b64decode(ed25519B64);
  const id = await ed25519KeyId(checkpoint.origin, publicKey);
  const sig = checkpoint.signatures.find((s) => s.name === checkpoint.origin && equal(s.keyId, id));
  if (!sig) return false;
  let key;
  try {
    key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    return null;
  }
  return crypto.subtle.verify({ name: "Ed25519" }, key, sig.signature, checkpoint.body);
}

// The whole check of a proof ({leaf_index, tree_size, leaf_hash, hashes, checkpoint, leaf_data?});
// ``checkpoint`` is the signed note's text or an object holding it as ``text``. Only the note's
// own text is trusted: its root and size are parsed here, not taken from the server's fields.
// Returns {ok, reason, computedRoot, checkpointRoot, treeSize, origin, ed25519, leafData, steps}.
export async function checkInclusion(proof, logKey) {
  const out = { ok: false, reason: "", computedRoot: null, checkpointRoot: null, treeSize: null,
                origin: null, ed25519: null, leafData: null, steps: 0 };
  if (!hasWebCrypto()) {
    out.reason = "this page is not a secure context (HTTPS or localhost), so the browser offers no WebCrypto";
    return out;
  }
  try {
    const note = typeof proof.checkpoint === "string" ? proof.checkpoint : proof.checkpoint.text;
    const cp = parseCheckpoint(note);
    out.checkpointRoot = b64encode(cp.root);
    out.treeSize = cp.size.toString();
    out.origin = cp.origin;
    if (BigInt(proof.tree_size) !== cp.size) {
      out.reason = `the proof is for tree size ${proof.tree_size}, the checkpoint is for ${cp.size}`;
      return out;
    }
    const leaf = b64decode(proof.leaf_hash);
    if (proof.leaf_data) {
      out.leafData = equal(await leafHash(b64decode(proof.leaf_data)), leaf);
      if (!out.leafData) {
        out.reason = "the leaf data does not hash to the leaf hash";
        return out;
      }
    }
    const path = proof.hashes.map(b64decode);
    out.steps = path.length;
    const root = await rootFromInclusionProof(proof.leaf_index, proof.tree_size, leaf, path);
    out.computedRoot = b64encode(root);
    if (!equal(root, cp.root)) {
      out.reason = "the root recomputed from the leaf and the audit path differs from the checkpoint's root";
      return out;
    }
    if (logKey && logKey.ed25519) {
      out.ed25519 = await verifyCheckpointEd25519(cp, logKey.ed25519);
      if (out.ed25519 === false) {
        out.reason = "the checkpoint's Ed25519 signature does not verify with the log's key";
        return out;
      }
    }
    out.ok = true;
    out.reason = `the root recomputed from leaf ${proof.leaf_index} and ${path.length} audit-path hashes `
      + `equals the root of the signed checkpoint (tree size ${cp.size})`;
  } catch (e) {
    out.reason = e.message;
  }
  return out;
}
