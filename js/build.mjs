// Bundles js/*.js (the widget entry points) into geowidgets/static/ as minified ESM, and copies
// the stylesheet. Run with `npm run build`; the bundles are committed so a pip install from the
// repository works without npm.
import { copyFileSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'geowidgets', 'static');
const entries = ['embedding', 'slice', 'deviation', 'status', 'standalone'];
mkdirSync(out, { recursive: true });
await build({
  entryPoints: Object.fromEntries(entries.map((e) => [e, join(here, `${e}.js`)])),
  outdir: out,
  bundle: true,
  format: 'esm',
  minify: process.env.GW_DEBUG ? false : true,
  target: ['es2020'],
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(join(here, 'widgets.css'), join(out, 'widgets.css'));
for (const e of entries) {
  const kb = (statSync(join(out, `${e}.js`)).size / 1024).toFixed(1);
  console.log(`geowidgets/static/${e}.js  ${kb} kB`);
}
