import { Emitter } from './events.js';
import type { AudioInput } from './framing.js';
import type {
  FinalMessage,
  ListenOptions,
  PartialMessage,
  ReadyMessage,
  ServerMessage,
  SpeechStartedMessage,
} from './messages.js';
import type { BackoffOptions } from './reconnect.js';

/** What the client needs of a WebSocket class: the browser's, or `ws` on Node. */
export interface WebSocketLike {
  readyState: number;
  binaryType: string;
  send(data: string | ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: any) => WebSocketLike;

export interface ReconnectOptions extends BackoffOptions {
  /** Attempts after one loss before giving up (default 8). */
  maxRetries?: number;
  /** Most audio held for replay, in seconds (default 60). */
  maxReplaySeconds?: number;
}

export interface ClientOptions extends Omit<ListenOptions, 'token'> {
  /** Server address: ws(s):// or http(s)://, with or without /v1/listen. */
  url: string;
  /** A token, or a function returning a fresh one for every (re)connect. */
  token?: string | (() => string | Promise<string>);
  /** API key sent as `Authorization: Bearer` (Node only: browsers cannot set headers; use `token`). */
  apiKey?: string;
  /** Extra handshake headers (Node only). */
  headers?: Record<string, string>;
  /** Extra raw query parameters. */
  params?: Record<string, string | number | boolean | undefined>;
  /** WebSocket implementation where there is no global one (e.g. `ws` on Node 20). */
  WebSocket?: WebSocketConstructor;
  /** Reconnect after an unexpected close (default off). */
  reconnect?: boolean | ReconnectOptions;
  /** Send a keepalive after this long without sending (default 5000; 0 = never). */
  keepaliveMs?: number;
  /** Give up on a (re)connect that got no `ready` in this time (default 15000). */
  connectTimeoutMs?: number;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed';

/** Fields the client adds to utterance events. */
export interface StreamPosition {
  /** Client-side utterance index: 0, 1, 2, … across reconnects, never repeated. */
  index: number;
  /** Which session (0 = first, 1 after the first reconnect, …) produced it. */
  session: number;
  /** `start` on the client's stream clock (seconds since the first sample passed to sendAudio). */
  streamStart: number;
}

export interface ReadyEvent extends ReadyMessage {
  session: number;
  /** True when this session replaced a lost one. */
  resumed: boolean;
}
export interface SpeechStartedEvent extends SpeechStartedMessage, StreamPosition {}
export interface PartialEvent extends PartialMessage, StreamPosition {
  streamEnd: number;
  /** ms from handing the audio at `end` to sendAudio until this message arrived. */
  latencyMs: number | undefined;
}
export interface FinalEvent extends FinalMessage, StreamPosition {
  streamEnd: number;
  /** ms from handing the audio at `end` to sendAudio until this final arrived (includes endpointing). */
  latencyMs: number | undefined;
}
export interface ErrorEvent {
  type: 'error';
  code: string;
  message: string;
  /** True when the stream ended because of it. */
  fatal: boolean;
  closeCode?: number;
  status?: number;
}
export interface ReconnectingEvent {
  type: 'reconnecting';
  attempt: number;
  delayMs: number;
  closeCode: number;
  reason: string;
}
/** Audio that could not be replayed after a reconnect (replay bound exceeded). */
export interface GapEvent {
  type: 'gap';
  streamStart: number;
  streamEnd: number;
  lostSeconds: number;
}
export interface ClosedEvent {
  type: 'closed';
  code: number;
  reason: string;
  /** True after a complete close_stream → closed exchange (or a normal server close). */
  graceful: boolean;
  error?: EarshotError;
}
export interface StateEvent {
  type: 'state';
  state: ClientState;
  previous: ClientState;
}

export interface ClientEvents {
  ready: ReadyEvent;
  speech_started: SpeechStartedEvent;
  partial: PartialEvent;
  final: FinalEvent;
  error: ErrorEvent;
  reconnecting: ReconnectingEvent;
  gap: GapEvent;
  closed: ClosedEvent;
  state: StateEvent;
  /** Every parsed server message, unknown types included. */
  message: ServerMessage;
}

export type StreamEvent =
  | ReadyEvent
  | SpeechStartedEvent
  | PartialEvent
  | FinalEvent
  | ErrorEvent
  | ReconnectingEvent
  | GapEvent
  | ClosedEvent;

export const STREAM_EVENTS: readonly StreamEvent['type'][];

export class EarshotError extends Error {
  constructor(code: string, message: string, details?: object);
  /** 'handshake_failed' | 'connection_closed' | 'close_timeout' | 'stream_closed' | 'terminated' | … */
  code: string;
  /** HTTP status of a refused handshake (Node only). */
  status?: number;
  /** Body of a refused handshake, e.g. which parameter was wrong (Node only). */
  body?: string;
  closeCode?: number;
}

export class EarshotClient extends Emitter<ClientEvents> implements AsyncIterable<StreamEvent> {
  constructor(options: ClientOptions);
  readonly options: Readonly<ClientOptions>;
  readonly state: ClientState;
  /** 0 for the first session, +1 per reconnect; -1 before the first ready. */
  readonly session: number;
  readonly sessionId: string | null;
  readonly readyMessage: ReadyMessage | null;
  readonly stats: { reconnects: number; finals: number; sentSeconds: number; lastLatencyMs: number | undefined };
  /** Open the first session; resolves once the server said `ready`. */
  connect(): Promise<this>;
  /** Int16Array/Float32Array samples, or bytes already in the announced encoding. */
  sendAudio(audio: AudioInput): void;
  /** End the current utterance now; its final follows. */
  finalize(): void;
  /** Graceful end: resolves with the closed event after every final arrived. */
  close(options?: { timeoutMs?: number }): Promise<ClosedEvent>;
  /** Abort at once. */
  terminate(): void;
  [Symbol.asyncIterator](): AsyncIterableIterator<StreamEvent>;
}

/** Create a client and open its first session. */
export function connect(options: ClientOptions): Promise<EarshotClient>;
