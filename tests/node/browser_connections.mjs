// "Connected accounts" and the admin's shared key in real headless Chromium (Debian's
// /usr/bin/chromium through playwright-core), for people signed in by the test (their
// session cookies given): the person opens the link an agent gets, types a key into the
// focused field and connects; they press "Connect your account" for an upstream
// connected with OAuth whose server does not ask for it, and are told why nothing
// changed; the admin sets an upstream's shared key. Every page is
// screenshotted; a console error, a failed script or a CSP violation fails the run, and
// so does a key found in a page after it was saved.
//
// Usage: node browser_connections.mjs BASE OUT_DIR PERSON_COOKIE ADMIN_COOKIE
// (cookies as `name=value`). Prints one JSON line: {"ok":true,"screenshots":[...]}
// (exit 0), or {"ok":false,"error":"..."} (exit 1).
import { launch, newPage } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir, personCookie, adminCookie] = process.argv.slice(2);
if (!base || !outDir || !personCookie || !adminCookie) {
  console.error('usage: browser_connections.mjs BASE OUT_DIR PERSON_COOKIE ADMIN_COOKIE');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const screenshots = [];
const problems = [];
// Console messages a step expects (the browser reports every 4xx answer as an error):
// set only around that step, and only for the status it asserts.
let expected = null;
const PERSON_KEY = 'key-typed-in-chromium-0c4f1e';
const SHARED_KEY = 'shared-key-typed-in-chromium-9a7d2b';

const browser = await launch();

async function pageFor(cookie) {
  return newPage(browser, { problems, base, cookie, isExpected: (text) => text === expected });
}

async function shot(page, name, secret) {
  if (secret && (await page.content()).includes(secret)) {
    problems.push(`${name}: the key is in the page`);
  }
  const path = join(outDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
}

try {
  // The person, from the link an agent gets: that upstream first, its field focused.
  const person = await pageFor(personCookie);
  await person.goto(`${base}/account/connections?upstream=notion`);
  await person.waitForSelector('#asked');
  const focused = await person.evaluate(() => document.activeElement && document.activeElement.name);
  if (focused !== 'key') throw new Error(`the focused element is ${focused}, not the key field`);
  await shot(person, '1-connections-asked');
  await person.keyboard.type(PERSON_KEY);
  await Promise.all([
    person.waitForSelector('#flash'),
    person.keyboard.press('Enter'),
  ]);
  await shot(person, '2-connections-connected', PERSON_KEY);
  await person.goto(`${base}/account`);
  await shot(person, '3-account', PERSON_KEY);
  await person.goto(`${base}/account/connections?upstream=tracker`);
  await person.waitForSelector('#asked');
  await shot(person, '3a-connections-oauth');
  expected = 'Failed to load resource: the server responded with a status of 400 (Bad Request)';
  const [answer] = await Promise.all([
    person.waitForResponse((r) => r.url().endsWith('/account/connections/tracker/oauth')),
    person.waitForSelector('#error'),
    person.click('form[action$="/tracker/oauth"] button[type=submit]'),
  ]);
  expected = null;
  if (answer.status() !== 400) throw new Error(`the refusal answered ${answer.status()}`);
  const refusal = await person.textContent('#error');
  if (!refusal.includes('Warrant cannot reach the sign-in of tracker now')) {
    throw new Error(`the refusal says: ${refusal}`);
  }
  await shot(person, '3b-connections-oauth-refused');

  // The admin: a shared key set on the server's page; a per-person upstream's count.
  const admin = await pageFor(adminCookie);
  await admin.goto(`${base}/admin/servers/github`);
  await admin.waitForSelector('#auth');
  await shot(admin, '4-admin-shared-not-set');
  await admin.fill('#shared-key-input', SHARED_KEY);
  await Promise.all([
    admin.waitForSelector('#flash'),
    admin.click('form[action$="/shared-key"] button[type=submit]'),
  ]);
  await shot(admin, '5-admin-shared-set', SHARED_KEY);
  await admin.goto(`${base}/admin/servers/notion`);
  await admin.waitForSelector('#people');
  await shot(admin, '6-admin-person-key');
  await admin.goto(`${base}/admin/servers/fixed`);
  await admin.waitForSelector('#auth');
  await shot(admin, '7-admin-shared-by-reference');

  if (problems.length) throw new Error(problems.join('; '));
  console.log(JSON.stringify({ ok: true, screenshots }));
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.message || e), problems, screenshots }));
  await browser.close().catch(() => {});
  process.exit(1);
}
