// Generated from the JSDoc in messages.js by `npm run types`: edit messages.js, not this file.
/**
 * The WebSocket URL for a session. `base` may be ws(s):// or http(s)://, with
 * or without the /v1/listen path; `params` adds raw extra query parameters
 * (for protocol extensions) after the known ones.
 * @param {string} base
 * @param {ListenOptions} [options]
 * @param {QueryParams} [params]
 * @returns {string}
 */
export function buildListenUrl(base: string, options?: ListenOptions, params?: QueryParams): string;
/**
 * A control message as the text frame to send.
 * @param {'finalize' | 'close_stream' | 'keepalive'} type
 * @returns {string}
 */
export function controlMessage(type: "finalize" | "close_stream" | "keepalive"): string;
/**
 * Parse one server frame: a string is JSON, bytes are msgpack (decoded with
 * `decodeMsgpack`, the `decode` of @msgpack/msgpack). Returns the message
 * object; throws ProtocolError when it is not a valid message. Unknown types
 * pass through unchecked; a `final` without `words` gets `words: []`.
 * @param {string | ArrayBuffer | ArrayBufferView} data
 * @param {(bytes: Uint8Array) => unknown} [decodeMsgpack]
 * @returns {ServerMessage}
 */
export function parseServerMessage(data: string | ArrayBuffer | ArrayBufferView, decodeMsgpack?: (bytes: Uint8Array) => unknown): ServerMessage;
/**
 * Load the msgpack decoder lazily, so JSON-only clients (and pages) never fetch it.
 * @returns {Promise<(bytes: Uint8Array) => unknown>}
 */
export function loadMsgpackDecoder(): Promise<(bytes: Uint8Array) => unknown>;
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
export const SERVER_MESSAGE_TYPES: readonly ["ready", "speech_started", "partial", "final", "error", "closed"];
/** @type {'/v1/listen'} */
export const LISTEN_PATH: "/v1/listen";
/**
 * The server's limits on session parameters (server/earshot/protocol.py, endpointing.py).
 * @type {Readonly<{ sampleRate: readonly [number, number], endpointingMs: readonly [number, number], maxUtteranceS: readonly [number, number], promptChars: number }>}
 */
export const LIMITS: Readonly<{
    sampleRate: readonly [number, number];
    endpointingMs: readonly [number, number];
    maxUtteranceS: readonly [number, number];
    promptChars: number;
}>;
/** A malformed message from the server (a bug on its side or a wrong endpoint). */
export class ProtocolError extends Error {
    /** @param {string} message */
    constructor(message: string);
}
/**
 * Session parameters, sent as the query of the handshake (PROTOCOL.md "Connect").
 * Ranges are the server's: a value outside them is refused here, before connecting.
 */
export type ListenOptions = {
    /**
     * Hz of the PCM you send, an integer from 8000 to 48000 (default 16000).
     */
    sampleRate?: number | undefined;
    encoding?: import("./framing.js").Encoding | undefined;
    /**
     * ISO-639-1 code, or 'auto' (detected per utterance).
     */
    language?: string | undefined;
    interimResults?: boolean | undefined;
    wordTimestamps?: boolean | undefined;
    /**
     * Format of server messages: 'json' (text frames) or 'msgpack' (binary frames).
     */
    format?: "json" | "msgpack" | undefined;
    /**
     * Silence that ends an utterance, an integer from 100 to 10000 ms.
     */
    endpointingMs?: number | undefined;
    /**
     * Longest utterance before it is cut, from 1 to 29 s.
     */
    maxUtteranceS?: number | undefined;
    /**
     * Text that biases recognition (names, terms), at most 1000 characters.
     */
    prompt?: string | undefined;
    /**
     * Short-lived token from POST /v1/auth/token.
     */
    token?: string | undefined;
};
export type Word = {
    word: string;
    start: number;
    end: number;
    probability: number;
};
export type ReadyMessage = {
    type: "ready";
    session_id: string;
    sample_rate: number;
    model: string;
    [extra: string]: unknown;
};
export type SpeechStartedMessage = {
    type: "speech_started";
    utterance: number;
    start: number;
    [extra: string]: unknown;
};
export type PartialMessage = {
    type: "partial";
    utterance: number;
    start: number;
    end: number;
    text: string;
    [extra: string]: unknown;
};
/**
 * `words` is empty unless wordTimestamps was requested.
 */
export type FinalMessage = {
    type: "final";
    utterance: number;
    start: number;
    end: number;
    text: string;
    language: string;
    words: Word[];
    [extra: string]: unknown;
};
export type ServerErrorMessage = {
    type: "error";
    code: string;
    message: string;
    [extra: string]: unknown;
};
export type ClosedMessage = {
    type: "closed";
    [extra: string]: unknown;
};
export type ServerMessage = ReadyMessage | SpeechStartedMessage | PartialMessage | FinalMessage | ServerErrorMessage | ClosedMessage;
export type QueryParams = Record<string, string | number | boolean | undefined>;
