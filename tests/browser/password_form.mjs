// A real browser signs in with samlgate's password form (`[password_signin]`): Debian's
// headless Chromium (/usr/bin/chromium), driven by playwright-core.
//
//   node tests/browser/password_form.mjs '<json>'
//
// Run by tests/password_signin.rs, which starts slapd, the echo upstream and the gateway and
// passes (one JSON argument):
//   form_url        the form (e.g. http://127.0.0.1:P/saml/password?rd=/app)
//   final_url       where the browser must land after signing in
//   username, password
//   screenshot      PNG path for the landing page
//   timeout_ms      overall budget (default 30000)
//
// It fills the form like a person (types, presses the button), waits for the landing page and
// reports its text, the cookies the browser holds and every Content-Security-Policy violation
// Chromium reported. Prints exactly one JSON line on stdout; the browser is always closed.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const args = JSON.parse(process.argv[2] ?? '{}');
const result = { ok: false, stage: 'launch', csp_violations: [] };
const out = () => process.stdout.write(JSON.stringify(result) + '\n');
let browser = null;
const timer = setTimeout(() => {
  result.error = `gave up after ${args.timeout_ms ?? 30000} ms (stage ${result.stage})`;
  out();
  process.exit(1);
}, args.timeout_ms ?? 30000);

try {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) result.csp_violations.push(m.text());
  });
  result.stage = 'open the form';
  await page.goto(args.form_url, { waitUntil: 'load' });
  result.form_title = await page.title();
  result.stage = 'fill and submit the form';
  await page.getByLabel('User name').fill(args.username);
  await page.getByLabel('Password').fill(args.password);
  const landed = page.waitForURL(args.final_url, { waitUntil: 'load' });
  await page.getByRole('button', { name: 'Sign in' }).click();
  await landed;
  result.stage = 'read the landing page';
  result.final_url = page.url();
  result.text = await page.innerText('body');
  result.cookies = (await context.cookies()).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite }));
  mkdirSync(dirname(args.screenshot), { recursive: true });
  await page.screenshot({ path: args.screenshot, fullPage: true });
  result.ok = true;
  result.stage = 'done';
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(timer);
  out();
}
