// Drive the transparency page in Debian's chromium with playwright-core (no browser download).
// Input (stdin, JSON): { url, screenshotDir, cases: [{ name, receipt, rpcUrl?, submitWith: "click"|"keyboard" }],
//   badRpcUrl, validReceipt }
// Output (stdout, JSON): { overview: {...}, cases: [{ name, verdict, failed, text, screenshot, rows }], tabOrder,
//   rpcSwitch: {...}, noExplorer: {...}, consoleErrors }
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { toEventSelector } from 'viem';

const input = JSON.parse(readFileSync(0, 'utf8'));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});
const out = { overview: null, cases: [], consoleErrors: [] };
const statusIs = (prefix) => (p) => document.getElementById('overview-status').textContent.startsWith(p);

async function verify(page, receipt, submitWith) {
  await page.fill('#receipt', receipt);
  await page.evaluate(() => { document.getElementById('verify-result').dataset.verdict = 'none'; });
  if (submitWith === 'keyboard') {
    await page.focus('#receipt');
    await page.keyboard.press('Control+Enter');
  } else {
    await page.click('#verify-button');
  }
  await page.waitForFunction(() => !['none', 'pending'].includes(document.getElementById('verify-result').dataset.verdict));
  return page.evaluate(() => {
    const region = document.getElementById('verify-result');
    return {
      verdict: region.dataset.verdict,
      failed: region.dataset.failed ? region.dataset.failed.split(' ') : [],
      text: region.textContent,
      rows: [...region.querySelectorAll('tr[data-check]')].map((tr) => ({ name: tr.dataset.check, result: tr.children[1].textContent })),
    };
  });
}

const sectionTexts = (page) => page.evaluate(() => ({
  status: document.getElementById('overview-status').textContent,
  split: document.getElementById('split-body').textContent,
  epochs: document.getElementById('epochs-body').textContent,
  reserve: document.getElementById('reserve-summary').textContent,
  errors: [...document.querySelectorAll('.section-error')].map((e) => e.textContent),
}));
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('console', (msg) => { if (msg.type() === 'error') out.consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => out.consoleErrors.push(String(err)));
  out.getLogs = []; // the first load's eth_getLogs ranges, in request order
  const recordLogs = (req) => {
    const body = req.method() === 'POST' ? req.postData() ?? '' : '';
    if (!body.includes('"eth_getLogs"')) return;
    const [filter] = JSON.parse(body).params;
    out.getLogs.push({ from: Number(BigInt(filter.fromBlock)), to: Number(BigInt(filter.toBlock)), topics: filter.topics[0] });
  };
  page.on('request', recordLogs);
  await page.goto(input.url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => /^(Read from chain|Could not|The node)/.test(document.getElementById('overview-status').textContent));
  out.overview = await page.evaluate(() => ({
    status: document.getElementById('overview-status').textContent,
    deployment: document.getElementById('deployment').textContent,
    rpcUrl: document.getElementById('rpc-url').value,
    split: document.getElementById('split-body').textContent,
    epochs: [...document.querySelectorAll('#epochs-body tr')].map((tr) => [...tr.children].map((c) => c.textContent)),
    reserve: document.getElementById('reserve-summary').textContent,
    chartBars: document.querySelectorAll('#reserve-chart rect').length,
    chartDesc: document.querySelector('#reserve-chart desc')?.textContent ?? '',
    labels: [...document.querySelectorAll('label')].map((l) => [l.htmlFor, l.textContent.trim()]),
    live: document.getElementById('verify-result').getAttribute('aria-live'),
    splitHistory: [...document.querySelectorAll('#split-history tbody tr')].map((tr) => ({
      kind: tr.dataset.kind, text: tr.children[1].textContent, when: tr.children[0].textContent,
      tx: tr.querySelector('a.tx')?.getAttribute('href') ?? null,
    })),
    epochTxs: [...document.querySelectorAll('#epochs-body tr')].map((tr) => [...tr.querySelectorAll('a.tx')].map((a) => ({
      href: a.getAttribute('href'), text: a.textContent, label: a.getAttribute('aria-label'),
    }))),
    chartTicks: [...document.querySelectorAll('#reserve-chart .tick-y')].map((t) => t.textContent),
    chartAxes: [...document.querySelectorAll('#reserve-chart .axis-title')].map((t) => t.textContent),
    reserveTable: [...document.querySelectorAll('#reserve-table tbody tr')].map((tr) => [...tr.children].map((c) => c.textContent)),
    reserveTableHidden: (() => {
      const r = document.getElementById('reserve-table').parentElement.getBoundingClientRect();
      return r.width <= 1 && r.height <= 1;
    })(),
  }));

  // Keyboard: Tab from the top reaches every form control, each with a label (or a button text).
  await page.evaluate(() => document.activeElement?.blur());
  out.tabOrder = [];
  for (let i = 0; i < 60; i += 1) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const a = document.activeElement;
      const label = a.labels?.[0]?.textContent.trim() || a.getAttribute('aria-label') || a.textContent.trim();
      return { id: a.id, tag: a.tagName.toLowerCase(), label };
    });
    out.tabOrder.push(f);
    if (f.id === 'verify-button') break;
  }
  page.off('request', recordLogs);
  out.overview.screenshot = join(input.screenshotDir, 'overview.png');
  await page.screenshot({ path: out.overview.screenshot, fullPage: true });

  for (const c of input.cases) {
    if (c.rpcUrl) await page.fill('#rpc-url', c.rpcUrl);
    const result = await verify(page, c.receipt, c.submitWith);
    const screenshot = join(input.screenshotDir, `${c.name}.png`);
    await page.locator('#verify').screenshot({ path: screenshot });
    out.cases.push({ name: c.name, screenshot, ...result });
  }
  out.fullScreenshot = join(input.screenshotDir, 'page.png');
  await page.screenshot({ path: out.fullScreenshot, fullPage: true });

  // Change the RPC URL to a node that does not answer (Enter in the field), then back (the button).
  const goodRpc = await page.inputValue('#rpc-url');
  out.rpcSwitch = {};
  await page.fill('#rpc-url', input.badRpcUrl);
  await page.press('#rpc-url', 'Enter');
  await page.waitForFunction(statusIs('Could not reach'), 'Could not reach');
  out.rpcSwitch.bad = await sectionTexts(page);
  out.rpcSwitch.badVerify = await verify(page, input.validReceipt, 'click');
  out.rpcSwitch.screenshot = join(input.screenshotDir, 'wrong-rpc.png');
  await page.screenshot({ path: out.rpcSwitch.screenshot, fullPage: true });
  await page.fill('#rpc-url', goodRpc);
  await page.click('#rpc-form button[type="submit"]');
  await page.waitForFunction(statusIs('Read from chain'), 'Read from chain');
  out.rpcSwitch.back = await sectionTexts(page);
  out.rpcSwitch.backVerify = await verify(page, input.validReceipt, 'keyboard');

  // Without an explorer configured, transaction hashes are shown in full, selectable (no link).
  const plain = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  plain.on('pageerror', (err) => out.consoleErrors.push(String(err)));
  await plain.addInitScript(() => { // the same site with explorer_url emptied in its embedded config
    const parse = JSON.parse;
    JSON.parse = (text, ...rest) => {
      const value = parse(text, ...rest);
      if (value && typeof value === 'object' && 'explorer_url' in value) value.explorer_url = '';
      return value;
    };
  });
  await plain.goto(input.url, { waitUntil: 'load' });
  await plain.waitForFunction(statusIs('Read from chain'), 'Read from chain', { timeout: 15000 }).catch(async (err) => {
    throw new Error(`${err.message}; status: ${await plain.textContent('#overview-status')}`);
  });
  out.noExplorer = await plain.evaluate(() => ({
    links: document.querySelectorAll('a.tx').length,
    epochHashes: [...document.querySelectorAll('#epochs-body code.hash')].map((c) => ({
      text: c.textContent, userSelect: getComputedStyle(c).userSelect || getComputedStyle(c).webkitUserSelect,
    })),
    historyHashes: [...document.querySelectorAll('#split-history code.hash')].map((c) => c.textContent),
  }));
  out.noExplorer.screenshot = join(input.screenshotDir, 'no-explorer.png');
  await plain.screenshot({ path: out.noExplorer.screenshot, fullPage: true });

  // One section failing does not blank the others: the node refuses eth_getLogs for GiftsSettled only.
  const broken = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  broken.on('pageerror', (err) => out.consoleErrors.push(String(err)));
  const settledTopic = toEventSelector('GiftsSettled(uint64,uint256,bytes32,uint16,uint256,uint256,uint256,uint256)');
  await broken.route(`${goodRpc}/**`, async (route) => { // same origin rules: answer CORS as anvil does
    const body = route.request().postData() ?? '';
    if (route.request().method() === 'POST' && body.includes('"eth_getLogs"') && body.includes(settledTopic)) {
      const { id } = JSON.parse(body);
      await route.fulfill({ status: 200, contentType: 'application/json', headers: { 'access-control-allow-origin': '*' },
        body: JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32005, message: 'query returned more than 10000 results' } }) });
    } else {
      await route.continue();
    }
  });
  await broken.goto(input.url, { waitUntil: 'load' });
  await broken.waitForFunction(statusIs('Read from chain'), 'Read from chain');
  out.partial = await sectionTexts(broken);
  out.partial.screenshot = join(input.screenshotDir, 'one-section-failed.png');
  await broken.screenshot({ path: out.partial.screenshot, fullPage: true });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
