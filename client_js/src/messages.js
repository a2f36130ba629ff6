// The wire vocabulary of /v1/listen (PROTOCOL.md): the handshake URL built from
// client options, control messages, and parsing/validation of server messages
// in either `json` (text frames) or `msgpack` (binary frames) format.

import { ENCODINGS } from './framing.js';

/**
 * Session parameters, sent as the query of the handshake (PROTOCOL.md "Connect").
 * Ranges are the server's: a value outside them is refused here, before connecting.
 * @typedef {object} ListenOptions
 * @property {number} [sampleRate] Hz of the PCM you send, an integer from 8000 to 48000 (default 16000).
 * @property {import('./framing.js').Encoding} [encoding]
 * @property {string} [language] ISO-639-1 code, or 'auto' (detected per utterance).
 * @property {boolean} [interimResults]
 * @property {boolean} [wordTimestamps]
 * @property {'json' | 'msgpack'} [format] Format of server messages: 'json' (text frames) or 'msgpack' (binary frames).
 * @property {number} [endpointingMs] Silence that ends an utterance, an integer from 100 to 10000 ms.
 * @property {number} [maxUtteranceS] Longest utterance before it is cut, from 1 to 29 s.
 * @property {string} [prompt] Text that biases recognition (names, terms), at most 1000 characters.
 * @property {string} [token] Short-lived token from POST /v1/auth/token.
 */
/**
 * @typedef {object} Word
 * @property {string} word
 * @property {number} start
 * @property {number} end
 * @property {number} probability
 */
/**
 * @typedef {{ type: 'ready', session_id: string, sample_rate: number, model: string, [extra: string]: unknown }} ReadyMessage
 */
/**
 * @typedef {{ type: 'speech_started', utterance: number, start: number, [extra: string]: unknown }} SpeechStartedMessage
 */
/**
 * @typedef {{ type: 'partial', utterance: number, start: number, end: number, text: string, [extra: string]: unknown }} PartialMessage
 */
/**
 * `words` is empty unless wordTimestamps was requested.
 * @typedef {{ type: 'final', utterance: number, start: number, end: number, text: string, language: string, words: Word[], [extra: string]: unknown }} FinalMessage
 */
/**
 * @typedef {{ type: 'error', code: string, message: string, [extra: string]: unknown }} ServerErrorMessage
 */
/**
 * @typedef {{ type: 'closed', [extra: string]: unknown }} ClosedMessage
 */
/**
 * @typedef {ReadyMessage | SpeechStartedMessage | PartialMessage | FinalMessage | ServerErrorMessage | ClosedMessage} ServerMessage
 */
/** @typedef {Record<string, string | number | boolean | undefined>} QueryParams */

/**
 * Server → client message types defined by the protocol (others may be added later).
 * @type {readonly ['ready', 'speech_started', 'partial', 'final', 'error', 'closed']}
 */
export const SERVER_MESSAGE_TYPES = Object.freeze(['ready', 'speech_started', 'partial', 'final', 'error', 'closed']);

/** @type {'/v1/listen'} */
export const LISTEN_PATH = '/v1/listen';

/**
 * The server's limits on session parameters (server/earshot/protocol.py, endpointing.py).
 * @type {Readonly<{ sampleRate: readonly [number, number], endpointingMs: readonly [number, number], maxUtteranceS: readonly [number, number], promptChars: number }>}
 */
export const LIMITS = Object.freeze({
  sampleRate: Object.freeze([8000, 48000]),
  endpointingMs: Object.freeze([100, 10000]),
  maxUtteranceS: Object.freeze([1, 29]),
  promptChars: 1000,
});

/**
 * @param {unknown} v
 * @param {readonly [number, number]} range
 */
const inRange = (v, [low, high]) => typeof v === 'number' && v >= low && v <= high;

/** A malformed message from the server (a bug on its side or a wrong endpoint). */
export class ProtocolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

// camelCase client option → query parameter, with a validator. Undefined options
// are left out so the server's defaults apply.
/** @type {[keyof ListenOptions, string, (v: any) => boolean, string][]} */
const QUERY = [
  ['sampleRate', 'sample_rate', (v) => Number.isInteger(v) && inRange(v, LIMITS.sampleRate), 'an integer from 8000 to 48000'],
  ['encoding', 'encoding', (v) => v in ENCODINGS, 'pcm_s16le or pcm_f32le'],
  ['language', 'language', (v) => typeof v === 'string' && /^(auto|[a-z]{2,3})$/.test(v), '"auto" or an ISO-639-1 code'],
  ['interimResults', 'interim_results', (v) => typeof v === 'boolean', 'a boolean'],
  ['wordTimestamps', 'word_timestamps', (v) => typeof v === 'boolean', 'a boolean'],
  ['format', 'format', (v) => v === 'json' || v === 'msgpack', 'json or msgpack'],
  [
    'endpointingMs',
    'endpointing_ms',
    (v) => Number.isInteger(v) && inRange(v, LIMITS.endpointingMs),
    `an integer from ${LIMITS.endpointingMs[0]} to ${LIMITS.endpointingMs[1]}`,
  ],
  [
    'maxUtteranceS',
    'max_utterance_s',
    (v) => inRange(v, LIMITS.maxUtteranceS),
    `a number from ${LIMITS.maxUtteranceS[0]} to ${LIMITS.maxUtteranceS[1]}`,
  ],
  [
    'prompt',
    'prompt',
    (v) => typeof v === 'string' && [...v].length <= LIMITS.promptChars,
    `a string of at most ${LIMITS.promptChars} characters`,
  ],
  ['token', 'token', (v) => typeof v === 'string' && v.length > 0, 'a non-empty string'],
];

/**
 * The WebSocket URL for a session. `base` may be ws(s):// or http(s)://, with
 * or without the /v1/listen path; `params` adds raw extra query parameters
 * (for protocol extensions) after the known ones.
 * @param {string} base
 * @param {ListenOptions} [options]
 * @param {QueryParams} [params]
 * @returns {string}
 */
export function buildListenUrl(base, options = {}, params = {}) {
  let url;
  try {
    url = new URL(base);
  } catch {
    throw new TypeError(`url must be an absolute ws://, wss://, http:// or https:// URL, got ${JSON.stringify(base)}`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new TypeError(`unsupported URL scheme ${url.protocol}`);
  if (url.pathname === '/' || url.pathname === '') url.pathname = LISTEN_PATH;
  for (const [option, name, valid, expected] of QUERY) {
    const v = options[option];
    if (v === undefined || v === null) continue;
    if (!valid(v)) throw new RangeError(`${option} must be ${expected}, got ${JSON.stringify(v)}`);
    url.searchParams.set(name, String(v));
  }
  for (const [name, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) url.searchParams.set(name, String(v));
  }
  return url.toString();
}

/**
 * A control message as the text frame to send.
 * @param {'finalize' | 'close_stream' | 'keepalive'} type
 * @returns {string}
 */
export function controlMessage(type) {
  if (type !== 'finalize' && type !== 'close_stream' && type !== 'keepalive') {
    throw new RangeError(`unknown control message ${type}`);
  }
  return JSON.stringify({ type });
}

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const isUtt = (v) => Number.isInteger(v) && v >= 0;

// Field checks for the known types; extra fields are allowed (the protocol may grow).
const CHECKS = {
  ready: (m) => typeof m.session_id === 'string',
  speech_started: (m) => isUtt(m.utterance) && isNum(m.start),
  partial: (m) => isUtt(m.utterance) && isNum(m.start) && isNum(m.end) && typeof m.text === 'string',
  final: (m) =>
    isUtt(m.utterance) && isNum(m.start) && isNum(m.end) && typeof m.text === 'string' &&
    (m.words === undefined || Array.isArray(m.words)),
  error: (m) => typeof m.code === 'string' && typeof m.message === 'string',
  closed: () => true,
};

function toBytes(data) {
  if (data instanceof Uint8Array) return data; // includes Node's Buffer
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/**
 * Parse one server frame: a string is JSON, bytes are msgpack (decoded with
 * `decodeMsgpack`, the `decode` of @msgpack/msgpack). Returns the message
 * object; throws ProtocolError when it is not a valid message. Unknown types
 * pass through unchecked; a `final` without `words` gets `words: []`.
 * @param {string | ArrayBuffer | ArrayBufferView} data
 * @param {(bytes: Uint8Array) => unknown} [decodeMsgpack]
 * @returns {ServerMessage}
 */
export function parseServerMessage(data, decodeMsgpack) {
  let msg;
  if (typeof data === 'string') {
    try {
      msg = JSON.parse(data);
    } catch (e) {
      throw new ProtocolError(`server sent a text frame that is not JSON: ${e.message}`);
    }
  } else {
    const bytes = toBytes(data);
    if (!bytes) throw new ProtocolError(`unexpected frame data of type ${Object.prototype.toString.call(data)}`);
    if (!decodeMsgpack) throw new ProtocolError('server sent a binary frame but format is not msgpack');
    try {
      msg = decodeMsgpack(bytes);
    } catch (e) {
      throw new ProtocolError(`server sent a binary frame that is not msgpack: ${e.message}`);
    }
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || typeof msg.type !== 'string') {
    throw new ProtocolError('server message is not an object with a string "type"');
  }
  const check = CHECKS[msg.type];
  if (check && !check(msg)) throw new ProtocolError(`malformed ${msg.type} message: ${JSON.stringify(msg).slice(0, 200)}`);
  if (msg.type === 'final' && msg.words === undefined) msg.words = [];
  return msg;
}

/**
 * Load the msgpack decoder lazily, so JSON-only clients (and pages) never fetch it.
 * @returns {Promise<(bytes: Uint8Array) => unknown>}
 */
export async function loadMsgpackDecoder() {
  try {
    const { decode } = await import('@msgpack/msgpack');
    return decode;
  } catch (e) {
    throw new Error(
      `format "msgpack" needs the @msgpack/msgpack package (in browsers, an import map entry for it): ${e.message}`,
    );
  }
}
