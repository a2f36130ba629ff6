// The client against an in-process fake server: handshake, framing, events,
// graceful close, and the reconnection guarantee (no final lost or repeated).
import assert from 'node:assert/strict';
import test from 'node:test';
import { encode } from '@msgpack/msgpack';
import { EarshotClient, EarshotError, connect } from '../src/index.js';
import { FakeSocket, ramp, until } from './_helpers/fake-socket.js';

const URL_ = 'ws://earshot.test:8000';
const fast = { initialDelayMs: 1, maxDelayMs: 5, overloadedDelayMs: 1 };

function client(options = {}) {
  FakeSocket.reset();
  return new EarshotClient({ url: URL_, WebSocket: FakeSocket, keepaliveMs: 0, ...options });
}

async function connected(options) {
  const c = client(options);
  const p = c.connect();
  await until(() => FakeSocket.instances.length === 1);
  FakeSocket.instances[0].accept();
  await p;
  return [c, FakeSocket.instances[0]];
}

const final = (utterance, start, end, text) => ({ type: 'final', utterance, start, end, text, language: 'en' });

test('connect: handshake URL from options, resolves on ready, state goes connecting → open', async () => {
  const c = client({ language: 'en', wordTimestamps: true, endpointingMs: 300, token: 't1' });
  const states = [];
  c.on('state', (e) => states.push(e.state));
  const p = c.connect();
  await until(() => FakeSocket.instances.length === 1);
  const sock = FakeSocket.instances[0];
  assert.deepEqual(sock.params, {
    sample_rate: '16000',
    encoding: 'pcm_s16le',
    format: 'json',
    language: 'en',
    word_timestamps: 'true',
    endpointing_ms: '300',
    token: 't1',
  });
  assert.equal(new URL(sock.url).pathname, '/v1/listen');
  assert.equal(sock.binaryType, 'arraybuffer');
  sock.accept();
  assert.equal(await p, c);
  assert.equal(c.sessionId, 's0');
  assert.deepEqual(states, ['connecting', 'open']);
});

test('no WebSocket implementation is a clear error', () => {
  assert.throws(() => new EarshotClient({ url: URL_, WebSocket: undefined }), /WebSocket/);
  assert.throws(() => new EarshotClient({}), /url/);
  assert.throws(() => new EarshotClient({ url: URL_, WebSocket: FakeSocket, sampleRate: 4000 }), /sampleRate/);
});

test('audio sent before ready is held, then sent in order; frames hold at most 1 s', async () => {
  const c = client();
  c.sendAudio(ramp(0, 100)); // before connect()
  const p = c.connect();
  await until(() => FakeSocket.instances.length === 1);
  const sock = FakeSocket.instances[0];
  c.sendAudio(ramp(100, 24000)); // while connecting: 1.5 s in one call
  assert.equal(sock.sent.length, 0);
  sock.accept();
  await p;
  c.sendAudio(new Float32Array([0.5, -0.5]));
  assert.deepEqual(sock.sequence(), ['a100', 'a16000', 'a8000', 'a2']);
  const got = sock.samples();
  assert.deepEqual([...got.subarray(0, 24100)], [...ramp(0, 24100)]);
  assert.deepEqual([...got.subarray(24100)], [16384, -16384]);
});

test('events and async iteration see server messages in order, enriched; close() is graceful', async () => {
  const [c, sock] = await connected();
  const seen = [];
  const iterated = (async () => {
    for await (const ev of c) seen.push(ev.type === 'final' ? `${ev.type}:${ev.index}:${ev.text}` : ev.type);
  })();
  const finals = [];
  c.on('final', (f) => finals.push(f));
  c.sendAudio(ramp(0, 16000));
  sock.message({ type: 'speech_started', utterance: 0, start: 0.1 });
  sock.message({ type: 'partial', utterance: 0, start: 0.1, end: 0.6, text: 'hel' });
  sock.message({ ...final(0, 0.1, 0.9, 'hello'), words: [{ word: 'hello', start: 0.1, end: 0.9, probability: 0.9 }] });
  const closing = c.close();
  assert.equal(c.state, 'closing');
  assert.deepEqual(sock.controls(), ['close_stream']);
  assert.throws(() => c.sendAudio(ramp(0, 10)), EarshotError);
  sock.message(final(1, 1.2, 1.5, 'world'));
  sock.message({ type: 'closed' });
  const closed = await closing;
  await iterated;
  assert.equal(closed.graceful, true);
  assert.equal(c.state, 'closed');
  assert.deepEqual(seen, ['speech_started', 'partial', 'final:0:hello', 'final:1:world', 'closed']);
  assert.deepEqual(finals[0].words.map((w) => w.word), ['hello']);
  assert.equal(finals[0].streamStart, 0.1);
  assert.equal(typeof finals[0].latencyMs, 'number');
  assert.deepEqual(await c.close(), closed); // idempotent
});

test('finalize sends the control message; keepalive goes out when idle', async () => {
  const [c, sock] = await connected({ keepaliveMs: 20 });
  c.finalize();
  assert.deepEqual(sock.controls(), ['finalize']);
  await until(() => sock.controls().includes('keepalive'), 1000);
  c.terminate();
  assert.equal(c.state, 'closed');
});

test('msgpack format: binary server frames are decoded', async () => {
  const [c, sock] = await connected({ format: 'msgpack' });
  assert.equal(sock.params.format, 'msgpack');
  const got = c.once('final');
  sock.binary(encode(final(0, 0, 1, 'packed')));
  assert.equal((await got).text, 'packed');
  c.terminate();
});

test('a malformed server message is reported, not fatal', async () => {
  const [c, sock] = await connected();
  const err = c.once('error');
  sock.message({ type: 'final', utterance: 'x' });
  assert.equal((await err).code, 'protocol_error');
  assert.equal(c.state, 'open');
  c.terminate();
});

test('reconnect: replays exactly the audio after the last final; indexes continue; duplicates dropped', async () => {
  const [c, s1] = await connected({ reconnect: fast });
  const finals = [];
  const events = [];
  c.on('final', (f) => finals.push(f));
  c.on('*', (e) => events.push(e.type));
  c.sendAudio(ramp(0, 32000)); // 2 s
  s1.message(final(0, 0.2, 0.5, 'one')); // covers the stream up to sample 8000
  s1.drop(1006);
  assert.equal(c.state, 'reconnecting');
  c.sendAudio(ramp(32000, 1600)); // audio keeps coming while disconnected
  await until(() => FakeSocket.instances.length === 2);
  const s2 = FakeSocket.instances[1];
  s2.accept();
  await until(() => c.state === 'open');
  // The new session got stream samples 8000..33600, nothing before, nothing twice.
  assert.deepEqual([...s2.samples()], [...ramp(8000, 25600)]);
  // Its clock starts at stream time 0.5 s; its utterance 0 is the client's index 1.
  s2.message({ type: 'partial', utterance: 0, start: 0.1, end: 0.4, text: 'tw' });
  s2.message(final(0, 0.1, 0.6, 'two'));
  s2.message(final(0, 0.1, 0.6, 'two')); // a duplicate must not be delivered
  s2.message(final(1, 0.9, 1.2, 'three'));
  assert.deepEqual(finals.map((f) => [f.index, f.utterance, f.session, f.text]), [
    [0, 0, 0, 'one'],
    [1, 0, 1, 'two'],
    [2, 1, 1, 'three'],
  ]);
  assert.ok(Math.abs(finals[1].streamStart - 0.6) < 1e-9);
  assert.ok(Math.abs(finals[2].streamEnd - 1.7) < 1e-9);
  assert.ok(events.includes('reconnecting'));
  assert.equal(c.stats.reconnects, 1);
  c.terminate();
});

test('reconnect: a final the old session never delivered comes from the new one (not lost)', async () => {
  const [c, s1] = await connected({ reconnect: fast });
  const texts = [];
  c.on('final', (f) => texts.push(`${f.index}:${f.text}`));
  c.sendAudio(ramp(0, 16000));
  s1.drop(1011); // the server died before finalizing anything
  await until(() => FakeSocket.instances.length === 2);
  const s2 = FakeSocket.instances[1];
  s2.accept();
  await until(() => c.state === 'open');
  assert.equal(s2.samples().length, 16000);
  s2.message(final(0, 0, 1, 'all of it'));
  assert.deepEqual(texts, ['0:all of it']);
  c.terminate();
});

test('reconnect: finalize requests are replayed at their stream positions', async () => {
  const [c, s1] = await connected({ reconnect: fast });
  c.sendAudio(ramp(0, 800));
  c.finalize();
  c.sendAudio(ramp(800, 800));
  s1.drop(1006);
  await until(() => FakeSocket.instances.length === 2);
  FakeSocket.instances[1].accept();
  await until(() => c.state === 'open');
  assert.deepEqual(FakeSocket.instances[1].sequence(), ['a800', 'finalize', 'a800']);
  c.terminate();
});

test('close() while reconnecting: the new session gets the replay, then close_stream', async () => {
  const [c, s1] = await connected({ reconnect: fast });
  c.sendAudio(ramp(0, 1600));
  s1.drop(1001);
  const closing = c.close();
  await until(() => FakeSocket.instances.length === 2);
  const s2 = FakeSocket.instances[1];
  s2.accept();
  await until(() => s2.controls().includes('close_stream'));
  assert.deepEqual(s2.sequence(), ['a1600', 'close_stream']);
  assert.equal(c.state, 'closing');
  s2.message(final(0, 0, 0.1, 'last words'));
  s2.message({ type: 'closed' });
  const closed = await closing;
  assert.equal(closed.graceful, true);
  assert.equal(c.stats.finals, 1);
});

test('1013 on the first session is retried with backoff; connect resolves on the next ready', async () => {
  const c = client({ reconnect: fast });
  const p = c.connect();
  await until(() => FakeSocket.instances.length === 1);
  FakeSocket.instances[0].open();
  FakeSocket.instances[0].drop(1013, 'overloaded');
  await until(() => FakeSocket.instances.length === 2);
  FakeSocket.instances[1].accept();
  await p;
  assert.equal(c.state, 'open');
  assert.equal(c.session, 0); // the refused socket never became a session
  c.terminate();
});

test('a first connect that cannot open fails at once, even with reconnect on', async () => {
  const c = client({ reconnect: fast });
  const p = c.connect();
  await until(() => FakeSocket.instances.length === 1);
  FakeSocket.instances[0].refuse();
  await assert.rejects(p, (e) => e instanceof EarshotError && e.code === 'handshake_failed');
  assert.equal(FakeSocket.instances.length, 1);
  assert.equal(c.state, 'closed');
});

test('policy close (1008) is not retried: fatal error, then closed', async () => {
  const [c, s1] = await connected({ reconnect: fast });
  const errors = [];
  c.on('error', (e) => errors.push(e));
  const closed = c.once('closed');
  s1.drop(1008, 'token expired');
  const ev = await closed;
  assert.equal(ev.graceful, false);
  assert.equal(ev.error.code, 'connection_closed');
  assert.equal(errors[0].fatal, true);
  assert.equal(errors[0].closeCode, 1008);
  assert.equal(FakeSocket.instances.length, 1);
});

test('without reconnect, an abnormal close ends the stream and rejects close()', async () => {
  const [c, s1] = await connected();
  const closing = c.close();
  s1.drop(1006);
  await assert.rejects(closing, (e) => e.code === 'connection_closed' && e.closeCode === 1006);
});

test('reconnect gives up after maxRetries failed attempts', async () => {
  const [c, s1] = await connected({ reconnect: { ...fast, maxRetries: 2 } });
  const attempts = [];
  c.on('reconnecting', (e) => attempts.push(e.attempt));
  const closed = c.once('closed');
  s1.drop(1006);
  await until(() => FakeSocket.instances.length === 2);
  FakeSocket.instances[1].refuse();
  await until(() => FakeSocket.instances.length === 3);
  FakeSocket.instances[2].refuse();
  const ev = await closed;
  assert.deepEqual(attempts, [1, 2]);
  assert.equal(ev.error.code, 'handshake_failed');
});

test('replay bound: audio beyond maxReplaySeconds is reported as a gap', async () => {
  const [c, s1] = await connected({ reconnect: { ...fast, maxReplaySeconds: 1 } });
  const gaps = [];
  c.on('gap', (g) => gaps.push(g));
  c.sendAudio(ramp(0, 48000)); // 3 s, none finalized
  s1.drop(1006);
  await until(() => FakeSocket.instances.length === 2);
  FakeSocket.instances[1].accept();
  await until(() => c.state === 'open');
  assert.deepEqual(gaps.map((g) => [g.streamStart, g.streamEnd, g.lostSeconds]), [[0, 2, 2]]);
  assert.equal(FakeSocket.instances[1].samples().length, 16000);
  c.terminate();
});

test('token functions are called for every connection', async () => {
  let n = 0;
  const [c, s1] = await connected({ reconnect: fast, token: async () => `t${n++}` });
  assert.equal(s1.params.token, 't0');
  s1.drop(1006);
  await until(() => FakeSocket.instances.length === 2);
  assert.equal(FakeSocket.instances[1].params.token, 't1');
  c.terminate();
});

test('close timeout rejects and ends the stream', async () => {
  const [c] = await connected();
  await assert.rejects(c.close({ timeoutMs: 20 }), (e) => e.code === 'close_timeout');
  assert.equal(c.state, 'closed');
});

test('connect() helper and terminate() during connect', async () => {
  FakeSocket.reset();
  const p = connect({ url: URL_, WebSocket: FakeSocket, keepaliveMs: 0 });
  await until(() => FakeSocket.instances.length === 1);
  FakeSocket.instances[0].accept();
  const c = await p;
  assert.equal(c.state, 'open');
  c.terminate();
  const d = client();
  const q = d.connect();
  await until(() => FakeSocket.instances.length === 1);
  d.terminate();
  await assert.rejects(q, EarshotError);
});
