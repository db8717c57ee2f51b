// Gift-receipt checks of docs/design/receipts.md, in the browser. Pure functions over a small
// reader (chainId, hasCode, epoch, verifyGift) so the same code runs against any node.
// Check names are those of tokenbridge.services.verify, so the CLI and the page agree.

import { concat, encodeAbiParameters, keccak256, stringToHex } from 'viem';

export const GIFT_RECEIPT_FORMAT = 'tokenbridge-gift-receipt/v1';
export const KEY_DOMAIN = 'tokenbridge.account.v1';
const BPS_DENOMINATOR = 10000n;
const UINT256_LIMIT = 2n ** 256n;
const UINT64_LIMIT = 2n ** 64n;
const GIFT_LEAF_TYPES = ['bytes32', 'bytes32', 'bytes32', 'uint256', 'uint256', 'uint256'].map((type) => ({ type }));

/** The receipt cannot be checked at all (the CLI exits 2 for these). */
export class UnusableInput extends Error {}

const HEX32 = /^0x[0-9a-fA-F]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const DECIMAL = /^[0-9]{1,78}$/;

function field(obj, key, where) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new UnusableInput(`${where} must be a JSON object`);
  if (!(key in obj)) throw new UnusableInput(`${where}: missing field '${key}'`);
  return obj[key];
}

function uint(value, where, limit = UINT256_LIMIT) {
  let n;
  if (typeof value === 'boolean') throw new UnusableInput(`${where} must be an integer, got a boolean`);
  if (typeof value === 'number') {
    // JSON numbers above 2**53 have already lost digits: producers write them as strings.
    if (!Number.isSafeInteger(value)) throw new UnusableInput(`${where} must be an exact integer (write large amounts as decimal strings)`);
    n = BigInt(value);
  } else if (typeof value === 'string' && DECIMAL.test(value)) {
    n = BigInt(value);
  } else {
    throw new UnusableInput(`${where} must be an integer or a decimal string, got ${JSON.stringify(value)}`);
  }
  if (n < 0n || n >= limit) throw new UnusableInput(`${where} out of range: ${n}`);
  return n;
}

function bytes32(value, where) {
  if (typeof value !== 'string' || !HEX32.test(value)) throw new UnusableInput(`${where} must be 0x followed by 64 hex digits`);
  return value.toLowerCase();
}

function nonEmpty(value, where) {
  if (typeof value !== 'string' || value.length === 0) throw new UnusableInput(`${where} must be a non-empty string`);
  return value;
}

/** Parse and type-check a receipt (an object or JSON text); throws UnusableInput. */
export function parseReceipt(input) {
  let doc = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input);
    } catch (err) {
      throw new UnusableInput(`not valid JSON: ${err.message}`);
    }
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new UnusableInput('document must be a JSON object');
  if (doc.format !== GIFT_RECEIPT_FORMAT) {
    throw new UnusableInput(`format tag is ${JSON.stringify(doc.format ?? null)}, expected '${GIFT_RECEIPT_FORMAT}'`);
  }
  const gift = field(doc, 'gift', 'receipt');
  const giftId = gift && gift.id != null ? nonEmpty(gift.id, 'gift.id') : null;
  const proof = field(doc, 'proof', 'receipt');
  if (!Array.isArray(proof)) throw new UnusableInput('receipt.proof must be a JSON array');
  if (proof.length > 256) throw new UnusableInput('receipt.proof is too long');
  const vault = field(doc, 'vault', 'receipt');
  if (typeof vault !== 'string' || !ADDRESS.test(vault)) throw new UnusableInput('vault must be a 0x-prefixed 20-byte address');
  let sender = null;
  if (doc.sender != null) {
    sender = {
      accountId: nonEmpty(field(doc.sender, 'account_id', 'sender'), 'sender.account_id'),
      salt: bytes32(field(doc.sender, 'salt', 'sender'), 'sender.salt'),
    };
  }
  return {
    chainId: uint(field(doc, 'chain_id', 'receipt'), 'chain_id', UINT64_LIMIT),
    vault,
    giftId,
    leaf: {
      giftIdHash: bytes32(field(gift, 'gift_id_hash', 'gift'), 'gift.gift_id_hash'),
      fromKey: bytes32(field(gift, 'from_key', 'gift'), 'gift.from_key'),
      creatorKey: bytes32(field(gift, 'creator_key', 'gift'), 'gift.creator_key'),
      gross: uint(field(gift, 'gross', 'gift'), 'gift.gross'),
      creatorAmount: uint(field(gift, 'creator_amount', 'gift'), 'gift.creator_amount'),
      platformAmount: uint(field(gift, 'platform_amount', 'gift'), 'gift.platform_amount'),
    },
    creatorBps: uint(field(gift, 'creator_bps', 'gift'), 'gift.creator_bps', BPS_DENOMINATOR + 1n),
    epochId: uint(field(doc, 'epoch_id', 'receipt'), 'epoch_id', UINT64_LIMIT),
    proof: proof.map((p, i) => bytes32(p, `proof[${i}]`)),
    sender,
  };
}

/** keccak256(utf8(id)): a string id as it appears in leaves. */
export const idHash = (id) => keccak256(stringToHex(id));

/** keccak256(abi.encode("tokenbridge.account.v1", accountId, salt)). */
export const accountKey = (accountId, salt) =>
  keccak256(encodeAbiParameters([{ type: 'string' }, { type: 'string' }, { type: 'bytes32' }], [KEY_DOMAIN, accountId, salt]));

/** OpenZeppelin standard leaf: keccak256(bytes.concat(keccak256(abi.encode(values)))). */
export function giftLeafHash(leaf) {
  const encoded = encodeAbiParameters(GIFT_LEAF_TYPES, [
    leaf.giftIdHash, leaf.fromKey, leaf.creatorKey, leaf.gross, leaf.creatorAmount, leaf.platformAmount,
  ]);
  return keccak256(keccak256(encoded));
}

/** OpenZeppelin MerkleProof.processProof: sorted pairs, smaller hash first. */
export function processProof(leaf, proof) {
  let node = leaf.toLowerCase();
  for (const sibling of proof) {
    const s = sibling.toLowerCase();
    node = keccak256(node <= s ? concat([node, s]) : concat([s, node]));
  }
  return node;
}

const check = (name, label, passed, detail) => ({ name, label, passed: Boolean(passed), detail });

/**
 * Every check of docs/design/receipts.md. `reader`: { chainId(), hasCode(), epoch(id) ->
 * {giftRoot, bps, settledAt, giftCount}, verifyGift(epochId, leaf, proof) -> bool }.
 * `expectedVault` (the page's deployment) adds the check that the receipt names that vault.
 * Throws UnusableInput for a wrong chain or a vault without code.
 */
export async function verifyGiftReceipt(receipt, reader, { expectedVault = null } = {}) {
  const chainId = BigInt(await reader.chainId());
  if (chainId !== receipt.chainId) {
    throw new UnusableInput(`the document is for chain ${receipt.chainId} but the RPC serves chain ${chainId}`);
  }
  if (!(await reader.hasCode())) throw new UnusableInput(`no contract at vault address ${receipt.vault} on chain ${chainId}`);
  const { leaf } = receipt;
  const checks = [];
  if (expectedVault) {
    checks.push(check('vault_is_deployment', "receipt's vault is this site's deployment",
      expectedVault.toLowerCase() === receipt.vault.toLowerCase(), `receipt: ${receipt.vault}; this site: ${expectedVault}`));
  }
  if (receipt.giftId !== null) {
    const h = idHash(receipt.giftId);
    checks.push(check('gift_id_hash', 'gift id hash = keccak256(id)', h === leaf.giftIdHash,
      `keccak256('${receipt.giftId}') = ${h}; receipt says ${leaf.giftIdHash}`));
  }
  if (receipt.sender !== null) {
    const key = accountKey(receipt.sender.accountId, receipt.sender.salt);
    checks.push(check('sender_key', 'sender key = account_key(account_id, salt)', key === leaf.fromKey,
      `account_key('${receipt.sender.accountId}', salt) = ${key}; from_key is ${leaf.fromKey}`));
  }
  const epoch = await reader.epoch(receipt.epochId);
  const settled = epoch.settledAt !== 0n;
  checks.push(check('epoch_settled', 'epoch is settled on-chain', settled,
    settled ? `epoch ${receipt.epochId} settled at ${epoch.settledAt}` : `epoch ${receipt.epochId} not settled`));
  checks.push(check('epoch_bps', "receipt's creator_bps = epoch's on-chain bps", settled && epoch.bps === receipt.creatorBps,
    `on-chain ${epoch.bps} bps; receipt says ${receipt.creatorBps} bps`));
  const expectedCreator = (leaf.gross * epoch.bps) / BPS_DENOMINATOR;
  checks.push(check('split', "split at the epoch's rate",
    settled && leaf.creatorAmount === expectedCreator && leaf.creatorAmount + leaf.platformAmount === leaf.gross,
    `gross ${leaf.gross} x ${epoch.bps} // 10000 = ${expectedCreator}; creator ${leaf.creatorAmount} + platform ` +
      `${leaf.platformAmount} = ${leaf.creatorAmount + leaf.platformAmount}`));
  const leafHash = giftLeafHash(leaf);
  const root = processProof(leafHash, receipt.proof);
  checks.push(check('merkle_proof', "Merkle proof reaches the epoch's gift root", settled && root === epoch.giftRoot.toLowerCase(),
    `leaf ${leafHash} + ${receipt.proof.length} proof nodes -> ${root}; on-chain root ${epoch.giftRoot}`));
  const onChain = await reader.verifyGift(receipt.epochId, leaf, receipt.proof);
  checks.push(check('vault_verify_gift', "vault's verifyGift view", onChain,
    `verifyGift(epoch ${receipt.epochId}, ...) returned ${Boolean(onChain)}`));
  const ok = checks.length > 0 && checks.every((c) => c.passed);
  return {
    ok,
    verdict: ok ? 'verified' : 'NOT verified',
    failed: checks.filter((c) => !c.passed).map((c) => c.name),
    checks,
    facts: {
      'chain id': String(chainId),
      vault: receipt.vault,
      epoch: String(receipt.epochId),
      gift: receipt.giftId ?? leaf.giftIdHash,
      gross: String(leaf.gross),
      'epoch bps': String(epoch.bps),
      'gift root': epoch.giftRoot,
    },
  };
}
