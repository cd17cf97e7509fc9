// Drives Warrant's pages in real headless Chromium (Debian's /usr/bin/chromium through
// playwright-core), with Chromium's virtual WebAuthn authenticator standing in for a
// device's passkey: the first admin is created from the setup link, signs out, signs in
// again with the passkey, and visits the account and admin pages. Every page is
// screenshotted; a console error, a failed script or a CSP violation fails the run.
//
// Usage: node browser_pages.mjs SETUP_LINK OUT_DIR [AUTHORIZE_URL]
// With AUTHORIZE_URL (an OAuth authorization request of a registered agent whose redirect
// URI is http://127.0.0.1:PORT/callback), the signed-in admin also opens the consent
// screen and approves; the redirect to the agent is caught and reported as "callback".
// Prints one JSON line: {"ok":true,"screenshots":[...],"steps":[...]} (exit 0), or
// {"ok":false,"error":"..."} (exit 1).
import { launch, newPage } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [setupLink, outDir, authorizeUrl] = process.argv.slice(2);
if (!setupLink || !outDir) {
  console.error('usage: browser_pages.mjs SETUP_LINK OUT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const origin = new URL(setupLink).origin;
const screenshots = [];
const steps = [];
const problems = [];
let callback = null;

const browser = await launch();

async function shot(page, name) {
  const path = join(outDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
}

try {
  // Loopback only: anything else is refused before it leaves.
  const page = await newPage(browser, { problems });
  // The agent's loopback redirect URI (nothing listens there): Playwright does not route
  // redirect hops, so the hop is read from the request log.
  const isCallback = (u) => u.hostname === '127.0.0.1' && u.pathname === '/callback';
  page.on('request', (r) => { if (isCallback(new URL(r.url()))) callback = r.url(); });

  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });

  // 1. The setup link: name, email, passkey.
  await page.goto(setupLink);
  await shot(page, '1-setup');
  await page.fill('#setup-name', 'Ada Admin');
  await page.fill('#setup-email', 'ada@example.com');
  await Promise.all([
    page.waitForURL(`${origin}/account**`),
    page.click('#setup-form button[type=submit]'),
  ]);
  await page.waitForSelector('text=ada@example.com');
  await shot(page, '2-account-after-setup');
  steps.push('setup');

  // 2. Sign out.
  await Promise.all([
    page.waitForURL(`${origin}/signin**`),
    page.click('form[action="/signout"] button'),
  ]);
  await page.waitForSelector('text=You are signed out.');
  await shot(page, '3-signed-out');
  steps.push('signout');

  // 3. Sign in again with the passkey (no username: a discoverable credential).
  await Promise.all([
    page.waitForURL(`${origin}/account**`),
    page.click('#passkey-signin'),
  ]);
  await page.waitForSelector('text=Signed in with passkey');
  await shot(page, '4-account-after-passkey');
  steps.push('passkey-signin');

  // 4. The admin's user list and the user's page.
  await page.goto(`${origin}/admin/users`);
  await page.waitForSelector('text=ada@example.com');
  await shot(page, '5-admin-users');
  await page.click('text=ada@example.com');
  await page.waitForSelector('h2#sessions');
  await shot(page, '6-admin-user');
  steps.push('admin');

  // 5. An agent asks for access: the consent screen, approved.
  if (authorizeUrl) {
    await page.goto(authorizeUrl);
    await page.waitForSelector('h1');
    // Open the per-tool choices (when the catalog has the tools) to show them too.
    const more = await page.$('details.tools summary');
    if (more) await more.click();
    // And the rows that limit one tool's arguments.
    const limits = await page.$$('details.constraints summary');
    if (limits.length) await limits[limits.length - 1].click();
    await shot(page, '7-consent');
    await page.click('button[name=decision][value=approve]', { noWaitAfter: true });
    for (let i = 0; i < 100 && !callback; i++) await page.waitForTimeout(100);
    if (!callback) throw new Error('the agent was not called back after approval');
    steps.push('consent');
  }

  if (problems.length) throw new Error(problems.join('; '));
  console.log(JSON.stringify({ ok: true, screenshots, steps, callback }));
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.message || e), problems, steps, screenshots }));
  await browser.close().catch(() => {});
  process.exit(1);
}
