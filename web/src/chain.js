// Read-only access to the vault from the browser: eth_chainId, eth_getCode, eth_call, eth_getLogs,
// eth_getBlockByNumber. The ABI is the committed artifact's (injected at build time by scripts/build_web.mjs).
//
// Each dashboard section loads on its own (loadSplit, loadEpochs, loadReserve), so one failing call
// shows an error in that section only. Event logs are read newest first in bounded block ranges
// (LOG_CHUNK blocks per eth_getLogs), stopping as soon as a section has what it shows: public nodes
// refuse (or time out on) one eth_getLogs over a whole chain's history.

import { createPublicClient, http } from 'viem';
import VAULT_ABI from 'tokenbridge:vault-abi';

export const LOG_CHUNK = 10000n; // blocks per eth_getLogs, unless the site configures another (log_range)
export const MAX_CHUNKS = 200; // at most 2,000,000 blocks scanned back per section
export const RECENT_EPOCHS = 10;
export const RECENT_COMMITMENTS = 8;
export const SPLIT_HISTORY = 20;
const SPLIT_EVENTS = ['CreatorBpsProposed', 'CreatorBpsApplied', 'CreatorBpsProposalCancelled'];

export function makeClient(rpcUrl) {
  return createPublicClient({ transport: http(rpcUrl, { retryCount: 0, timeout: 15000 }) });
}

/** The reader `verifyGiftReceipt` needs, bound to one node and one vault. */
export function makeReader(client, vault) {
  const read = (functionName, args = [], extra = {}) => client.readContract({ address: vault, abi: VAULT_ABI, functionName, args, ...extra });
  return {
    chainId: () => client.getChainId(),
    hasCode: async () => {
      const code = await client.getCode({ address: vault });
      return Boolean(code && code !== '0x');
    },
    epoch: async (epochId) => {
      const [giftRoot, giftCount, grossTotal, , bps, settledAt] = await read('epoch', [epochId]);
      return { giftRoot, giftCount, grossTotal, bps: BigInt(bps), settledAt: BigInt(settledAt) };
    },
    verifyGift: (epochId, leaf, proof) =>
      read('verifyGift', [epochId, leaf.giftIdHash, leaf.fromKey, leaf.creatorKey, leaf.gross, leaf.creatorAmount, leaf.platformAmount, proof]),
    read,
  };
}

/**
 * Logs of `eventNames` from the vault, newest first, read in LOG_CHUNK-block ranges from `toBlock`
 * down to `fromBlock`. Stops when `enough(logsSoFar)` is true or after `maxChunks` ranges.
 * Returns { logs, scannedFrom, complete } (complete: reached fromBlock).
 */
export async function scanLogs(client, vault, eventNames, { fromBlock, toBlock, enough = () => false, chunk = LOG_CHUNK, maxChunks = MAX_CHUNKS }) {
  const size = chunk && chunk > 0n ? chunk : LOG_CHUNK;
  const events = VAULT_ABI.filter((e) => e.type === 'event' && eventNames.includes(e.name));
  const logs = [];
  let hi = toBlock;
  for (let i = 0; i < maxChunks && hi >= fromBlock; i += 1) {
    const lo = hi - size + 1n > fromBlock ? hi - size + 1n : fromBlock;
    const batch = await client.getLogs({ address: vault, events, fromBlock: lo, toBlock: hi, strict: true });
    batch.sort((a, b) => (a.blockNumber === b.blockNumber ? b.logIndex - a.logIndex : Number(b.blockNumber - a.blockNumber)));
    logs.push(...batch);
    hi = lo - 1n;
    if (enough(logs)) break;
  }
  return { logs, scannedFrom: hi + 1n, complete: hi < fromBlock };
}

/** Block timestamps (seconds, BigInt) of the given block numbers, one eth_getBlockByNumber each. */
async function blockTimes(client, numbers) {
  const unique = [...new Set(numbers)];
  const blocks = await Promise.all(unique.map((n) => client.getBlock({ blockNumber: n })));
  return new Map(blocks.map((b) => [b.number, b.timestamp]));
}

/** Split rate in force, pending change, delay, and the history of proposals / applications / cancellations. */
export async function loadSplit(client, vault, { fromBlock, toBlock, chunk }) {
  const reader = makeReader(client, vault);
  const [bps, pending, splitDelay] = await Promise.all([reader.read('creatorBps'), reader.read('pendingCreatorBps'), reader.read('splitDelay')]);
  const scan = await scanLogs(client, vault, SPLIT_EVENTS, { fromBlock, toBlock, chunk, enough: (logs) => logs.length >= SPLIT_HISTORY });
  const logs = scan.logs.slice(0, SPLIT_HISTORY);
  const times = await blockTimes(client, logs.map((l) => l.blockNumber));
  const history = logs.map((log) => ({
    kind: log.eventName === 'CreatorBpsApplied' && log.blockNumber === fromBlock && fromBlock > 0n
      ? 'initial' // the constructor's rate, in the deployment block
      : { CreatorBpsProposed: 'proposed', CreatorBpsApplied: 'applied', CreatorBpsProposalCancelled: 'cancelled' }[log.eventName],
    fromBps: Number(log.args.currentBps ?? log.args.previousBps ?? log.args.cancelledBps),
    toBps: Number(log.args.proposedBps ?? log.args.newBps ?? log.args.cancelledBps),
    effectiveAt: log.args.effectiveAt === undefined ? null : Number(log.args.effectiveAt),
    block: log.blockNumber,
    time: Number(times.get(log.blockNumber) ?? 0n),
    tx: log.transactionHash,
  }));
  return {
    bps: Number(bps),
    pending: { exists: pending[0], bps: Number(pending[1]), effectiveAt: Number(pending[2]) },
    splitDelay: Number(splitDelay),
    history,
    historyComplete: scan.complete || scan.logs.length > SPLIT_HISTORY,
    scannedFrom: scan.scannedFrom,
  };
}

/** The RECENT_EPOCHS newest settled epochs (from GiftsSettled), with their settlement transactions. */
export async function loadEpochs(client, vault, { fromBlock, toBlock, chunk }) {
  const reader = makeReader(client, vault);
  // One epoch may settle in several chunks (several logs): read until one epoch more than shown, so
  // the shown ones are complete.
  const distinct = (logs) => new Set(logs.map((l) => l.args.epochId)).size;
  const scan = await scanLogs(client, vault, ['GiftsSettled'], { fromBlock, toBlock, chunk, enough: (logs) => distinct(logs) > RECENT_EPOCHS });
  const epochs = new Map();
  for (const log of scan.logs) {
    const id = log.args.epochId;
    if (!epochs.has(id) && epochs.size === RECENT_EPOCHS) continue;
    const e = epochs.get(id) ?? { id, root: log.args.giftRoot, bps: Number(log.args.creatorBps), gross: 0n, chunks: 0, block: log.blockNumber, txs: [] };
    e.gross += log.args.chunkGross;
    e.chunks += 1;
    if (!e.txs.includes(log.transactionHash)) e.txs.unshift(log.transactionHash); // oldest chunk first
    epochs.set(id, e);
  }
  const recent = [...epochs.values()];
  await Promise.all(recent.map(async (e) => {
    const info = await reader.epoch(e.id);
    e.giftCount = info.giftCount;
    e.settledAt = info.settledAt;
  }));
  return { epochs: recent, scannedFrom: scan.scannedFrom, complete: scan.complete };
}

/** Reserve, latest liabilities, solvent(), and the RECENT_COMMITMENTS newest commitments with the reserve at their block. */
export async function loadReserve(client, vault, { fromBlock, toBlock, chunk }) {
  const reader = makeReader(client, vault);
  const [reserve, latest, solvent] = await Promise.all([reader.read('reserve'), reader.read('latestLiabilities'), reader.read('solvent')]);
  const scan = await scanLogs(client, vault, ['LiabilitiesCommitted'], { fromBlock, toBlock, chunk, enough: (logs) => logs.length >= RECENT_COMMITMENTS });
  const logs = scan.logs.slice(0, RECENT_COMMITMENTS).reverse(); // oldest first, for the chart
  const times = await blockTimes(client, logs.map((l) => l.blockNumber));
  const commitments = logs.map((log) => ({
    epochId: log.args.epochId,
    total: log.args.total,
    block: log.blockNumber,
    time: Number(times.get(log.blockNumber) ?? 0n),
    tx: log.transactionHash,
    reserve: null,
  }));
  await Promise.all(commitments.map(async (c) => {
    try {
      c.reserve = await reader.read('reserve', [], { blockNumber: c.block });
    } catch {
      c.reserve = null; // a pruned node cannot answer historical calls: the chart shows liabilities only
    }
  }));
  return {
    reserve,
    latest: { epochId: latest[0], root: latest[1], total: latest[2], committedAt: Number(latest[3]) },
    solvent,
    commitments,
  };
}
