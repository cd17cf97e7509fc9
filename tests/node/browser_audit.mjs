// The audit log, analytics and graph pages in real headless Chromium (Debian's
// /usr/bin/chromium through playwright-core), for an admin signed in by the test (their
// session cookie given): the log filtered to refusals with the form, a record opened,
// the analytics per tool, the graph, the admin's own activity, and the log at 360 px
// wide. Every page is screenshotted; a console error, a failed script or a CSP violation
// fails the run, and so does a page without its charts.
//
// Usage: node browser_audit.mjs BASE OUT_DIR ADMIN_COOKIE (cookie as `name=value`).
// Prints one JSON line: {"ok":true,"screenshots":[...],"refused":N} (exit 0), or
// {"ok":false,"error":"..."} (exit 1).
import { launch, newPage } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir, adminCookie] = process.argv.slice(2);
if (!base || !outDir || !adminCookie) {
  console.error('usage: browser_audit.mjs BASE OUT_DIR ADMIN_COOKIE');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const screenshots = [];
const problems = [];

const browser = await launch();
const pageFor = (cookie, width) => newPage(browser, { problems, width, height: 800, base, cookie });

async function shot(page, name) {
  const path = join(outDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
}

let refused = 0;
try {
  const admin = await pageFor(adminCookie, 1100);
  await admin.goto(`${base}/admin/audit`);
  await shot(admin, '1-audit-log');
  // The form, as a person uses it: refusals only.
  await admin.selectOption('#f-decision', 'deny');
  await Promise.all([admin.waitForURL(/decision=deny/), admin.click('button[type=submit].primary')]);
  refused = await admin.locator('tbody tr').count();
  if (refused < 1) throw new Error('no refusal listed');
  await shot(admin, '2-audit-refusals');
  await Promise.all([admin.waitForURL(/\/admin\/audit\/.+\/\d+$/), admin.locator('tbody tr a').first().click()]);
  if (!(await admin.content()).includes('Previous hash')) throw new Error('the record page lacks its hashes');
  await shot(admin, '3-audit-record');
  await admin.goto(`${base}/admin/analytics?range=24h&by=tool`);
  const charts = await admin.locator('svg.chart').count();
  if (charts !== 2) throw new Error(`analytics shows ${charts} charts, not 2`);
  await shot(admin, '4-analytics');
  await admin.goto(`${base}/admin/graph`);
  if ((await admin.locator('svg.chart').count()) !== 1) throw new Error('no graph drawn');
  await shot(admin, '5-graph');
  await admin.goto(`${base}/account/activity`);
  await shot(admin, '6-own-activity');
  const narrow = await pageFor(adminCookie, 360);
  await narrow.goto(`${base}/admin/audit`);
  const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`the log is ${overflow}px wider than a 360px screen`);
  await shot(narrow, '7-audit-log-360px');
  if (problems.length) throw new Error(problems.join('; '));
  console.log(JSON.stringify({ ok: true, screenshots, refused }));
  await browser.close();
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.message || e), problems, screenshots }));
  await browser.close();
  process.exit(1);
}
