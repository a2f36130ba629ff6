import assert from 'node:assert/strict';
import test from 'node:test';
import { encode } from '@msgpack/msgpack';
import { EarshotClient } from '../src/client.js';
import {
  LIMITS,
  ProtocolError,
  buildListenUrl,
  controlMessage,
  loadMsgpackDecoder,
  parseServerMessage,
} from '../src/messages.js';

const FINAL = { type: 'final', utterance: 3, start: 1.25, end: 2.5, text: 'hello world', language: 'en' };

test('listen URL: path, scheme and every option as its query parameter', () => {
  const url = new URL(
    buildListenUrl('http://localhost:8000', {
      sampleRate: 48000,
      encoding: 'pcm_f32le',
      language: 'de',
      interimResults: false,
      wordTimestamps: true,
      format: 'msgpack',
      endpointingMs: 300,
      maxUtteranceS: 10,
      prompt: 'Earshot, Whisper',
      token: 'tok en',
    }),
  );
  assert.equal(url.protocol, 'ws:');
  assert.equal(url.pathname, '/v1/listen');
  assert.deepEqual(Object.fromEntries(url.searchParams), {
    sample_rate: '48000',
    encoding: 'pcm_f32le',
    language: 'de',
    interim_results: 'false',
    word_timestamps: 'true',
    format: 'msgpack',
    endpointing_ms: '300',
    max_utterance_s: '10',
    prompt: 'Earshot, Whisper',
    token: 'tok en',
  });
});

test('listen URL: defaults are left to the server; explicit paths and wss kept; extras appended', () => {
  assert.equal(buildListenUrl('wss://x.example/v1/listen'), 'wss://x.example/v1/listen');
  assert.equal(buildListenUrl('https://x.example/'), 'wss://x.example/v1/listen');
  assert.equal(buildListenUrl('ws://h:1', {}, { beta: 1, skip: undefined }), 'ws://h:1/v1/listen?beta=1');
});

test('listen URL: invalid options are refused before connecting', () => {
  assert.throws(() => buildListenUrl('localhost:8000'), TypeError);
  assert.throws(() => buildListenUrl('ftp://h'), TypeError);
  assert.throws(() => buildListenUrl('ws://h', { sampleRate: 96000 }), /sampleRate/);
  assert.throws(() => buildListenUrl('ws://h', { encoding: 'mp3' }), /encoding/);
  assert.throws(() => buildListenUrl('ws://h', { format: 'xml' }), /format/);
  assert.throws(() => buildListenUrl('ws://h', { language: 'English' }), /language/);
  assert.throws(() => buildListenUrl('ws://h', { interimResults: 'yes' }), /interimResults/);
});

// The server's limits (server/earshot/protocol.py, endpointing.py): what it would refuse
// with 400 is refused here, and its extremes are accepted.
test('listen URL: option ranges are the server\'s', () => {
  const url = (options) => new URL(buildListenUrl('ws://h', options)).searchParams;
  assert.deepEqual(LIMITS.endpointingMs, [100, 10000]);
  assert.deepEqual(LIMITS.maxUtteranceS, [1, 29]);
  for (const ok of [100, 500, 10000]) assert.equal(url({ endpointingMs: ok }).get('endpointing_ms'), String(ok));
  for (const bad of [0, 99, 10001, 250.5, NaN, '300']) {
    assert.throws(() => buildListenUrl('ws://h', { endpointingMs: bad }), /endpointingMs must be an integer from 100 to 10000/);
  }
  for (const ok of [1, 7.5, 29]) assert.equal(url({ maxUtteranceS: ok }).get('max_utterance_s'), String(ok));
  for (const bad of [0, 0.5, 29.5, 60, -1, NaN, Infinity, '10']) {
    assert.throws(() => buildListenUrl('ws://h', { maxUtteranceS: bad }), /maxUtteranceS must be a number from 1 to 29/);
  }
  for (const ok of [8000, 48000]) assert.equal(url({ sampleRate: ok }).get('sample_rate'), String(ok));
  for (const bad of [7999, 48001, 16000.5]) assert.throws(() => buildListenUrl('ws://h', { sampleRate: bad }), /sampleRate/);
  assert.equal(url({ prompt: 'é'.repeat(1000) }).get('prompt'), 'é'.repeat(1000));
  assert.equal(url({ prompt: '🎙'.repeat(1000) }).get('prompt'), '🎙'.repeat(1000)); // characters, not UTF-16 units
  assert.throws(() => buildListenUrl('ws://h', { prompt: 'x'.repeat(1001) }), /prompt must be a string of at most 1000 characters/);
});

test('client options are checked when the client is made, not at the first connect', () => {
  assert.throws(() => new EarshotClient({ url: 'ws://h', WebSocket: class {}, endpointingMs: 50 }), RangeError);
  assert.throws(() => new EarshotClient({ url: 'ws://h', WebSocket: class {}, maxUtteranceS: 30 }), RangeError);
});

test('control messages', () => {
  assert.equal(controlMessage('finalize'), '{"type":"finalize"}');
  assert.equal(controlMessage('close_stream'), '{"type":"close_stream"}');
  assert.equal(controlMessage('keepalive'), '{"type":"keepalive"}');
  assert.throws(() => controlMessage('flush'), RangeError);
});

test('json: every message type parses; final gets words: [] when absent', () => {
  const msgs = [
    { type: 'ready', session_id: 'abc', sample_rate: 16000, model: 'base', extra: 1 },
    { type: 'speech_started', utterance: 0, start: 0.5 },
    { type: 'partial', utterance: 0, start: 0.5, end: 1, text: 'hel' },
    FINAL,
    { type: 'error', code: 'bad_audio', message: 'odd length' },
    { type: 'closed' },
  ];
  for (const m of msgs) assert.deepEqual(parseServerMessage(JSON.stringify(m)), m.type === 'final' ? { ...m, words: [] } : m);
  const words = [{ word: 'hello', start: 1.25, end: 1.6, probability: 0.9 }];
  assert.deepEqual(parseServerMessage(JSON.stringify({ ...FINAL, words })).words, words);
});

test('msgpack: binary frames decode to the same messages (ArrayBuffer, Uint8Array, Buffer)', async () => {
  const decode = await loadMsgpackDecoder();
  const bytes = encode(FINAL);
  const expected = { ...FINAL, words: [] };
  assert.deepEqual(parseServerMessage(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), decode), expected);
  assert.deepEqual(parseServerMessage(bytes, decode), expected);
  assert.deepEqual(parseServerMessage(Buffer.from(bytes), decode), expected);
  // A view into a larger buffer decodes only its own bytes.
  const padded = new Uint8Array(bytes.length + 8);
  padded.set(bytes, 4);
  assert.deepEqual(parseServerMessage(padded.subarray(4, 4 + bytes.length), decode), expected);
});

test('unknown message types pass through (the protocol may grow)', () => {
  assert.deepEqual(parseServerMessage('{"type":"metrics","rtf":0.2}'), { type: 'metrics', rtf: 0.2 });
});

test('malformed messages are ProtocolErrors', async () => {
  const decode = await loadMsgpackDecoder();
  const bad = [
    'not json',
    '[1,2]',
    '{"text":"no type"}',
    '{"type":"final","utterance":-1,"start":0,"end":1,"text":""}',
    '{"type":"final","utterance":0,"start":"0","end":1,"text":""}',
    '{"type":"partial","utterance":0,"start":0,"end":1}',
    '{"type":"ready"}',
    '{"type":"error","code":"x"}',
  ];
  for (const b of bad) assert.throws(() => parseServerMessage(b), ProtocolError, b);
  assert.throws(() => parseServerMessage(new Uint8Array([0xc1]), decode), ProtocolError);
  assert.throws(() => parseServerMessage(encode({ type: 'closed' })), /not msgpack/);
  assert.throws(() => parseServerMessage(42), ProtocolError);
});
