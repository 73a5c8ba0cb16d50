// A real browser signs in through samlgate: Debian's headless Chromium (/usr/bin/chromium),
// driven by playwright-core (which downloads no browser of its own).
//
//   node tests/browser/login.mjs '<json>'
//
// Run by tests/browser_login.rs, which starts an IdP (SimpleSAMLphp or samlgate's dev IdP), the
// echo upstream and the gateway and passes (one JSON argument):
//   idp              "simplesamlphp" (default: fill and submit its username/password form) or
//                    "devidp" (press the user's button on the dev IdP's login page; when the
//                    page offers none, e.g. a user with a password, type username and password)
//   start_url        the protected URL to open (on the gateway)
//   final_url        where the browser must land after signing in (usually start_url)
//   acs_url          the gateway's ACS (the IdP's auto-submitted form POSTs there)
//   idp_origin       origin of the IdP's pages (scheme://host:port)
//   username, password   (password may be null/absent for the dev IdP's button)
//   screenshot       PNG path for the landing page (full page)
//   failure_screenshot  PNG path for whatever the page shows when something goes wrong
//   host_rules       optional, e.g. "MAP *.test 127.0.0.1" (Chromium's --host-rules)
//   ignore_certificate_errors  optional bool (self-signed https on the gateway)
//   timeout_ms       overall budget (default 40000); the browser is closed when it runs out
//   sign_out         optional: after landing, sign out with samlgate's "Sign out" button and
//                    follow the browser to the end of the Single Logout:
//                      logout_url        samlgate's sign-out page (GET shows the button)
//                      final_url_prefix  where the browser must come to rest
//                      screenshot        PNG path for that final page
//                    then open start_url again: the IdP must ask for the sign-in again.
//
// Every Content-Security-Policy violation Chromium reports on the console is collected in
// `csp_violations` (the test requires none). Every top-level document is listed in `documents`
// (method, URL, status, its Content-Security-Policy header), and every top-level form POST that
// carries a SAML message in `saml_posts` (URL and its SAMLRequest / SAMLResponse / RelayState
// fields only: the IdP's login POST, with the password, leaves no trace).
//
// Prints exactly one JSON line on stdout ({"ok": true|false, ...}); diagnostics go to stderr.
// The browser is always closed (finally), also on failure and on SIGTERM (playwright's
// handleSIGTERM).

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const CHROMIUM = '/usr/bin/chromium';

const t0 = Date.now();
const ms = () => Date.now() - t0;
const log = (...a) => console.error(`[login.mjs +${ms()}ms]`, ...a);

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

let args;
try {
  args = JSON.parse(process.argv[2] ?? '');
} catch (e) {
  out({ ok: false, stage: 'args', error: `expected one JSON argument: ${e.message}` });
  process.exit(2);
}

const timeoutMs = args.timeout_ms ?? 40000;
const result = {
  ok: false,
  stage: 'launch',
  browser_version: null,
  trail: [], // every document request: "METHOD url -> status"
  documents: [], // every document response: { method, url, status, csp }
  saml_posts: [], // every document POST carrying a SAML message: { url, fields }
  timings_ms: {},
};

const cookieView = (c) => ({
  name: c.name,
  domain: c.domain,
  path: c.path,
  secure: c.secure,
  httpOnly: c.httpOnly,
  sameSite: c.sameSite,
  expires: c.expires,
});

function withDeadline(promise) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`gave up after ${timeoutMs} ms (stage ${result.stage})`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

let browser = null;
let page = null;

// Each waits for its IdP's login page and returns the action that signs the user in.

// SimpleSAMLphp's form: username, password, submit.
async function simpleSamlPhpLogin() {
  const username = page.locator('input[name="username"]');
  await username.waitFor({ state: 'visible' });
  result.idp_login_method = 'form';
  return async () => {
    await username.fill(args.username);
    await page.locator('input[name="password"]').fill(args.password ?? '');
    await page.locator('#submit_button, form [type="submit"]').first().click();
  };
}

// The dev IdP's page: one button per user without a password (name="username", value = the
// username), and a username/password form for everyone.
async function devIdpLogin() {
  const typed = page.locator('input[type="text"][name="username"]');
  await typed.waitFor({ state: 'visible' });
  const button = page.locator(`button[name="username"][value=${JSON.stringify(args.username)}]`);
  if ((await button.count()) === 1) {
    result.idp_login_method = 'button';
    result.idp_login_button = (await button.innerText()).trim();
    return () => button.click();
  }
  result.idp_login_method = 'form';
  return async () => {
    await typed.fill(args.username);
    await page.locator('input[type="password"][name="password"]').fill(args.password ?? '');
    await typed.locator('xpath=ancestor::form').locator('button[type="submit"]').click();
  };
}

// 4. Sign out with samlgate's button and follow the browser wherever the Single Logout takes
//    it; then come back: the IdP must ask again (its session ended too).
async function signOut(context, gatewayOrigin, idp) {
  const so = args.sign_out;
  result.stage = 'open the sign-out page';
  result.sign_out_trail_start = result.trail.length;
  await page.goto(so.logout_url, { waitUntil: 'load' });
  const button = page.getByRole('button', { name: 'Sign out' });
  await button.waitFor({ state: 'visible' });
  result.sign_out_page_title = await page.title();

  result.stage = 'press "Sign out" and follow the browser to the end of the sign-out';
  const ended = page.waitForURL((u) => u.href.startsWith(so.final_url_prefix), { waitUntil: 'load' });
  // Handled here so that a navigation Chromium blocks (ERR_ABORTED) while the click is still
  // pending fails this run with its stage, not node with an unhandled rejection.
  ended.catch(() => {});
  await button.click();
  await ended;
  result.timings_ms.signed_out = ms();
  result.signed_out_url = page.url();
  result.signed_out_title = await page.title();
  result.signed_out_text = await page.locator('body').innerText();
  result.cookies_after_sign_out = (await context.cookies(gatewayOrigin)).map(cookieView);
  mkdirSync(dirname(so.screenshot), { recursive: true });
  await page.screenshot({ path: so.screenshot, fullPage: true });
  result.sign_out_screenshot = so.screenshot;

  result.stage = 'open the protected URL again: the IdP must ask for the sign-in';
  await page.goto(args.start_url, { waitUntil: 'load' });
  const ask = {
    simplesamlphp: 'input[name="password"]',
    devidp: 'input[type="text"][name="username"]',
  }[idp];
  await page.locator(ask).waitFor({ state: 'visible' });
  result.revisit_url = page.url();
  result.revisit_text = (await page.locator('body').innerText()).slice(0, 2000);
}

async function run() {
  const chromiumArgs = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
  ];
  if (args.host_rules) chromiumArgs.push(`--host-rules=${args.host_rules}`);
  if (args.ignore_certificate_errors) chromiumArgs.push('--ignore-certificate-errors');

  // launch() gives Chromium a fresh temporary --user-data-dir and removes it on close.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: chromiumArgs,
    handleSIGTERM: true,
    handleSIGINT: true,
    timeout: 20000,
  });
  result.browser_version = browser.version();
  result.timings_ms.launched = ms();
  log(`Chromium ${result.browser_version} launched`);

  // ignoreHTTPSErrors too: the command-line flag covers navigations, this covers playwright's
  // own checks; both are needed for the self-signed gateway.
  const context = await browser.newContext({
    ignoreHTTPSErrors: !!args.ignore_certificate_errors,
    viewport: { width: 1000, height: 700 },
  });
  page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.setDefaultNavigationTimeout(15000);

  const acsRequests = [];
  page.on('request', (req) => {
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      result.trail.push(`${req.method()} ${req.url()}`);
      if (req.method() === 'POST') {
        const form = new URLSearchParams(req.postData() ?? '');
        const fields = {};
        for (const name of ['SAMLRequest', 'SAMLResponse', 'RelayState']) {
          if (form.has(name)) fields[name] = form.get(name);
        }
        if (fields.SAMLRequest || fields.SAMLResponse) result.saml_posts.push({ url: req.url(), fields });
      }
    }
    if (req.method() === 'POST' && req.url().split('?')[0] === args.acs_url) {
      acsRequests.push(req);
    }
  });
  page.on('response', (resp) => {
    const req = resp.request();
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      const i = result.trail.lastIndexOf(`${req.method()} ${req.url()}`);
      if (i >= 0) result.trail[i] += ` -> ${resp.status()}`;
      const doc = { method: req.method(), url: req.url(), status: resp.status(), csp: null };
      result.documents.push(doc);
      resp
        .headerValue('content-security-policy')
        .then((v) => (doc.csp = v))
        .catch((e) => log(`no headers for ${doc.url}: ${e.message}`));
    }
  });
  page.on('requestfailed', (req) => log(`request failed: ${req.method()} ${req.url()}: ${req.failure()?.errorText}`));
  page.on('response', (resp) => {
    if (resp.status() >= 400) log(`HTTP ${resp.status()} for ${resp.request().method()} ${resp.url()}`);
  });
  page.on('pageerror', (e) => log('page error:', e.message));
  result.csp_violations = [];
  page.on('console', (m) => {
    log(`console.${m.type()} (${m.location()?.url ?? '?'}): ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) result.csp_violations.push(m.text());
  });

  // 1. The protected URL: the gateway redirects to the IdP, which shows its login page.
  result.stage = 'open protected URL';
  await page.goto(args.start_url, { waitUntil: 'load' });
  result.timings_ms.login_form_requested = ms();
  result.stage = 'wait for the IdP login page';
  const idp = args.idp ?? 'simplesamlphp';
  const logins = { simplesamlphp: simpleSamlPhpLogin, devidp: devIdpLogin };
  if (!logins[idp]) throw new Error(`unknown idp ${JSON.stringify(idp)} (simplesamlphp | devidp)`);
  const signIn = await logins[idp]();
  result.idp_login_url = page.url();
  result.idp_login_title = await page.title();
  result.idp_login_text = (await page.locator('body').innerText()).slice(0, 2000);
  if (!page.url().startsWith(args.idp_origin + '/')) {
    throw new Error(`login page is not on the IdP (${args.idp_origin}): ${page.url()}`);
  }
  result.timings_ms.login_form = ms();

  // The pending-login cookie as the browser stored it while the person is at the IdP.
  const gatewayOrigin = new URL(args.start_url).origin;
  result.cookies_at_idp = (await context.cookies(gatewayOrigin)).map(cookieView);

  // 2. Sign in as the user; the IdP answers with a self-submitting form POSTing the
  //    SAMLResponse to the gateway's ACS, which sets the session and redirects back.
  result.stage = `sign in at the IdP (${idp})`;
  const landed = page.waitForURL((u) => u.href === args.final_url, { waitUntil: 'load' });
  landed.catch(() => {}); // see signOut
  await signIn();
  result.stage = 'follow the IdP POST back to the ACS and land on the upstream page';
  await landed;
  result.timings_ms.landed = ms();

  // 3. What the browser shows and keeps.
  result.final_url = page.url();
  result.title = await page.title();
  result.text = await page.locator('body').innerText();
  result.cookies_at_end = (await context.cookies(gatewayOrigin)).map(cookieView);
  result.acs_posts = [];
  for (const req of acsRequests) {
    const headers = await req.allHeaders();
    const resp = await req.response();
    result.acs_posts.push({
      url: req.url(),
      // What the browser actually sent: the cookie names only (values are secrets).
      cookie_names: (headers['cookie'] ?? '')
        .split(';')
        .map((s) => s.trim().split('=')[0])
        .filter(Boolean),
      origin: headers['origin'] ?? null,
      sec_fetch_site: headers['sec-fetch-site'] ?? null,
      status: resp ? resp.status() : null,
      location: resp ? (await resp.allHeaders())['location'] ?? null : null,
    });
  }

  result.stage = 'screenshot';
  mkdirSync(dirname(args.screenshot), { recursive: true });
  await page.screenshot({ path: args.screenshot, fullPage: true });
  result.screenshot = args.screenshot;

  if (args.sign_out) await signOut(context, gatewayOrigin, idp);
  result.timings_ms.done = ms();
  result.stage = 'done';
  result.ok = true;
}

let exitCode = 0;
try {
  await withDeadline(run());
} catch (e) {
  exitCode = 1;
  result.ok = false;
  result.error = String(e?.stack ?? e);
  log('FAILED at stage', result.stage, '-', e?.message ?? e);
  if (page) {
    try {
      result.failure_url = page.url();
      result.failure_text = (await page.locator('body').innerText({ timeout: 2000 })).slice(0, 2000);
    } catch (e2) {
      log('cannot read the page:', e2.message);
    }
    if (args.failure_screenshot) {
      try {
        mkdirSync(dirname(args.failure_screenshot), { recursive: true });
        await page.screenshot({ path: args.failure_screenshot, fullPage: true, timeout: 5000 });
        result.failure_screenshot = args.failure_screenshot;
      } catch (e2) {
        log('failure screenshot failed:', e2.message);
      }
    }
  }
} finally {
  if (browser) {
    try {
      await browser.close();
    } catch (e) {
      log('browser.close failed:', e.message);
    }
  }
  result.timings_ms.total = ms();
  out(result);
}
process.exit(exitCode);
