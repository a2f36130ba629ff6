// The SDK in Node against a real `earshot serve` (bundled model), streaming
// real speech from tests/data/speech (or $EARSHOT_SPEECH_DIR). Runs when EARSHOT_URL points at a server
// (tests/test_js_sdk.py starts one and sets it); skipped otherwise.
import assert from 'node:assert/strict';
import test from 'node:test';
import WebSocket from 'ws';
import { EarshotClient, EarshotError, floatToInt16, resample } from '../src/index.js';
import { SPEECH_DIR, loadClip, speechAvailable } from './_helpers/speech.js';
import { wordErrorRate } from './_helpers/wer.js';

const URL_ = process.env.EARSHOT_URL;
const skip = !URL_
  ? 'EARSHOT_URL is not set (tests/test_js_sdk.py starts a server and sets it)'
  : !speechAvailable()
    ? `no speech clips at ${SPEECH_DIR} (set EARSHOT_SPEECH_DIR)`
    : false;

const WER_BOUND = 0.15; // normalized WER per clip; the base model scores ~0.07 on this set
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Send `samples` in `chunkMs` frames, `speed` times faster than real time (Infinity: no pauses). */
async function stream(client, samples, { rate = 16000, chunkMs = 100, speed = 1, convert = floatToInt16 } = {}) {
  const n = Math.round((rate * chunkMs) / 1000);
  const t0 = Date.now();
  for (let at = 0, k = 1; at < samples.length; at += n, k++) {
    client.sendAudio(convert(samples.subarray(at, at + n)));
    if (Number.isFinite(speed)) {
      const due = t0 + (k * chunkMs) / speed;
      if (due > Date.now()) await sleep(due - Date.now());
    }
  }
}

const silence = (seconds, rate = 16000) => new Float32Array(Math.round(seconds * rate));

function concat(...parts) {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), (at += p.length);
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function collect(client) {
  const out = { finals: [], partials: [], errors: [], ready: [] };
  client.on('final', (f) => out.finals.push(f));
  client.on('partial', (p) => out.partials.push(p));
  client.on('error', (e) => out.errors.push(e));
  client.on('ready', (r) => out.ready.push(r));
  return out;
}

const joined = (finals) => finals.map((f) => f.text).join(' ');

test('live stream at real-time pace: partials, then finals matching the transcript', { skip }, async (t) => {
  const clip = loadClip('jfk_inaugural.wav');
  const client = new EarshotClient({ url: URL_, WebSocket, interimResults: true });
  const got = collect(client);
  const t0 = Date.now();
  await client.connect();
  const connectMs = Date.now() - t0;
  await stream(client, concat(clip.samples, silence(1)), { speed: 1 });
  const tClose = Date.now();
  const closed = await client.close({ timeoutMs: 60000 });
  const drainMs = Date.now() - tClose;
  const wer = wordErrorRate(clip.text, joined(got.finals));
  t.diagnostic(`hypothesis: ${joined(got.finals)}`);
  t.diagnostic(
    `WER ${wer.toFixed(3)}; connect ${connectMs} ms; ${got.partials.length} partials; ` +
      `final latency median ${median(got.finals.map((f) => f.latencyMs))} ms; close drained in ${drainMs} ms`,
  );
  assert.equal(closed.graceful, true);
  assert.deepEqual(got.errors, []);
  assert.ok(got.ready[0].session_id && got.ready[0].model, 'ready names its session and model');
  assert.ok(got.finals.length >= 1);
  assert.deepEqual(got.finals.map((f) => f.utterance), got.finals.map((_, i) => i), 'utterances count 0,1,2,…');
  assert.deepEqual(got.finals.map((f) => f.index), got.finals.map((_, i) => i));
  for (const f of got.finals) {
    assert.ok(f.start <= f.end && f.end <= clip.samples.length / 16000 + 1.01, `final times ${f.start}-${f.end}`);
    assert.equal(f.language, 'en');
  }
  assert.ok(got.partials.length >= 1, 'interim results arrive while speaking');
  assert.ok(wer <= WER_BOUND, `WER ${wer} > ${WER_BOUND}: ${joined(got.finals)}`);
});

test('msgpack, float32 audio at 48 kHz and word timestamps', { skip }, async (t) => {
  const clip = loadClip('librispeech_1995-1837-0001.wav');
  const audio48k = resample(clip.samples, clip.sampleRate, 48000);
  const client = new EarshotClient({
    url: URL_,
    WebSocket,
    sampleRate: 48000,
    encoding: 'pcm_f32le',
    format: 'msgpack',
    wordTimestamps: true,
  });
  const got = collect(client);
  await client.connect();
  await stream(client, concat(audio48k, silence(1, 48000)), { rate: 48000, speed: 8, convert: (x) => x });
  await client.close({ timeoutMs: 60000 });
  const wer = wordErrorRate(clip.text, joined(got.finals));
  t.diagnostic(`WER ${wer.toFixed(3)}: ${joined(got.finals)}`);
  assert.deepEqual(got.errors, []);
  assert.ok(wer <= WER_BOUND, `WER ${wer}: ${joined(got.finals)}`);
  const words = got.finals.flatMap((f) => f.words);
  assert.ok(words.length >= 10, 'word timestamps present');
  for (const w of words) {
    assert.equal(typeof w.word, 'string');
    assert.ok(w.start <= w.end && w.probability >= 0 && w.probability <= 1, JSON.stringify(w));
  }
  assert.ok(words.every((w, i) => i === 0 || w.start >= words[i - 1].start - 0.05), 'words in time order');
});

test('finalize() ends the utterance mid-speech at once', { skip }, async (t) => {
  const clip = loadClip('jfk_inaugural.wav');
  const client = new EarshotClient({ url: URL_, WebSocket });
  await client.connect();
  // Cut inside "...fellow Americans" (speech runs to 2.44 s without a pause), so only
  // finalize() can end the utterance; listen before sending, whatever the timing.
  const next = client.once('final');
  await stream(client, clip.samples.subarray(0, Math.round(2.2 * 16000)), { speed: 4 });
  const t0 = Date.now();
  client.finalize();
  const final = await next;
  t.diagnostic(`final ${Date.now() - t0} ms after finalize: ${final.text}`);
  assert.match(final.text.toLowerCase(), /fellow americ/);
  assert.ok(final.end <= 2.3, `final ends at ${final.end}`);
  await client.close({ timeoutMs: 60000 });
});

test('reconnect: a connection killed mid-stream loses no final and repeats none', { skip }, async (t) => {
  const first = loadClip('cmuarctic_a0024.wav');
  const second = loadClip('fleurs_en-004.wav');
  const client = new EarshotClient({ url: URL_, WebSocket, reconnect: { initialDelayMs: 100 } });
  const got = collect(client);
  const reconnecting = [];
  client.on('reconnecting', (e) => reconnecting.push(e));
  await client.connect();
  await stream(client, concat(first.samples, silence(1.5)), { speed: 4 });
  const firstFinal = await (got.finals.length ? got.finals[0] : client.once('final'));
  // More audio the server may or may not have seen when the connection dies.
  await stream(client, concat(silence(0.3), second.samples.subarray(0, 16000)), { speed: 4 });
  client._socket._socket.destroy(); // kill the TCP connection under ws: an abnormal close
  await stream(client, concat(second.samples.subarray(16000), silence(1)), { speed: 4 });
  await client.close({ timeoutMs: 60000 });
  const texts = got.finals.map((f) => `${f.index}/${f.session}: ${f.text}`);
  t.diagnostic(texts.join(' | '));
  assert.ok(reconnecting.length >= 1 && got.ready.some((r) => r.resumed), 'it did reconnect');
  assert.deepEqual(got.errors.filter((e) => e.fatal), []);
  assert.equal(firstFinal.index, 0);
  assert.deepEqual(got.finals.map((f) => f.index), got.finals.map((_, i) => i), 'indexes 0,1,2,… with no repeat');
  const werFirst = wordErrorRate(first.text, got.finals[0].text);
  const werAll = wordErrorRate(`${first.text} ${second.text}`, joined(got.finals));
  t.diagnostic(`WER first ${werFirst.toFixed(3)}, all ${werAll.toFixed(3)}`);
  assert.ok(werFirst <= WER_BOUND, `first: ${got.finals[0].text}`);
  assert.ok(werAll <= WER_BOUND, `all: ${joined(got.finals)} (a duplicate or a loss shows here)`);
  assert.ok(got.finals.some((f) => f.session >= 1), 'later words came from the new session');
});

test('an invalid parameter is refused at the handshake with HTTP 400 naming it', { skip }, async () => {
  const client = new EarshotClient({ url: URL_, WebSocket, params: { sample_rate: 1234 } });
  await assert.rejects(client.connect(), (e) => {
    assert.ok(e instanceof EarshotError);
    assert.equal(e.code, 'handshake_failed');
    assert.equal(e.status, 400);
    assert.match(e.body, /sample_rate/);
    return true;
  });
});
