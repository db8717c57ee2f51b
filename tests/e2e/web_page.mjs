// Drive the transparency page in Debian's chromium with playwright-core (no browser download).
// Input (stdin, JSON): { url, screenshotDir, cases: [{ name, receipt, rpcUrl?, submitWith: "click"|"keyboard" }] }
// Output (stdout, JSON): { overview: {...}, cases: [{ name, verdict, failed, text, screenshot, rows }], consoleErrors }
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const input = JSON.parse(readFileSync(0, 'utf8'));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});
const out = { overview: null, cases: [], consoleErrors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('console', (msg) => { if (msg.type() === 'error') out.consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => out.consoleErrors.push(String(err)));
  await page.goto(input.url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => /^(Read from chain|Could not|This RPC)/.test(document.getElementById('overview-status').textContent));
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
  }));
  out.overview.screenshot = join(input.screenshotDir, 'overview.png');
  await page.screenshot({ path: out.overview.screenshot, fullPage: true });

  for (const c of input.cases) {
    if (c.rpcUrl) await page.fill('#rpc-url', c.rpcUrl);
    await page.fill('#receipt', c.receipt);
    await page.evaluate(() => { document.getElementById('verify-result').dataset.verdict = 'none'; });
    if (c.submitWith === 'keyboard') {
      await page.focus('#receipt');
      await page.keyboard.press('Control+Enter');
    } else {
      await page.click('#verify-button');
    }
    await page.waitForFunction(() => !['none', 'pending'].includes(document.getElementById('verify-result').dataset.verdict));
    const result = await page.evaluate(() => {
      const region = document.getElementById('verify-result');
      return {
        verdict: region.dataset.verdict,
        failed: region.dataset.failed ? region.dataset.failed.split(' ') : [],
        text: region.textContent,
        rows: [...region.querySelectorAll('tr[data-check]')].map((tr) => ({ name: tr.dataset.check, result: tr.children[1].textContent })),
      };
    });
    const screenshot = join(input.screenshotDir, `${c.name}.png`);
    await page.locator('#verify').screenshot({ path: screenshot });
    out.cases.push({ name: c.name, screenshot, ...result });
  }
  out.fullScreenshot = join(input.screenshotDir, 'page.png');
  await page.screenshot({ path: out.fullScreenshot, fullPage: true });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
