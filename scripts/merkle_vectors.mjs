// Reference Merkle vectors from JavaScript, to compare with tokenbridge.domain.merkle{,_sum}.
//
// Usage: node scripts/merkle_vectors.mjs < cases.json > results.json
//
// Input:  {"standard": [{"types": [...], "values": [[...], ...], "multi": [valueIndex, ...]}],
//          "sum": [{"balances": [["0x<accountKey>", "<balance>"], ...]}]}
// Output: {"standard": [{"root", "proofs": [[hex...] per value], "multiproof": {...}, "dump"}],
//          "sum": [{"root", "total", "proofs": [{"index", "siblingHashes", "siblingSums"}]}]}
//
// Standard trees come from @openzeppelin/merkle-tree itself (StandardMerkleTree.of). The sum
// tree has no OpenZeppelin implementation; it is rebuilt here independently of the Python
// code from docs/design/vault-interface.md with @metamask/abi-utils and keccak256 (the same
// encoder and hash the OpenZeppelin library uses), so the two implementations check each other.
// Integers travel as decimal strings (they exceed 2**53); bytes as 0x-hex strings.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const { StandardMerkleTree } = require('@openzeppelin/merkle-tree');
const { keccak256 } = require('@openzeppelin/merkle-tree/dist/hashes');
const { encode } = require('@metamask/abi-utils');

const isInt = (type) => /^u?int\d*$/.test(type);
const parseValue = (types, value) => value.map((v, i) => (isInt(types[i]) ? BigInt(v) : v));
const jsonable = (x) => (typeof x === 'bigint' ? x.toString() : x);

function standardCase({ types, values, multi }) {
  const parsed = values.map((v) => parseValue(types, v));
  const tree = StandardMerkleTree.of(parsed, types);
  const proofs = parsed.map((_, i) => tree.getProof(i));
  const out = { root: tree.root, proofs };
  if (multi) {
    const mp = tree.getMultiProof(multi);
    out.multiproof = { leaves: mp.leaves.map((l) => l.map(jsonable)), proof: mp.proof, proofFlags: mp.proofFlags };
  }
  const dump = tree.dump();
  out.dump = { ...dump, values: dump.values.map((v) => ({ value: v.value.map(jsonable), treeIndex: v.treeIndex })) };
  return out;
}

const ZERO = '0x' + '00'.repeat(32);

function sumLeaf(key, balance) {
  if (balance < 0n || balance >= 2n ** 64n) throw new Error(`balance out of range: ${balance}`);
  return { hash: keccak256(keccak256(encode(['bytes32', 'uint256'], [key, balance]))), sum: balance };
}

function sumParent(l, r) {
  return {
    hash: keccak256(encode(['bytes32', 'uint256', 'bytes32', 'uint256'], [l.hash, l.sum, r.hash, r.sum])),
    sum: l.sum + r.sum,
  };
}

function sumCase({ balances }) {
  const leaves = balances
    .map(([key, bal]) => [key.toLowerCase(), BigInt(bal)])
    .sort((a, b) => (BigInt(a[0]) < BigInt(b[0]) ? -1 : BigInt(a[0]) > BigInt(b[0]) ? 1 : 0))
    .map(([key, bal]) => sumLeaf(key, bal));
  if (leaves.length === 0) return { root: ZERO, total: '0', proofs: [] };
  let width = 1;
  while (width < leaves.length) width *= 2;
  const levels = [leaves.concat(Array(width - leaves.length).fill({ hash: ZERO, sum: 0n }))];
  while (levels.at(-1).length > 1) {
    const below = levels.at(-1);
    const level = [];
    for (let i = 0; i < below.length; i += 2) level.push(sumParent(below[i], below[i + 1]));
    levels.push(level);
  }
  const proofs = leaves.map((_, index) => {
    const siblingHashes = [];
    const siblingSums = [];
    let pos = index;
    for (const level of levels.slice(0, -1)) {
      siblingHashes.push(level[pos ^ 1].hash);
      siblingSums.push(level[pos ^ 1].sum.toString());
      pos >>= 1;
    }
    return { index, siblingHashes, siblingSums };
  });
  const top = levels.at(-1)[0];
  return { root: top.hash, total: top.sum.toString(), proofs };
}

const input = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'));
const result = {
  standard: (input.standard ?? []).map(standardCase),
  sum: (input.sum ?? []).map(sumCase),
};
process.stdout.write(JSON.stringify(result));
