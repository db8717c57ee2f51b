// The transparency page: split rate and its history, recent epochs with their transactions, reserve
// vs liabilities (all read from the chain through the RPC URL in the form, each section on its own),
// and a gift receipt verified entirely in this browser.
// Every value from the chain or the pasted receipt is inserted with textContent, never as HTML.

import { formatUnits } from 'viem';
import { loadEpochs, loadReserve, loadSplit, makeClient, makeReader } from './chain.js';
import { UnusableInput, parseReceipt, verifyGiftReceipt } from './checks.js';

const DECIMALS = 6;
const SVG_NS = 'http://www.w3.org/2000/svg';
const config = JSON.parse(document.getElementById('tb-config').textContent);

const $ = (id) => document.getElementById(id);
const coins = (units) => `${formatUnits(BigInt(units), DECIMALS)} coins`;
const pct = (bps) => `${(bps / 100).toFixed(2)} %`;
const when = (seconds) => (seconds ? new Date(Number(seconds) * 1000).toISOString().replace('.000Z', 'Z') : '—');
const short = (hex) => `${hex.slice(0, 10)}…${hex.slice(-6)}`;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

function rpcUrl() {
  return $('rpc-url').value.trim();
}

function setStatus(text) {
  $('overview-status').textContent = text;
}

// --- dashboard --------------------------------------------------------------------------------

/** A duration in the largest whole units: 90 -> "1 min 30 s", 5400 -> "1 h 30 min", 86400 -> "1 d". */
export function duration(seconds) {
  let rest = Number(seconds);
  if (!rest) return '0 s';
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]]) {
    const q = Math.floor(rest / size);
    if (q) parts.push(`${q} ${unit}`);
    rest -= q * size;
  }
  return parts.join(' ');
}

/** A transaction hash: a link to the configured explorer, else the full hash in selectable text. */
function txCell(hash) {
  if (config.explorer_url) {
    return el('a', { class: 'tx', href: `${config.explorer_url}/tx/${hash}`, target: '_blank', rel: 'noopener noreferrer',
      title: hash, 'aria-label': `transaction ${hash} on the block explorer` }, short(hash));
  }
  return el('code', { class: 'hash', title: `${hash} (select to copy)` }, hash);
}

function sectionError(id, what, err) {
  const box = $(id);
  const detail = err.details && err.details !== err.shortMessage ? ` (${err.details})` : '';
  const message = `Could not read ${what}: ${err.shortMessage ?? err.message ?? String(err)}${detail}`;
  const p = el('p', { class: 'bad section-error', role: 'alert' }, message);
  if (box.tagName === 'TBODY') box.replaceChildren(el('tr', {}, el('td', { colspan: String(box.closest('table').tHead.rows[0].cells.length) }, p)));
  else box.replaceChildren(p);
  box.dataset.state = 'error';
  if (id === 'reserve-summary') { // no stale chart next to the error
    $('reserve-chart').replaceChildren(svg('text', { x: 280, y: 120, 'text-anchor': 'middle', class: 'label' }, 'not loaded'));
    $('reserve-table-body').replaceChildren();
  }
}

function renderSplit(o) {
  const box = $('split-body');
  const history = o.history.length
    ? el('table', { id: 'split-history' },
      el('caption', {}, 'Rate changes, newest first'),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'when (UTC)'), el('th', { scope: 'col' }, 'change'), el('th', { scope: 'col' }, 'transaction'))),
      el('tbody', {}, ...o.history.map((h) => el('tr', { 'data-kind': h.kind },
        el('td', {}, when(h.time)),
        el('td', {}, {
          proposed: `Proposed ${pct(h.toBps)} (was ${pct(h.fromBps)}); may apply from ${when(h.effectiveAt)}`,
          applied: `Applied ${pct(h.toBps)} (was ${pct(h.fromBps)})`,
          initial: `Initial rate ${pct(h.toBps)}, set at deployment`,
          cancelled: `Cancelled the proposal of ${pct(h.toBps)}`,
        }[h.kind]),
        el('td', {}, txCell(h.tx))))))
    : el('p', { id: 'split-history' }, 'No rate change since the deployment.');
  box.replaceChildren(
    el('p', { class: 'figure' }, el('strong', {}, pct(o.bps)), ' of each gift goes to the creator (', String(o.bps), ' bps); the platform keeps the rest.'),
    o.pending.exists
      ? el('p', { class: 'pending' }, `Pending change: ${pct(o.pending.bps)} (${o.pending.bps} bps), can be applied from ${when(o.pending.effectiveAt)}.`)
      : el('p', {}, 'No change pending.'),
    el('p', { class: 'note' }, `A new rate must be proposed on-chain and wait ${duration(o.splitDelay)} before it applies.`),
    history,
    o.historyComplete ? '' : el('p', { class: 'note' }, `Changes before block ${o.scannedFrom} are not shown.`),
  );
  box.dataset.state = 'loaded';
}

function renderEpochs(o) {
  const body = $('epochs-body');
  body.dataset.state = 'loaded';
  if (o.epochs.length === 0) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: '7' }, o.complete ? 'No epoch settled yet.' : `No epoch settled since block ${o.scannedFrom}.`)));
    return;
  }
  body.replaceChildren(...o.epochs.map((e) => el('tr', {},
    el('th', { scope: 'row' }, String(e.id)),
    el('td', {}, String(e.giftCount ?? '')),
    el('td', { class: 'num' }, coins(e.gross)),
    el('td', { class: 'num' }, `${e.bps} bps`),
    el('td', {}, el('code', { title: e.root }, short(e.root))),
    el('td', {}, when(e.settledAt)),
    el('td', { class: 'txs' }, ...e.txs.flatMap((tx, i) => (i ? [el('br'), txCell(tx)] : [txCell(tx)]))),
  )));
}

/** A round upper bound for the y axis: 1, 2 or 5 times a power of ten (in base units). */
function niceMax(value) {
  let step = 1n;
  while (step * 10n <= value) step *= 10n;
  for (const m of [1n, 2n, 5n, 10n]) if (step * m >= value) return step * m;
  return value;
}

function renderReserve(o) {
  const committed = o.latest.committedAt !== 0;
  const solvent = committed && o.reserve >= o.latest.total;
  $('reserve-summary').replaceChildren(
    el('p', { class: 'figure' }, 'Reserve held by the vault: ', el('strong', {}, coins(o.reserve))),
    committed
      ? el('p', { class: 'figure' }, `Liabilities committed for epoch ${o.latest.epochId}: `, el('strong', {}, coins(o.latest.total)),
        ` (${when(o.latest.committedAt)})`)
      : el('p', {}, 'No liabilities committed yet.'),
    el('p', { class: solvent ? 'ok' : 'bad' }, solvent ? '✓ Solvent: the reserve covers every in-app balance.' : '✗ Not solvent (or nothing committed yet).',
      ` The vault's solvent() view says ${o.solvent}.`),
  );
  $('reserve-summary').dataset.state = 'loaded';
  const series = o.commitments;
  const W = 560;
  const H = 240;
  const left = 84;
  const right = 12;
  const top = 16;
  const bottom = 52;
  const plotH = H - top - bottom;
  const peak = series.reduce((m, c) => [c.total, c.reserve ?? 0n].reduce((a, b) => (b > a ? b : a), m), o.reserve);
  const max = niceMax(peak > 0n ? peak : BigInt(10 ** DECIMALS));
  const y = (v) => top + plotH - Number((v * BigInt(plotH)) / max);
  const slot = series.length ? (W - left - right) / series.length : W - left - right;
  const bar = Math.max(6, Math.min(28, slot / 3));
  const nodes = [
    svg('title', { id: 'chart-title' }, 'Reserve and committed liabilities per epoch (coins)'),
    svg('desc', { id: 'chart-desc' }, series.map((c) => `epoch ${c.epochId}: liabilities ${coins(c.total)}, reserve ${c.reserve === null ? 'unknown' : coins(c.reserve)}`).join('; ') || 'no commitments yet'),
  ];
  for (const frac of [0n, 1n, 2n, 3n, 4n]) { // y axis: 5 ticks with grid lines, in coins
    const v = (max * frac) / 4n;
    nodes.push(svg('line', { x1: left, y1: y(v), x2: W - right, y2: y(v), class: frac ? 'grid' : 'axis' }));
    nodes.push(svg('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'label tick-y' }, formatUnits(v, DECIMALS)));
  }
  nodes.push(svg('line', { x1: left, y1: top, x2: left, y2: top + plotH, class: 'axis' }));
  nodes.push(svg('text', { x: 14, y: top + plotH / 2, 'text-anchor': 'middle', class: 'axis-title', transform: `rotate(-90 14 ${top + plotH / 2})` }, 'coins'));
  series.forEach((c, i) => {
    const mid = left + i * slot + slot / 2;
    if (c.reserve !== null) nodes.push(svg('rect', { x: mid - bar, y: y(c.reserve), width: bar, height: top + plotH - y(c.reserve), class: 'bar-reserve' }));
    nodes.push(svg('rect', { x: mid, y: y(c.total), width: bar, height: top + plotH - y(c.total), class: 'bar-liabilities' }));
    nodes.push(svg('text', { x: mid, y: top + plotH + 16, 'text-anchor': 'middle', class: 'label tick-x' }, `e${c.epochId}`));
  });
  if (!series.length) nodes.push(svg('text', { x: left + (W - left - right) / 2, y: top + plotH / 2, 'text-anchor': 'middle', class: 'label' }, 'no commitment yet'));
  nodes.push(svg('text', { x: left + (W - left - right) / 2, y: H - 8, 'text-anchor': 'middle', class: 'axis-title' }, 'epoch of the liabilities commitment'));
  $('reserve-chart').replaceChildren(...nodes);
  // The same numbers as a table for screen readers (visually hidden).
  $('reserve-table-body').replaceChildren(...series.map((c) => el('tr', {},
    el('th', { scope: 'row' }, String(c.epochId)),
    el('td', {}, when(c.time)),
    el('td', {}, coins(c.total)),
    el('td', {}, c.reserve === null ? 'unknown (node has no history)' : coins(c.reserve)))));
}

let generation = 0; // a newer refresh wins: older answers are dropped

async function refresh() {
  const vault = config.vault;
  if (!vault) {
    setStatus('No deployment is recorded for this site: paste a receipt to check it against its own vault.');
    return;
  }
  const url = rpcUrl();
  const gen = ++generation;
  const current = () => gen === generation;
  const sections = [['split-body', 'the split rate'], ['epochs-body', 'the epochs'], ['reserve-summary', 'the reserve']];
  for (const [id] of sections) $(id).dataset.state = 'loading';
  setStatus(`Reading vault ${vault} through ${url} …`);
  const failAll = (message) => {
    if (!current()) return;
    setStatus(message);
    for (const [id, what] of sections) sectionError(id, what, new Error(message));
  };
  let client;
  let chainId;
  let latest;
  try {
    client = makeClient(url);
    [chainId, latest] = await Promise.all([client.getChainId(), client.getBlockNumber()]);
  } catch (err) {
    failAll(`Could not reach the node at ${url}: ${err.shortMessage ?? err.message}`);
    return;
  }
  if (config.chain_id && chainId !== config.chain_id) {
    failAll(`The node at ${url} serves chain ${chainId}, the deployment is on chain ${config.chain_id}.`);
    return;
  }
  const range = { fromBlock: BigInt(config.deploy_block ?? 0), toBlock: latest, chunk: BigInt(config.log_range ?? 10000) };
  const loaders = [
    [loadSplit, renderSplit, 'split-body', 'the split rate'],
    [loadEpochs, renderEpochs, 'epochs-body', 'the epochs'],
    [loadReserve, renderReserve, 'reserve-summary', 'the reserve'],
  ];
  const outcomes = await Promise.all(loaders.map(async ([load, render, id, what]) => {
    try {
      const data = await load(client, vault, range);
      if (current()) render(data);
      return true;
    } catch (err) {
      if (current()) sectionError(id, what, err);
      return false;
    }
  }));
  if (!current()) return;
  const failed = outcomes.filter((ok) => !ok).length;
  const at = `Read from chain ${chainId} at block ${latest}, ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}.`;
  setStatus(failed ? `${at} ${failed} of ${loaders.length} sections could not be read (see below).` : at);
}

// --- receipt verification ---------------------------------------------------------------------

function renderVerdict(result) {
  const region = $('verify-result');
  region.dataset.verdict = result.ok ? 'verified' : 'failed';
  region.dataset.failed = result.failed.join(' ');
  const rows = result.checks.map((c) => el('tr', { class: c.passed ? 'ok' : 'bad', 'data-check': c.name },
    el('th', { scope: 'row' }, c.label, el('br'), el('code', {}, c.name)),
    el('td', {}, c.passed ? '✓ passed' : '✗ FAILED'),
    el('td', { class: 'detail' }, c.detail)));
  const facts = Object.entries(result.facts).map(([k, v]) => el('tr', {}, el('th', { scope: 'row' }, k), el('td', { class: 'detail' }, v)));
  region.replaceChildren(
    el('h3', { class: result.ok ? 'ok' : 'bad' }, result.ok
      ? `✓ Verified: all ${result.checks.length} checks passed`
      : `✗ Not verified: failed ${result.failed.join(', ')}`),
    el('table', { class: 'checks' }, el('caption', {}, 'What was checked'),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'check'), el('th', { scope: 'col' }, 'result'), el('th', { scope: 'col' }, 'what was compared'))),
      el('tbody', {}, ...rows)),
    el('table', { class: 'facts' }, el('caption', {}, 'Read from the chain'), el('tbody', {}, ...facts)),
  );
}

function renderUnusable(message) {
  const region = $('verify-result');
  region.dataset.verdict = 'unusable';
  region.dataset.failed = '';
  region.replaceChildren(el('h3', { class: 'bad' }, 'Cannot check this receipt'), el('p', {}, message));
}

async function onVerify(event) {
  event.preventDefault();
  const region = $('verify-result');
  const button = $('verify-button');
  region.dataset.verdict = 'pending';
  region.replaceChildren(el('p', {}, 'Checking against the chain …'));
  button.disabled = true;
  try {
    const receipt = parseReceipt($('receipt').value);
    const client = makeClient(rpcUrl());
    const result = await verifyGiftReceipt(receipt, makeReader(client, receipt.vault), { expectedVault: config.vault });
    renderVerdict(result);
  } catch (err) {
    renderUnusable(err instanceof UnusableInput ? err.message : `The node did not answer: ${err.shortMessage ?? err.message}`);
  } finally {
    button.disabled = false;
  }
}

function init() {
  $('rpc-url').value = config.rpc_url ?? '';
  $('deployment').textContent = config.vault
    ? `Vault ${config.vault} on chain ${config.chain_id}`
    : 'No deployment recorded for this site.';
  $('rpc-form').addEventListener('submit', (e) => {
    e.preventDefault();
    refresh();
  });
  $('verify-form').addEventListener('submit', onVerify);
  $('receipt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('verify-form').requestSubmit();
  });
  document.body.dataset.ready = 'true';
  refresh();
}

init();
