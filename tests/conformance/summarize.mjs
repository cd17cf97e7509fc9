// Prints `<scenario> PASS|FAIL` for every scenario result in a conformance
// output directory (see summarize.sh). A scenario fails when any check has
// status FAILURE, or when its checks.json is missing or unreadable.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const outdir = process.argv[2];
if (!outdir) {
  console.error('usage: summarize.mjs OUTDIR');
  process.exit(2);
}

// <kind>-<scenario>-<ISO timestamp with ':' and '.' replaced by '-'>
const RUN_DIR = /^(?:server|client|authorization)-(.+)-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z)$/;

const newest = new Map();
for (const entry of readdirSync(outdir, { withFileTypes: true })) {
  if (!entry.isDirectory()) continue;
  const match = RUN_DIR.exec(entry.name);
  if (!match) continue;
  const [, scenario, stamp] = match;
  const seen = newest.get(scenario);
  if (!seen || stamp > seen.stamp) {
    newest.set(scenario, { stamp, dir: join(outdir, entry.name) });
  }
}

function verdict(dir) {
  try {
    const checks = JSON.parse(readFileSync(join(dir, 'checks.json'), 'utf8'));
    if (!Array.isArray(checks)) return 'FAIL';
    return checks.some((check) => check?.status === 'FAILURE') ? 'FAIL' : 'PASS';
  } catch {
    return 'FAIL';
  }
}

for (const scenario of [...newest.keys()].sort()) {
  console.log(`${scenario} ${verdict(newest.get(scenario).dir)}`);
}
