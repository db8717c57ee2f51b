// The transparency page: split rate, recent epochs, reserve vs liabilities (all read from the chain
// through the RPC URL in the form), and a gift receipt verified entirely in this browser.
// Every value from the chain or the pasted receipt is inserted with textContent, never as HTML.

import { formatUnits } from 'viem';
import { loadOverview, makeClient, makeReader } from './chain.js';
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

function renderSplit(o) {
  const box = $('split-body');
  box.replaceChildren(
    el('p', { class: 'figure' }, el('strong', {}, pct(o.bps)), ' of each gift goes to the creator (', String(o.bps), ' bps); the platform keeps the rest.'),
    o.pending.exists
      ? el('p', { class: 'pending' }, `Pending change: ${pct(o.pending.bps)} (${o.pending.bps} bps), can be applied from ${when(o.pending.effectiveAt)}.`)
      : el('p', {}, 'No change pending.'),
    el('p', { class: 'note' }, `A new rate must be proposed on-chain and wait ${Math.round(o.splitDelay / 3600)} h before it applies.`),
  );
}

function renderEpochs(o) {
  const body = $('epochs-body');
  if (o.epochs.length === 0) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: '6' }, 'No epoch settled yet.')));
    return;
  }
  body.replaceChildren(...o.epochs.map((e) => el('tr', {},
    el('th', { scope: 'row' }, String(e.id)),
    el('td', {}, String(e.giftCount ?? '')),
    el('td', { class: 'num' }, coins(e.gross)),
    el('td', { class: 'num' }, `${e.bps} bps`),
    el('td', {}, el('code', { title: e.root }, short(e.root))),
    el('td', {}, when(e.settledAt)),
  )));
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
  const series = o.commitments.length ? o.commitments : [];
  const chart = $('reserve-chart');
  const width = 560;
  const height = 200;
  const pad = 32;
  const max = series.reduce((m, c) => [c.total, c.reserve ?? 0n].reduce((a, b) => (b > a ? b : a), m), o.reserve > 0n ? o.reserve : 1n);
  const slot = series.length ? (width - pad) / series.length : width;
  const bar = Math.max(6, Math.min(28, slot / 3));
  const y = (v) => height - pad - Number((v * BigInt(height - 2 * pad)) / max);
  const nodes = [
    svg('title', { id: 'chart-title' }, 'Reserve and committed liabilities per epoch'),
    svg('desc', { id: 'chart-desc' }, series.map((c) => `epoch ${c.epochId}: liabilities ${coins(c.total)}, reserve ${c.reserve === null ? 'unknown' : coins(c.reserve)}`).join('; ') || 'no commitments yet'),
    svg('line', { x1: pad, y1: height - pad, x2: width, y2: height - pad, class: 'axis' }),
  ];
  series.forEach((c, i) => {
    const x = pad + i * slot + slot / 2 - bar;
    if (c.reserve !== null) nodes.push(svg('rect', { x, y: y(c.reserve), width: bar, height: height - pad - y(c.reserve), class: 'bar-reserve' }));
    nodes.push(svg('rect', { x: x + bar, y: y(c.total), width: bar, height: height - pad - y(c.total), class: 'bar-liabilities' }));
    nodes.push(svg('text', { x: x + bar, y: height - pad + 16, 'text-anchor': 'middle', class: 'label' }, `e${c.epochId}`));
  });
  nodes.push(svg('text', { x: pad, y: 14, class: 'label' }, `max ${coins(max)}`));
  chart.replaceChildren(...nodes);
}

async function refresh() {
  const vault = config.vault;
  if (!vault) {
    setStatus('No deployment is recorded for this site: paste a receipt to check it against its own vault.');
    return;
  }
  setStatus(`Reading vault ${vault} through ${rpcUrl()} …`);
  try {
    const client = makeClient(rpcUrl());
    const chainId = await client.getChainId();
    if (config.chain_id && chainId !== config.chain_id) {
      setStatus(`This RPC serves chain ${chainId}, the deployment is on chain ${config.chain_id}.`);
      return;
    }
    const overview = await loadOverview(client, vault, BigInt(config.deploy_block ?? 0));
    renderSplit(overview);
    renderEpochs(overview);
    renderReserve(overview);
    setStatus(`Read from chain ${chainId} at ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}.`);
  } catch (err) {
    setStatus(`Could not read the chain: ${err.shortMessage ?? err.message}`);
  }
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
