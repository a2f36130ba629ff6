// Generated from the JSDoc in client.js by `npm run types`: edit client.js, not this file.
/**
 * Create a client and open its first session: `const stream = await connect({ url })`.
 * @param {ClientOptions} options
 * @returns {Promise<EarshotClient>}
 */
export function connect(options: ClientOptions): Promise<EarshotClient>;
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
export const STREAM_EVENTS: readonly StreamEvent["type"][];
/** An error of the client or of its connection; `code` says which. */
export class EarshotError extends Error {
    /**
     * @param {string} code
     * @param {string} message
     * @param {object} [details]
     */
    constructor(code: string, message: string, details?: object);
    /** 'handshake_failed' | 'connection_closed' | 'close_timeout' | 'stream_closed' | 'terminated' | … */
    code: string;
    /** HTTP status of a refused handshake (Node only). @type {number | undefined} */
    status: number | undefined;
    /** Body of a refused handshake, e.g. which parameter was wrong (Node only). @type {string | undefined} */
    body: string | undefined;
    /** @type {number | undefined} */
    closeCode: number | undefined;
}
/**
 * One logical audio stream to Earshot, carried by one WebSocket session (or several,
 * with `reconnect`).
 * @extends {Emitter<ClientEvents>}
 * @implements {AsyncIterable<StreamEvent>}
 */
export class EarshotClient extends Emitter<ClientEvents> implements AsyncIterable<StreamEvent> {
    /** @param {ClientOptions} options */
    constructor(options: ClientOptions);
    /** @readonly @type {Readonly<ClientOptions>} */
    readonly options: Readonly<ClientOptions>;
    /** @private */
    private _WebSocket;
    /** @private */
    private _reconnect;
    /** @private */
    private _bytesPerSample;
    /** @private */
    private _maxFrame;
    /** @private */
    private _ledger;
    /** @private */
    private _seq;
    /** @readonly @type {ClientState} */
    readonly state: ClientState;
    /** 0 for the first session, +1 per reconnect; -1 before the first ready. @readonly */
    readonly session: number;
    /** @readonly @type {string | null} */
    readonly sessionId: string | null;
    /** The last `ready` message. @readonly @type {import('./messages.js').ReadyMessage | null} */
    readonly readyMessage: import("./messages.js").ReadyMessage | null;
    /** @readonly @type {{ reconnects: number, finals: number, sentSeconds: number, lastLatencyMs: number | undefined }} */
    readonly stats: {
        reconnects: number;
        finals: number;
        sentSeconds: number;
        lastLatencyMs: number | undefined;
    };
    /** @private */
    private _socket;
    /** @private */
    private _live;
    /** @private */
    private _attempt;
    /** @private */
    private _closing;
    /** @private */
    private _serverClosed;
    /** @private */
    private _closedEvent;
    /** @private */
    private _decode;
    /** @private */
    private _timers;
    /** @private */
    private _keepalive;
    /** @private */
    private _lastSendAt;
    /** @private */
    private _pendingConnect;
    /** @private */
    private _pendingClose;
    /**
     * Open the first session; resolves with the client once the server said `ready`.
     * @returns {Promise<this>}
     */
    connect(): Promise<this>;
    /**
     * Send audio: Int16Array or Float32Array samples (converted to the announced
     * encoding), or an ArrayBuffer/Uint8Array already in it. Audio sent while
     * (re)connecting is held and sent once the session is ready.
     * @param {import('./framing.js').AudioInput} audio
     * @returns {void}
     */
    sendAudio(audio: import("./framing.js").AudioInput): void;
    /**
     * End the current utterance now; its `final` follows.
     * @returns {void}
     */
    finalize(): void;
    /**
     * Graceful end: no more audio; the server finalizes everything, sends the
     * remaining finals, then `closed`. Resolves with the `closed` event after the
     * socket closed; rejects if that cannot happen (connection lost for good,
     * or `timeoutMs` passed).
     * @param {{ timeoutMs?: number }} [options]
     * @returns {Promise<ClosedEvent>}
     */
    close({ timeoutMs }?: {
        timeoutMs?: number;
    }): Promise<ClosedEvent>;
    /**
     * Abort now: no more finals; pending close() rejects.
     * @returns {void}
     */
    terminate(): void;
    /** @private */
    private _open;
    /** @private */
    private _onFrame;
    /** @private */
    private _onReady;
    /** @private */
    private _onSessionEnd;
    /** @private */
    private _finish;
    /** @private */
    private _send;
    /** @private */
    private _dropSocket;
    /** @private */
    private _setState;
    /** @private */
    private _latency;
    /** @private */
    private _later;
    /** @private */
    private _startKeepalive;
    /** @private */
    private _stopKeepalive;
    /**
     * Events of STREAM_EVENTS from now until `closed`, in order.
     * @returns {AsyncIterableIterator<StreamEvent>}
     */
    [Symbol.asyncIterator](): AsyncIterableIterator<StreamEvent>;
}
/**
 * What the client needs of a WebSocket class: the browser's, or `ws` on Node.
 */
export type WebSocketLike = {
    readyState: number;
    binaryType: string;
    send(data: string | ArrayBufferView | ArrayBuffer): void;
    close(code?: number, reason?: string): void;
    addEventListener(type: string, listener: (event: any) => void): void;
};
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: any) => WebSocketLike;
export type ReconnectExtras = {
    /**
     * Attempts after one loss before giving up (default 8).
     */
    maxRetries?: number | undefined;
    /**
     * Most audio held for replay, in seconds (default 60).
     */
    maxReplaySeconds?: number | undefined;
};
export type ReconnectOptions = import("./reconnect.js").BackoffOptions & ReconnectExtras;
export type ConnectionOptions = {
    /**
     * Server address: ws(s):// or http(s)://, with or without /v1/listen.
     */
    url: string;
    /**
     * A token, or a function returning a fresh one for every (re)connect.
     */
    token?: string | (() => string | Promise<string>) | undefined;
    /**
     * API key sent as `Authorization: Bearer` (Node only: browsers cannot set headers; use `token`).
     */
    apiKey?: string | undefined;
    /**
     * Extra handshake headers (Node only).
     */
    headers?: Record<string, string> | undefined;
    /**
     * Extra raw query parameters.
     */
    params?: import("./messages.js").QueryParams | undefined;
    /**
     * WebSocket implementation where there is no global one (e.g. `ws` on Node 20).
     */
    WebSocket?: WebSocketConstructor | undefined;
    /**
     * Reconnect after an unexpected close (default off).
     */
    reconnect?: boolean | ReconnectOptions | undefined;
    /**
     * Send a keepalive after this long without sending (default 5000; 0 = never).
     */
    keepaliveMs?: number | undefined;
    /**
     * Give up on a (re)connect that got no `ready` in this time (default 15000).
     */
    connectTimeoutMs?: number | undefined;
};
export type ClientOptions = Omit<import("./messages.js").ListenOptions, "token"> & ConnectionOptions;
export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closing" | "closed";
/**
 * Fields the client adds to utterance events.
 */
export type StreamPosition = {
    /**
     * Client-side utterance index: 0, 1, 2, … across reconnects, never repeated.
     */
    index: number;
    /**
     * Which session (0 = first, 1 after the first reconnect, …) produced it.
     */
    session: number;
    /**
     * `start` on the client's stream clock (seconds since the first sample passed to sendAudio).
     */
    streamStart: number;
};
export type ReadyExtras = {
    session: number;
    /**
     * True when this session replaced a lost one.
     */
    resumed: boolean;
};
export type ReadyEvent = import("./messages.js").ReadyMessage & ReadyExtras;
export type SpeechStartedEvent = import("./messages.js").SpeechStartedMessage & StreamPosition;
export type PartialExtras = {
    streamEnd: number;
    /**
     * ms from handing the audio at `end` to sendAudio until this message arrived.
     */
    latencyMs: number | undefined;
};
export type PartialEvent = import("./messages.js").PartialMessage & StreamPosition & PartialExtras;
export type FinalExtras = {
    streamEnd: number;
    /**
     * ms from handing the audio at `end` to sendAudio until this final arrived (includes endpointing).
     */
    latencyMs: number | undefined;
};
export type FinalEvent = import("./messages.js").FinalMessage & StreamPosition & FinalExtras;
export type ErrorEvent = {
    type: "error";
    code: string;
    message: string;
    /**
     * True when the stream ended because of it.
     */
    fatal: boolean;
    closeCode?: number | undefined;
    status?: number | undefined;
};
export type ReconnectingEvent = {
    type: "reconnecting";
    attempt: number;
    delayMs: number;
    closeCode: number;
    reason: string;
};
/**
 * Audio that could not be replayed after a reconnect (replay bound exceeded).
 */
export type GapEvent = {
    type: "gap";
    streamStart: number;
    streamEnd: number;
    lostSeconds: number;
};
export type ClosedEvent = {
    type: "closed";
    code: number;
    reason: string;
    /**
     * True after a complete close_stream → closed exchange (or a normal server close).
     */
    graceful: boolean;
    error?: EarshotError | undefined;
};
export type StateEvent = {
    type: "state";
    state: ClientState;
    previous: ClientState;
};
export type ClientEvents = {
    ready: ReadyEvent;
    speech_started: SpeechStartedEvent;
    partial: PartialEvent;
    final: FinalEvent;
    error: ErrorEvent;
    reconnecting: ReconnectingEvent;
    gap: GapEvent;
    closed: ClosedEvent;
    state: StateEvent;
    /**
     * Every parsed server message, unknown types included.
     */
    message: import("./messages.js").ServerMessage;
};
export type StreamEvent = ReadyEvent | SpeechStartedEvent | PartialEvent | FinalEvent | ErrorEvent | ReconnectingEvent | GapEvent | ClosedEvent;
import { Emitter } from './events.js';
