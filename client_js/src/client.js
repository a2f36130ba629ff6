// The streaming connection: one EarshotClient is one logical audio stream,
// carried by one WebSocket session, or by several when automatic reconnection
// replaces a lost one. See README.md "Reconnection" for the guarantee.

import { Emitter, iterateEvents } from './events.js';
import { bytesPerSample, encodePcm, maxFrameBytes, splitFrames } from './framing.js';
import { buildListenUrl, controlMessage, loadMsgpackDecoder, parseServerMessage } from './messages.js';
import { AudioLedger, FinalSequencer, backoffDelay, isRetryableClose } from './reconnect.js';


/**
 * What the client needs of a WebSocket class: the browser's, or `ws` on Node.
 * @typedef {{
 *   readyState: number,
 *   binaryType: string,
 *   send(data: string | ArrayBufferView | ArrayBuffer): void,
 *   close(code?: number, reason?: string): void,
 *   addEventListener(type: string, listener: (event: any) => void): void,
 * }} WebSocketLike
 */
/** @typedef {new (url: string, protocols?: string | string[], options?: any) => WebSocketLike} WebSocketConstructor */
/**
 * @typedef {object} ReconnectExtras
 * @property {number} [maxRetries] Attempts after one loss before giving up (default 8).
 * @property {number} [maxReplaySeconds] Most audio held for replay, in seconds (default 60).
 */
/** @typedef {import('./reconnect.js').BackoffOptions & ReconnectExtras} ReconnectOptions */
/**
 * @typedef {object} ConnectionOptions
 * @property {string} url Server address: ws(s):// or http(s)://, with or without /v1/listen.
 * @property {string | (() => string | Promise<string>)} [token] A token, or a function returning a fresh one for every (re)connect.
 * @property {string} [apiKey] API key sent as `Authorization: Bearer` (Node only: browsers cannot set headers; use `token`).
 * @property {Record<string, string>} [headers] Extra handshake headers (Node only).
 * @property {import('./messages.js').QueryParams} [params] Extra raw query parameters.
 * @property {WebSocketConstructor} [WebSocket] WebSocket implementation where there is no global one (e.g. `ws` on Node 20).
 * @property {boolean | ReconnectOptions} [reconnect] Reconnect after an unexpected close (default off).
 * @property {number} [keepaliveMs] Send a keepalive after this long without sending (default 5000; 0 = never).
 * @property {number} [connectTimeoutMs] Give up on a (re)connect that got no `ready` in this time (default 15000).
 */
/** @typedef {Omit<import('./messages.js').ListenOptions, 'token'> & ConnectionOptions} ClientOptions */
/** @typedef {'idle' | 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed'} ClientState */
/**
 * Fields the client adds to utterance events.
 * @typedef {object} StreamPosition
 * @property {number} index Client-side utterance index: 0, 1, 2, … across reconnects, never repeated.
 * @property {number} session Which session (0 = first, 1 after the first reconnect, …) produced it.
 * @property {number} streamStart `start` on the client's stream clock (seconds since the first sample passed to sendAudio).
 */
/**
 * @typedef {object} ReadyExtras
 * @property {number} session
 * @property {boolean} resumed True when this session replaced a lost one.
 */
/** @typedef {import('./messages.js').ReadyMessage & ReadyExtras} ReadyEvent */
/** @typedef {import('./messages.js').SpeechStartedMessage & StreamPosition} SpeechStartedEvent */
/**
 * @typedef {object} PartialExtras
 * @property {number} streamEnd
 * @property {number | undefined} latencyMs ms from handing the audio at `end` to sendAudio until this message arrived.
 */
/** @typedef {import('./messages.js').PartialMessage & StreamPosition & PartialExtras} PartialEvent */
/**
 * @typedef {object} FinalExtras
 * @property {number} streamEnd
 * @property {number | undefined} latencyMs ms from handing the audio at `end` to sendAudio until this final arrived (includes endpointing).
 */
/** @typedef {import('./messages.js').FinalMessage & StreamPosition & FinalExtras} FinalEvent */
/**
 * @typedef {object} ErrorEvent
 * @property {'error'} type
 * @property {string} code
 * @property {string} message
 * @property {boolean} fatal True when the stream ended because of it.
 * @property {number} [closeCode]
 * @property {number} [status]
 */
/**
 * @typedef {object} ReconnectingEvent
 * @property {'reconnecting'} type
 * @property {number} attempt
 * @property {number} delayMs
 * @property {number} closeCode
 * @property {string} reason
 */
/**
 * Audio that could not be replayed after a reconnect (replay bound exceeded).
 * @typedef {object} GapEvent
 * @property {'gap'} type
 * @property {number} streamStart
 * @property {number} streamEnd
 * @property {number} lostSeconds
 */
/**
 * @typedef {object} ClosedEvent
 * @property {'closed'} type
 * @property {number} code
 * @property {string} reason
 * @property {boolean} graceful True after a complete close_stream → closed exchange (or a normal server close).
 * @property {EarshotError} [error]
 */
/**
 * @typedef {object} StateEvent
 * @property {'state'} type
 * @property {ClientState} state
 * @property {ClientState} previous
 */
/**
 * @typedef {object} ClientEvents
 * @property {ReadyEvent} ready
 * @property {SpeechStartedEvent} speech_started
 * @property {PartialEvent} partial
 * @property {FinalEvent} final
 * @property {ErrorEvent} error
 * @property {ReconnectingEvent} reconnecting
 * @property {GapEvent} gap
 * @property {ClosedEvent} closed
 * @property {StateEvent} state
 * @property {import('./messages.js').ServerMessage} message Every parsed server message, unknown types included.
 */
/**
 * @typedef {ReadyEvent | SpeechStartedEvent | PartialEvent | FinalEvent | ErrorEvent | ReconnectingEvent | GapEvent | ClosedEvent} StreamEvent
 */

/**
 * Events yielded by async iteration over a client.
 * @type {readonly StreamEvent['type'][]}
 */
export const STREAM_EVENTS = Object.freeze([
  'ready', 'speech_started', 'partial', 'final', 'error', 'reconnecting', 'gap', 'closed',
]);

/** An error of the client or of its connection; `code` says which. */
export class EarshotError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'EarshotError';
    /** 'handshake_failed' | 'connection_closed' | 'close_timeout' | 'stream_closed' | 'terminated' | … */
    this.code = code;
    /** HTTP status of a refused handshake (Node only). @type {number | undefined} */
    this.status = undefined;
    /** Body of a refused handshake, e.g. which parameter was wrong (Node only). @type {string | undefined} */
    this.body = undefined;
    /** @type {number | undefined} */
    this.closeCode = undefined;
    Object.assign(this, details);
  }
}

const OPEN = 1; // WebSocket.OPEN, the same in browsers and `ws`
const DEFAULT_RECONNECT = { maxRetries: 8, initialDelayMs: 250, maxDelayMs: 10000, maxReplaySeconds: 60 };

const now = () => Date.now();
const unref = (timer) => (typeof timer?.unref === 'function' ? timer.unref() : timer);

/**
 * One logical audio stream to Earshot, carried by one WebSocket session (or several,
 * with `reconnect`).
 * @extends {Emitter<ClientEvents>}
 * @implements {AsyncIterable<StreamEvent>}
 */
export class EarshotClient extends Emitter {
  /** @param {ClientOptions} options */
  constructor(options) {
    super();
    if (!options || !options.url) throw new TypeError('options.url is required (e.g. "ws://localhost:8000")');
    const o = { sampleRate: 16000, encoding: 'pcm_s16le', format: 'json', keepaliveMs: 5000, connectTimeoutMs: 15000, ...options };
    // Validate every option now rather than at the first (re)connect.
    buildListenUrl(o.url, { ...o, token: typeof o.token === 'string' ? o.token : undefined }, o.params);
    /** @readonly @type {Readonly<ClientOptions>} */
    this.options = o;
    /** @private */
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('no WebSocket implementation: pass { WebSocket } (for example from the "ws" package) on Node < 22');
    }
    /** @private */
    this._reconnect = o.reconnect ? { ...DEFAULT_RECONNECT, ...(o.reconnect === true ? {} : o.reconnect) } : null;
    /** @private */
    this._bytesPerSample = bytesPerSample(o.encoding);
    /** @private */
    this._maxFrame = maxFrameBytes(o.sampleRate, o.encoding, 1);
    /** @private */
    this._ledger = new AudioLedger({
      sampleRate: o.sampleRate,
      bytesPerSample: this._bytesPerSample,
      maxReplaySeconds: this._reconnect ? this._reconnect.maxReplaySeconds : 30,
    });
    /** @private */
    this._seq = new FinalSequencer();

    /** @readonly @type {ClientState} */
    this.state = 'idle';
    /** 0 for the first session, +1 per reconnect; -1 before the first ready. @readonly */
    this.session = -1;
    /** @readonly @type {string | null} */
    this.sessionId = null;
    /** The last `ready` message. @readonly @type {import('./messages.js').ReadyMessage | null} */
    this.readyMessage = null;
    /** @readonly @type {{ reconnects: number, finals: number, sentSeconds: number, lastLatencyMs: number | undefined }} */
    this.stats = { reconnects: 0, finals: 0, sentSeconds: 0, lastLatencyMs: undefined };

    /** @private */
    this._socket = null;
    /** @private */
    this._live = false; // the current socket got `ready` and the replay was sent
    /** @private */
    this._attempt = 0; // reconnect attempts since the last ready
    /** @private */
    this._closing = false; // close() was called
    /** @private */
    this._serverClosed = false; // the server's `closed` message arrived
    /** @private */
    this._closedEvent = null;
    /** @private */
    this._decode = undefined;
    /** @private */
    this._timers = new Set();
    /** @private */
    this._keepalive = null;
    /** @private */
    this._lastSendAt = 0;
    /** @private */
    this._pendingConnect = null;
    /** @private */
    this._pendingClose = null;
  }

  /**
   * Open the first session; resolves with the client once the server said `ready`.
   * @returns {Promise<this>}
   */
  async connect() {
    if (this.state !== 'idle') throw new EarshotError('invalid_state', `connect() in state ${this.state}`);
    this._setState('connecting');
    try {
      if (this.options.format === 'msgpack') this._decode = await loadMsgpackDecoder();
    } catch (e) {
      this._finish({ code: 1000, reason: 'msgpack unavailable', error: new EarshotError('msgpack_unavailable', e.message) });
      throw this._closedEvent.error;
    }
    const ready = new Promise((resolve, reject) => (this._pendingConnect = { resolve, reject }));
    this._open();
    await ready;
    return this;
  }

  /**
   * Send audio: Int16Array or Float32Array samples (converted to the announced
   * encoding), or an ArrayBuffer/Uint8Array already in it. Audio sent while
   * (re)connecting is held and sent once the session is ready.
   * @param {import('./framing.js').AudioInput} audio
   * @returns {void}
   */
  sendAudio(audio) {
    if (this._closing || this.state === 'closed') {
      throw new EarshotError('stream_closed', 'sendAudio() after close(): the stream has ended');
    }
    const bytes = encodePcm(audio, this.options.encoding);
    const t = now();
    for (const frame of splitFrames(bytes, this._maxFrame)) {
      this._ledger.append(frame, t);
      if (this._live) this._send(frame);
    }
    this.stats.sentSeconds = this._ledger.totalSamples / this.options.sampleRate;
  }

  /**
   * End the current utterance now; its `final` follows.
   * @returns {void}
   */
  finalize() {
    if (this._closing || this.state === 'closed') return;
    this._ledger.markFinalize();
    if (this._live) this._send(controlMessage('finalize'));
  }

  /**
   * Graceful end: no more audio; the server finalizes everything, sends the
   * remaining finals, then `closed`. Resolves with the `closed` event after the
   * socket closed; rejects if that cannot happen (connection lost for good,
   * or `timeoutMs` passed).
   * @param {{ timeoutMs?: number }} [options]
   * @returns {Promise<ClosedEvent>}
   */
  close({ timeoutMs = 30000 } = {}) {
    if (this.state === 'closed') {
      return this._closedEvent.error ? Promise.reject(this._closedEvent.error) : Promise.resolve(this._closedEvent);
    }
    if (this._pendingClose) return this._pendingClose.promise;
    this._closing = true;
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    this._pendingClose = { promise, resolve, reject };
    if (this.state === 'idle') {
      this._finish({ code: 1000, reason: 'closed before connect', graceful: true });
      return promise;
    }
    this._later(timeoutMs, () => {
      const error = new EarshotError('close_timeout', `the server did not finish the stream within ${timeoutMs} ms`);
      this._dropSocket(1000, 'close timeout');
      this._finish({ code: 1006, reason: 'close timeout', error });
    }, false);
    if (this._live) {
      this._send(controlMessage('close_stream'));
      this._setState('closing');
    }
    // Otherwise close_stream goes out after the (re)connect's replay.
    return promise;
  }

  /**
   * Abort now: no more finals; pending close() rejects.
   * @returns {void}
   */
  terminate() {
    if (this.state === 'closed') return;
    this._dropSocket(1000, 'terminated by client');
    this._finish({ code: 1000, reason: 'terminated by client', error: this._pendingClose ? new EarshotError('terminated', 'terminate() was called') : undefined });
  }

  /**
   * Events of STREAM_EVENTS from now until `closed`, in order.
   * @returns {AsyncIterableIterator<StreamEvent>}
   */
  [Symbol.asyncIterator]() {
    return iterateEvents(this, STREAM_EVENTS, 'closed', this.state === 'closed');
  }

  // ---------------------------------------------------------------- sessions

  /** @private */
  async _open() {
    this._live = false;
    this._serverClosed = false;
    let token = this.options.token;
    let url;
    try {
      if (typeof token === 'function') token = await token();
      url = buildListenUrl(this.options.url, { ...this.options, token }, this.options.params);
    } catch (e) {
      this._onSessionEnd({ code: 1006, reason: `cannot build the URL: ${e.message}`, opened: false, fatal: true });
      return;
    }
    if (this.state === 'closed') return;
    const headers = { ...this.options.headers };
    if (this.options.apiKey) headers.Authorization = `Bearer ${this.options.apiKey}`;
    let socket;
    try {
      socket = Object.keys(headers).length ? new this._WebSocket(url, [], { headers }) : new this._WebSocket(url);
    } catch (e) {
      this._onSessionEnd({ code: 1006, reason: e.message, opened: false, fatal: true });
      return;
    }
    socket.binaryType = 'arraybuffer';
    this._socket = socket;
    const info = { opened: false, error: undefined, status: undefined, body: undefined };

    // Node's `ws` tells why a handshake was refused (status and JSON body); browsers cannot.
    if (typeof socket.on === 'function') {
      socket.on('unexpected-response', (req, res) => {
        info.status = res.statusCode;
        let body = '';
        res.setEncoding?.('utf8');
        res.on('data', (chunk) => (body.length < 4096 ? (body += chunk) : null));
        const done = () => {
          info.body = body;
          socket.terminate?.();
        };
        res.on('end', done);
        res.on('error', done);
        setTimeout(done, 2000).unref?.();
      });
    }
    socket.addEventListener('open', () => (info.opened = true));
    socket.addEventListener('error', (ev) => (info.error = ev?.error ?? ev?.message));
    socket.addEventListener('message', (ev) => {
      if (socket === this._socket) this._onFrame(ev.data);
    });
    socket.addEventListener('close', (ev) => {
      if (socket !== this._socket) return;
      this._socket = null;
      this._live = false;
      this._stopKeepalive();
      this._onSessionEnd({ code: ev.code, reason: ev.reason || '', ...info });
    });
    this._later(this.options.connectTimeoutMs, () => {
      if (socket === this._socket && !this._live) {
        info.error = new Error(`no ready message within ${this.options.connectTimeoutMs} ms`);
        socket.close();
        // Some implementations never fire `close` for a socket that never opened.
        this._later(1000, () => {
          if (socket === this._socket) {
            this._socket = null;
            this._onSessionEnd({ code: 1006, reason: 'connect timeout', ...info });
          }
        });
      }
    });
  }

  /** @private */
  _onFrame(data) {
    let msg;
    try {
      msg = parseServerMessage(data, this._decode);
    } catch (e) {
      this.emit('error', { type: 'error', code: 'protocol_error', message: e.message, fatal: false });
      return;
    }
    this.emit('message', msg);
    const sr = this.options.sampleRate;
    const offset = this._seq.offsetSamples / sr;
    switch (msg.type) {
      case 'ready':
        this._onReady(msg);
        break;
      case 'speech_started':
        this.emit(msg.type, { ...msg, index: this._seq.indexOf(msg.utterance), session: this.session, streamStart: offset + msg.start });
        break;
      case 'partial':
        this.emit(msg.type, {
          ...msg,
          index: this._seq.indexOf(msg.utterance),
          session: this.session,
          streamStart: offset + msg.start,
          streamEnd: offset + msg.end,
          latencyMs: this._latency(offset + msg.end),
        });
        break;
      case 'final': {
        if (!this._seq.acceptFinal(msg.utterance)) return; // already delivered
        const final = {
          ...msg,
          index: this._seq.indexOf(msg.utterance),
          session: this.session,
          streamStart: offset + msg.start,
          streamEnd: offset + msg.end,
          latencyMs: this._latency(offset + msg.end),
        };
        this._ledger.acknowledge(this._seq.offsetSamples + Math.round(msg.end * sr));
        this.stats.finals += 1;
        this.stats.lastLatencyMs = final.latencyMs;
        this.emit('final', final);
        break;
      }
      case 'error':
        this.emit('error', { ...msg, fatal: false });
        break;
      case 'closed':
        this._serverClosed = true;
        // The server closes with 1000 next; closing from our side too makes sure we do not wait on it.
        this._socket?.close(1000);
        break;
      default:
        break; // a message type from a newer server: only the 'message' event sees it
    }
  }

  /** @private */
  _onReady(msg) {
    this._attempt = 0;
    this.session += 1;
    this.sessionId = msg.session_id;
    this.readyMessage = msg;
    const gap = this._ledger.takeGap();
    this._seq.startSession(this._ledger.replayFrom);
    for (const entry of this._ledger.replayEntries()) {
      if (entry.finalize) this._send(controlMessage('finalize'));
      else this._send(entry.bytes);
    }
    this._live = true;
    if (this._closing) this._send(controlMessage('close_stream'));
    this._setState(this._closing ? 'closing' : 'open');
    this._startKeepalive();
    if (gap) {
      const sr = this.options.sampleRate;
      this.emit('gap', { type: 'gap', streamStart: gap.from / sr, streamEnd: gap.to / sr, lostSeconds: (gap.to - gap.from) / sr });
    }
    this.emit('ready', { ...msg, session: this.session, resumed: this.session > 0 });
    if (this._pendingConnect) {
      this._pendingConnect.resolve(this);
      this._pendingConnect = null;
    }
  }

  // A socket is gone: finish, or schedule a reconnect.
  /** @private */
  _onSessionEnd({ code, reason, opened, error, status, body, fatal }) {
    if (this.state === 'closed') return;
    if (this._serverClosed) {
      this._finish({ code, reason, graceful: true });
      return;
    }
    const refused = status !== undefined && status >= 400 && status < 500;
    // A first session that never opened means a wrong URL or a refused handshake:
    // say so at once. Once streaming, a server that cannot be reached is waited out.
    const firstSession = this.session < 0;
    const retry =
      Boolean(this._reconnect) &&
      !fatal &&
      !refused &&
      this._attempt < this._reconnect.maxRetries &&
      (firstSession ? opened && isRetryableClose(code) : isRetryableClose(code) || !opened);
    if (!retry) {
      let err;
      if (code === 1000 && opened && !this._closing) err = undefined; // the server ended the stream normally
      else if (!opened) {
        const detail = status ? `HTTP ${status}${body ? `: ${body}` : ''}` : error?.message ?? String(error ?? reason ?? 'connection failed');
        err = new EarshotError('handshake_failed', `could not open ${this.options.url}: ${detail}`, { status, body, closeCode: code });
      } else {
        err = new EarshotError('connection_closed', `connection closed with code ${code}${reason ? ` (${reason})` : ''}`, { closeCode: code, reason });
      }
      if (err) this.emit('error', { type: 'error', code: err.code, message: err.message, fatal: true, closeCode: code, status });
      this._finish({ code, reason, error: err, graceful: !err });
      return;
    }
    const delayMs = backoffDelay(this._attempt, this._reconnect, code);
    this._attempt += 1;
    this.stats.reconnects += 1;
    this._setState('reconnecting');
    this.emit('reconnecting', { type: 'reconnecting', attempt: this._attempt, delayMs, closeCode: code, reason });
    this._later(delayMs, () => this._open(), false);
  }

  /** @private */
  _finish({ code, reason, error, graceful = false }) {
    if (this.state === 'closed') return;
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._stopKeepalive();
    this._live = false;
    this._setState('closed');
    this._closedEvent = { type: 'closed', code, reason, graceful: graceful && !error, error };
    this.emit('closed', this._closedEvent);
    if (this._pendingConnect) {
      this._pendingConnect.reject(error ?? new EarshotError('connect_failed', `closed before ready (code ${code})`));
      this._pendingConnect = null;
    }
    if (this._pendingClose) {
      if (error) this._pendingClose.reject(error);
      else this._pendingClose.resolve(this._closedEvent);
    }
  }

  // ---------------------------------------------------------------- helpers

  /** @private */
  _send(data) {
    const s = this._socket;
    if (s && s.readyState === OPEN) {
      s.send(data);
      this._lastSendAt = now();
    }
  }

  /** @private */
  _dropSocket(code, reason) {
    const s = this._socket;
    this._socket = null;
    this._live = false;
    try {
      s?.close(code, reason);
    } catch {
      // already closing
    }
  }

  /** @private */
  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit('state', { type: 'state', state, previous });
  }

  /** @private */
  _latency(streamSeconds) {
    const t = this._ledger.sentAt(Math.round(streamSeconds * this.options.sampleRate));
    return t === undefined ? undefined : now() - t;
  }

  // `weak` timers only guard something else (a socket) and need not keep Node running.
  /** @private */
  _later(ms, fn, weak = true) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    if (weak) unref(t);
    this._timers.add(t);
    return t;
  }

  /** @private */
  _startKeepalive() {
    this._stopKeepalive();
    const ms = this.options.keepaliveMs;
    if (!ms) return;
    this._keepalive = setInterval(() => {
      if (this._live && now() - this._lastSendAt >= ms) this._send(controlMessage('keepalive'));
    }, Math.max(100, ms / 2));
    unref(this._keepalive);
  }

  /** @private */
  _stopKeepalive() {
    if (this._keepalive) clearInterval(this._keepalive);
    this._keepalive = null;
  }
}

/**
 * Create a client and open its first session: `const stream = await connect({ url })`.
 * @param {ClientOptions} options
 * @returns {Promise<EarshotClient>}
 */
export function connect(options) {
  return new EarshotClient(options).connect();
}
