// Read-only access to the vault from the browser: eth_chainId, eth_getCode, eth_call, eth_getLogs.
// The ABI is the committed artifact's (injected at build time by scripts/build_web.mjs).

import { createPublicClient, http } from 'viem';
import VAULT_ABI from 'tokenbridge:vault-abi';

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

/** Split rate, pending change, recent epochs and reserve vs liabilities, for the dashboard. */
export async function loadOverview(client, vault, fromBlock) {
  const reader = makeReader(client, vault);
  const [bps, pending, splitDelay, reserve, latest, solvent] = await Promise.all([
    reader.read('creatorBps'),
    reader.read('pendingCreatorBps'),
    reader.read('splitDelay'),
    reader.read('reserve'),
    reader.read('latestLiabilities'),
    reader.read('solvent'),
  ]);
  const logs = (eventName) => client.getContractEvents({ address: vault, abi: VAULT_ABI, eventName, fromBlock, toBlock: 'latest' });
  const [settled, committed] = await Promise.all([logs('GiftsSettled'), logs('LiabilitiesCommitted')]);

  const epochs = new Map();
  for (const log of settled) {
    const id = log.args.epochId;
    const e = epochs.get(id) ?? { id, root: log.args.giftRoot, bps: Number(log.args.creatorBps), gross: 0n, chunks: 0, block: log.blockNumber };
    e.gross += log.args.chunkGross;
    e.chunks += 1;
    epochs.set(id, e);
  }
  const recent = [...epochs.values()].sort((a, b) => (a.block === b.block ? Number(b.id - a.id) : Number(b.block - a.block))).slice(0, 10);
  await Promise.all(recent.map(async (e) => {
    const info = await reader.epoch(e.id);
    e.giftCount = info.giftCount;
    e.settledAt = info.settledAt;
  }));

  const commitments = committed.slice(-8).map((log) => ({ epochId: log.args.epochId, total: log.args.total, block: log.blockNumber, reserve: null }));
  await Promise.all(commitments.map(async (c) => {
    try {
      c.reserve = await reader.read('reserve', [], { blockNumber: c.block });
    } catch {
      c.reserve = null; // a pruned node cannot answer historical calls: the chart shows liabilities only
    }
  }));
  return {
    bps: Number(bps),
    pending: { exists: pending[0], bps: Number(pending[1]), effectiveAt: Number(pending[2]) },
    splitDelay: Number(splitDelay),
    reserve,
    latest: { epochId: latest[0], root: latest[1], total: latest[2], committedAt: Number(latest[3]) },
    solvent,
    epochs: recent,
    commitments,
  };
}
