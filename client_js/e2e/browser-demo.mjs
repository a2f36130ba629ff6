#!/usr/bin/env node
// Drives the demo page in headless Chromium (playwright-core, the system's
// chromium; nothing downloaded): a fake microphone plays a WAV file, we press
// Start, wait while it "speaks", press Stop, then stream a file through the
// drop-zone's file input. Prints one JSON object with what the page showed;
// the assertions live in tests/test_browser_demo.py.
//
//   node e2e/browser-demo.mjs --url http://127.0.0.1:8000/ --mic-wav padded.wav \
//     --listen-seconds 9 --file clip.wav --screenshots ../artifacts

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    'mic-wav': { type: 'string' },
    'listen-seconds': { type: 'string', default: '10' },
    file: { type: 'string' },
    'file-speed': { type: 'string', default: '4' },
    screenshots: { type: 'string', default: 'artifacts' },
    chromium: { type: 'string', default: process.env.CHROMIUM_PATH || '/usr/bin/chromium' },
    // A safety net only: every wait below ends on a state the page reaches by itself.
    timeout: { type: 'string', default: '600' },
  },
});
if (!args.url || !args['mic-wav']) {
  console.error('usage: browser-demo.mjs --url URL --mic-wav FILE [--file FILE] [--screenshots DIR]');
  process.exit(2);
}
const timeoutMs = Number(args.timeout) * 1000;
const shots = resolve(args.screenshots);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  timeout: 60000,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-ui-for-media-stream', // grant the microphone without a prompt
    '--use-fake-device-for-media-stream',
    // %noloop: play the file once, then silence (Chromium loops it otherwise)
    `--use-file-for-fake-audio-capture=${resolve(args['mic-wav'])}%noloop`,
    '--autoplay-policy=no-user-gesture-required',
  ],
});

const result = { mic: null, file: null, console: [] };
try {
  const context = await browser.newContext({ viewport: { width: 960, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(timeoutMs);
  page.on('console', (m) => (m.type() === 'error' || m.type() === 'warning') && result.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`));
  const demoState = () => page.evaluate(() => JSON.parse(JSON.stringify(window.earshotDemo)));

  // ---- microphone mode
  await page.goto(args.url);
  await page.waitForSelector('#start:not([disabled])');
  // Note the first partial the moment the page shows it: a final may hide it again a
  // moment later, so polling for the visible element can miss it on a slow machine.
  await page.evaluate(() => {
    const el = document.querySelector('#partial');
    const text = el.querySelector('.text');
    window.firstPartialView = null;
    new MutationObserver(() => {
      if (window.firstPartialView || el.hidden || !text.textContent) return;
      const style = getComputedStyle(text);
      window.firstPartialView = { text: text.textContent, fontStyle: style.fontStyle, color: style.color };
    }).observe(el, { attributes: true, childList: true, subtree: true, characterData: true });
  });
  const t0 = Date.now();
  await page.click('#start');
  await page.waitForFunction(() => window.earshotDemo.state === 'open' || window.earshotDemo.errors.length > 0);
  const openMs = Date.now() - t0;
  // While speaking: provisional text is on screen (or the utterance already ended).
  await page.waitForFunction(
    () => window.firstPartialView || window.earshotDemo.finals.length > 0 || window.earshotDemo.errors.length > 0,
    null,
    { polling: 'raf' },
  );
  await page.screenshot({ path: join(shots, 'browser-demo-partial.png'), fullPage: true });
  const listen = Number(args['listen-seconds']);
  // Until the fake microphone has played the speech and the pause after it, and the text is final.
  await page.waitForFunction(
    (s) => window.earshotDemo.errors.length > 0 || (window.earshotDemo.sentSeconds >= s && window.earshotDemo.finals.some((f) => f.text.trim())),
    listen,
    { polling: 100 },
  );
  const live = await demoState();
  await page.screenshot({ path: join(shots, 'browser-demo-mic.png'), fullPage: true });
  await page.click('#start'); // Stop: the SDK closes gracefully and the last final arrives
  await page.waitForFunction(() => ['closed', 'error'].includes(window.earshotDemo.state) && !document.querySelector('#start').disabled);
  const after = await demoState();
  result.mic = {
    openMs,
    finalsBeforeStop: live.finals,
    finals: after.finals,
    partials: after.partials,
    partialView: await page.evaluate(() => window.firstPartialView),
    sentSeconds: after.sentSeconds,
    micRate: after.micRate,
    peakDbfs: after.peakDbfs,
    errors: after.errors,
    state: after.state,
    domFinals: await page.$$eval('#finals .final .text', (els) => els.map((e) => e.textContent)),
    screenshot: join(shots, 'browser-demo-mic.png'),
  };

  // ---- file mode: the file input of the drop zone, streamed at --file-speed
  if (args.file) {
    await page.reload();
    await page.waitForSelector('#start:not([disabled])');
    await page.selectOption('#speed', args['file-speed']);
    const f0 = Date.now();
    await page.setInputFiles('#file', resolve(args.file));
    // From 'idle' (fresh page) through open and closing to closed: the whole file was streamed.
    await page.waitForFunction(() => ['closed', 'error'].includes(window.earshotDemo.state) && !document.querySelector('#start').disabled);
    const done = await demoState();
    await page.screenshot({ path: join(shots, 'browser-demo-file.png'), fullPage: true });
    result.file = {
      elapsedMs: Date.now() - f0,
      finals: done.finals,
      partials: done.partials,
      sentSeconds: done.sentSeconds,
      errors: done.errors,
      state: done.state,
      domFinals: await page.$$eval('#finals .final .text', (els) => els.map((e) => e.textContent)),
      screenshot: join(shots, 'browser-demo-file.png'),
    };
  }

  // ---- microphone failures must end in a clear message, not a hang
  result.failures = {};
  const cases = {
    // The user (or policy) refuses the microphone.
    denied: () => {
      navigator.mediaDevices.getUserMedia = async () => {
        throw new DOMException('Permission denied', 'NotAllowedError');
      };
    },
    // The device disappears mid-stream: its track ends.
    lost: () => {
      const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = async (c) => (window.__micStream = await real(c));
    },
  };
  for (const [name, script] of Object.entries(cases)) {
    const p = await context.newPage();
    p.setDefaultTimeout(timeoutMs);
    await p.addInitScript(script);
    await p.goto(args.url);
    await p.waitForSelector('#start:not([disabled])');
    await p.click('#start');
    if (name === 'lost') {
      await p.waitForFunction(() => window.earshotDemo.state === 'open' && window.earshotDemo.sentSeconds > 0.5);
      await p.evaluate(() => window.__micStream.getAudioTracks()[0].dispatchEvent(new Event('ended')));
    }
    await p.waitForSelector('#error:not([hidden])');
    await p.waitForFunction(() => !document.querySelector('#start').disabled && document.querySelector('#start').textContent.startsWith('Start'));
    result.failures[name] = {
      error: await p.textContent('#error'),
      state: await p.evaluate(() => window.earshotDemo.state),
      button: await p.textContent('#start'),
    };
    if (name === 'denied') await p.screenshot({ path: join(shots, 'browser-demo-denied.png') });
    await p.close();
  }
} catch (e) {
  result.failure = String(e?.stack ?? e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.failure ? 1 : 0);
