import type { Encoding } from './framing.js';

export const LISTEN_PATH: '/v1/listen';
export const SERVER_MESSAGE_TYPES: readonly ['ready', 'speech_started', 'partial', 'final', 'error', 'closed'];

export class ProtocolError extends Error {}

/** Session parameters, sent as the query of the handshake (PROTOCOL.md "Connect"). */
export interface ListenOptions {
  /** Hz of the PCM you send, 8000-48000 (default 16000). */
  sampleRate?: number;
  encoding?: Encoding;
  /** ISO-639-1 code, or 'auto' (detected per utterance). */
  language?: string;
  interimResults?: boolean;
  wordTimestamps?: boolean;
  /** Format of server messages: 'json' (text frames) or 'msgpack' (binary frames). */
  format?: 'json' | 'msgpack';
  endpointingMs?: number;
  maxUtteranceS?: number;
  /** Text that biases recognition (names, terms). */
  prompt?: string;
  /** Short-lived token from POST /v1/auth/token. */
  token?: string;
}

export interface Word {
  word: string;
  start: number;
  end: number;
  probability: number;
}

export interface ReadyMessage {
  type: 'ready';
  session_id: string;
  sample_rate: number;
  model: string;
  [extra: string]: unknown;
}
export interface SpeechStartedMessage {
  type: 'speech_started';
  utterance: number;
  start: number;
  [extra: string]: unknown;
}
export interface PartialMessage {
  type: 'partial';
  utterance: number;
  start: number;
  end: number;
  text: string;
  [extra: string]: unknown;
}
export interface FinalMessage {
  type: 'final';
  utterance: number;
  start: number;
  end: number;
  text: string;
  language: string;
  /** Empty unless wordTimestamps was requested. */
  words: Word[];
  [extra: string]: unknown;
}
export interface ServerErrorMessage {
  type: 'error';
  code: string;
  message: string;
  [extra: string]: unknown;
}
export interface ClosedMessage {
  type: 'closed';
  [extra: string]: unknown;
}
export type ServerMessage =
  | ReadyMessage
  | SpeechStartedMessage
  | PartialMessage
  | FinalMessage
  | ServerErrorMessage
  | ClosedMessage;

export function buildListenUrl(base: string, options?: ListenOptions, params?: Record<string, string | number | boolean | undefined>): string;
export function controlMessage(type: 'finalize' | 'close_stream' | 'keepalive'): string;
export function parseServerMessage(
  data: string | ArrayBuffer | ArrayBufferView,
  decodeMsgpack?: (bytes: Uint8Array) => unknown,
): ServerMessage;
export function loadMsgpackDecoder(): Promise<(bytes: Uint8Array) => unknown>;
