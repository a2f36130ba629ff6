import assert from 'node:assert/strict';
import test from 'node:test';
import { AudioLedger, FinalSequencer, backoffDelay, isRetryableClose } from '../src/reconnect.js';

test('which close codes are retried', () => {
  for (const c of [1001, 1006, 1011, 1012, 1013]) assert.ok(isRetryableClose(c), String(c));
  for (const c of [1000, 1002, 1003, 1007, 1008, 1009, 4000]) assert.ok(!isRetryableClose(c), String(c));
});

test('backoff grows exponentially, is capped, jittered, and waits longer when overloaded', () => {
  const mid = () => 0.5;
  const opts = { initialDelayMs: 100, maxDelayMs: 1000, jitter: 0 };
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, opts, 1006, mid)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(backoffDelay(0, { ...opts, jitter: 0.5 }, 1006, () => 0), 50);
  assert.equal(backoffDelay(0, { ...opts, jitter: 0.5 }, 1006, () => 1), 100);
  assert.equal(backoffDelay(0, { ...opts, overloadedDelayMs: 700 }, 1013, mid), 700);
  assert.equal(backoffDelay(0, { ...opts, jitter: 0.5, overloadedDelayMs: 700 }, 1013, () => 0), 700);
  assert.equal(backoffDelay(4, { ...opts, overloadedDelayMs: 700 }, 1013, mid), 1000);
});

const bytes = (samples) => new Uint8Array(samples * 2);

test('ledger keeps audio after the last final, cutting inside a chunk', () => {
  const l = new AudioLedger({ sampleRate: 16000, bytesPerSample: 2 });
  l.append(bytes(1600), 1000);
  l.append(bytes(1600), 1100);
  l.append(bytes(1600), 1200);
  assert.equal(l.totalSamples, 4800);
  l.acknowledge(2000); // a final ended 125 ms into the second chunk
  assert.equal(l.replayFrom, 2000);
  assert.deepEqual(l.replayEntries().map((e) => e.bytes.length / 2), [1200, 1600]);
  assert.equal(l.heldSamples, 2800);
  // Acknowledging backwards or beyond the end is harmless.
  l.acknowledge(100);
  l.acknowledge(99999);
  assert.equal(l.heldSamples, 0);
  assert.deepEqual(l.replayEntries(), []);
  assert.equal(l.takeGap(), null);
});

test('ledger replays finalize marks at their positions and forgets covered ones', () => {
  const l = new AudioLedger({ sampleRate: 16000, bytesPerSample: 2 });
  l.append(bytes(100));
  l.markFinalize(); // at 100
  l.append(bytes(100));
  l.markFinalize(); // at 200
  const shape = () => l.replayEntries().map((e) => (e.finalize ? 'F' : e.bytes.length / 2));
  assert.deepEqual(shape(), [100, 'F', 100, 'F']);
  l.acknowledge(100); // the first finalize produced a final ending at 100
  assert.deepEqual(shape(), [100, 'F']);
  l.acknowledge(200);
  assert.deepEqual(shape(), []);
});

test('ledger bound drops the oldest audio and reports the gap once', () => {
  const l = new AudioLedger({ sampleRate: 100, bytesPerSample: 2, maxReplaySeconds: 1 });
  for (let i = 0; i < 5; i++) l.append(bytes(50)); // 250 samples, bound 100
  assert.equal(l.heldSamples, 100);
  assert.equal(l.replayFrom, 150);
  assert.deepEqual(l.takeGap(), { from: 0, to: 150 });
  assert.equal(l.takeGap(), null);
  // Finals that arrive for dropped audio cover it: no gap to report.
  const m = new AudioLedger({ sampleRate: 100, bytesPerSample: 2, maxReplaySeconds: 1 });
  for (let i = 0; i < 5; i++) m.append(bytes(50));
  m.acknowledge(180);
  assert.equal(m.takeGap(), null);
  assert.equal(m.replayFrom, 180);
});

test('ledger maps stream samples to the time their audio was sent', () => {
  const l = new AudioLedger({ sampleRate: 16000, bytesPerSample: 2 });
  l.append(bytes(800), 10);
  l.append(bytes(800), 20);
  assert.equal(l.sentAt(0), 10);
  assert.equal(l.sentAt(799), 10);
  assert.equal(l.sentAt(800), 20);
  assert.equal(l.sentAt(1600), 20); // the end of the stream
  l.acknowledge(900);
  assert.equal(l.sentAt(100), undefined);
});

test('final indexes continue across sessions; duplicates are refused', () => {
  const s = new FinalSequencer();
  s.startSession(0);
  assert.ok(s.acceptFinal(0));
  assert.ok(s.acceptFinal(1));
  assert.ok(!s.acceptFinal(1)); // the same final again
  assert.equal(s.nextIndex, 2);
  s.startSession(48000); // new session: utterances restart at 0
  assert.equal(s.indexOf(0), 2);
  assert.equal(s.offsetSamples, 48000);
  assert.ok(s.acceptFinal(0));
  assert.ok(!s.acceptFinal(0));
  assert.equal(s.nextIndex, 3);
});
