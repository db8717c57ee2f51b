// Bundle the transparency page's JS (web/src/main.js + viem) into
// src/tokenbridge/entrypoints/web/static/app.js. Offline: everything comes from node_modules.
// The vault ABI (views and events only) is taken from the committed artifact, so the page
// and the Python client never drift apart.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const artifact = JSON.parse(readFileSync(join(root, 'src/tokenbridge/adapters/chain/artifacts/CoinVault.json'), 'utf8'));
const abi = artifact.abi.filter(
  (e) => e.type === 'event' || (e.type === 'function' && (e.stateMutability === 'view' || e.stateMutability === 'pure')),
);

const vaultAbi = {
  name: 'vault-abi',
  setup(b) {
    b.onResolve({ filter: /^tokenbridge:vault-abi$/ }, (args) => ({ path: args.path, namespace: 'vault-abi' }));
    b.onLoad({ filter: /.*/, namespace: 'vault-abi' }, () => ({ contents: JSON.stringify(abi), loader: 'json' }));
  },
};

const outfile = join(root, 'src/tokenbridge/entrypoints/web/static/app.js');
await build({
  entryPoints: [join(root, 'web/src/main.js')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  legalComments: 'linked',
  outfile,
  plugins: [vaultAbi],
  logLevel: 'warning',
});
console.log(`built ${outfile}`);
