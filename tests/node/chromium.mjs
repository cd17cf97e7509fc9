// Headless Chromium for the page tests: Debian's /usr/bin/chromium through
// playwright-core, every request outside loopback refused, console errors and page
// errors collected, and a session cookie the test gives set when there is one.
import { chromium } from 'playwright-core';

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
}

// A page of a new context; what goes wrong is pushed onto `problems`, except console
// errors `isExpected` accepts. With `cookie` (`name=value`), it is set for `base`.
export async function newPage(browser, { problems, width = 1000, height = 760, base, cookie,
  isExpected = () => false }) {
  const context = await browser.newContext({ viewport: { width, height } });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === 'localhost' || url.hostname === '127.0.0.1') return route.continue();
    problems.push(`request outside loopback: ${url.href}`);
    return route.abort();
  });
  if (cookie) {
    const at = cookie.indexOf('=');
    await context.addCookies([{ name: cookie.slice(0, at), value: cookie.slice(at + 1), url: base }]);
  }
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('console', (m) => {
    if (m.type() === 'error' && !isExpected(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return page;
}
