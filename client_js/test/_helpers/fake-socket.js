// An in-process stand-in for a WebSocket and the server behind it, so client
// logic (framing, ordering, reconnection) can be tested deterministically.
// Tests play the server: accept(), message(), drop(), refuse().

export class FakeSocket {
  static instances = [];

  static reset() {
    FakeSocket.instances = [];
  }

  constructor(url, protocols, options) {
    this.url = url;
    this.options = options;
    this.readyState = 0;
    this.binaryType = 'blob';
    /** Everything the client sent, in order: {kind: 'control', type} or {kind: 'audio', bytes}. */
    this.sent = [];
    this._listeners = {};
    FakeSocket.instances.push(this);
  }

  addEventListener(type, fn) {
    (this._listeners[type] ??= []).push(fn);
  }

  _fire(type, event) {
    for (const fn of this._listeners[type] ?? []) fn(event);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    if (typeof data === 'string') this.sent.push({ kind: 'control', type: JSON.parse(data).type });
    else if (data instanceof ArrayBuffer) this.sent.push({ kind: 'audio', bytes: new Uint8Array(data.slice(0)) });
    else this.sent.push({ kind: 'audio', bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice() });
  }

  close(code = 1000, reason = '') {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    queueMicrotask(() => this.drop(code, reason));
  }

  // ---- server side

  get params() {
    return Object.fromEntries(new URL(this.url).searchParams);
  }

  accept(extra = {}) {
    this.readyState = 1;
    this._fire('open', {});
    this.message({ type: 'ready', session_id: `s${FakeSocket.instances.indexOf(this)}`, sample_rate: 16000, model: 'fake', ...extra });
  }

  /** Open the socket but do not say ready yet. */
  open() {
    this.readyState = 1;
    this._fire('open', {});
  }

  message(obj) {
    this._fire('message', { data: JSON.stringify(obj) });
  }

  binary(bytes) {
    this._fire('message', { data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }

  drop(code = 1006, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this._fire('close', { code, reason });
  }

  refuse() {
    this.readyState = 3;
    this._fire('error', { message: 'connection refused' });
    this._fire('close', { code: 1006, reason: '' });
  }

  /** Int16 samples of all binary frames received. */
  samples() {
    const parts = this.sent.filter((m) => m.kind === 'audio').map((m) => m.bytes);
    const total = parts.reduce((n, b) => n + b.length, 0);
    const all = new Uint8Array(total);
    let at = 0;
    for (const b of parts) all.set(b, at), (at += b.length);
    return new Int16Array(all.buffer, 0, total / 2);
  }

  /** Types of the control messages received, in order. */
  controls() {
    return this.sent.filter((m) => m.kind === 'control').map((m) => m.type);
  }

  /** The received sequence in compact form: 'a<samples>' per binary frame, control types as they are. */
  sequence() {
    return this.sent.map((m) => (m.kind === 'audio' ? `a${m.bytes.length / 2}` : m.type));
  }
}

/** Wait until `predicate()` is true, polling on the event loop (fails after `ms`). */
export async function until(predicate, ms = 2000) {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms: ${predicate}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Int16 ramp whose sample values identify their stream position (mod 30000). */
export function ramp(start, count) {
  const out = new Int16Array(count);
  for (let i = 0; i < count; i++) out[i] = (start + i) % 30000;
  return out;
}
