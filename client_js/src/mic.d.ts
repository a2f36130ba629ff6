// Generated from the JSDoc in mic.js by `npm run types`: edit mic.js, not this file.
/**
 * Map a getUserMedia DOMException to a MicrophoneError.
 * @param {unknown} error
 * @returns {MicrophoneError}
 */
export function microphoneErrorFrom(error: unknown): MicrophoneError;
/** A capture problem; `code` is one of the keys of MicrophoneError.MESSAGES. */
export class MicrophoneError extends Error {
    /** What each code means, as shown to users. */
    static MESSAGES: Readonly<Record<MicrophoneErrorCode, string>>;
    /**
     * @param {MicrophoneErrorCode} code
     * @param {string} [detail]
     */
    constructor(code: MicrophoneErrorCode, detail?: string);
    /** @type {MicrophoneErrorCode} */
    code: MicrophoneErrorCode;
}
/**
 * Microphone capture: 16-bit mono PCM frames at `sampleRate`, and their level.
 * @extends {Emitter<MicrophoneEvents>}
 */
export class MicrophoneCapture extends Emitter<MicrophoneEvents> {
    /** @param {MicrophoneOptions} [options] */
    constructor({ sampleRate, frameMs, deviceId, constraints, workletUrl }?: MicrophoneOptions);
    /** @readonly */
    readonly sampleRate: number;
    /** @readonly */
    readonly frameMs: number;
    /** @readonly */
    readonly deviceId: string | undefined;
    /** @readonly */
    readonly constraints: Record<string, unknown>;
    /** @readonly @type {string | { href: string }} */
    readonly workletUrl: string | {
        href: string;
    };
    /** @readonly */
    readonly active: boolean;
    /** The AudioContext's (device-side) rate once started. @readonly @type {number | undefined} */
    readonly inputSampleRate: number | undefined;
    /** @readonly @type {string | undefined} */
    readonly deviceLabel: string | undefined;
    /** The latest { rms, peak, dbfs } of a frame. @readonly @type {import('./framing.js').AudioLevel} */
    readonly level: import("./framing.js").AudioLevel;
    /** @private @type {any} */
    private _parts;
    /** @private @type {(() => void) | null} */
    private _stopped;
    /**
     * Ask for the microphone and start producing 'audio' and 'level' events. Rejects with MicrophoneError.
     * @returns {Promise<void>}
     */
    start(): Promise<void>;
    /**
     * Stop capturing; the audio still buffered in the worklet is delivered first.
     * @returns {Promise<void>}
     */
    stop(): Promise<void>;
    /**
     * @private
     * @param {any} data
     */
    private _onWorkletMessage;
    /**
     * The device went away (unplugged, permission revoked, OS took it).
     * @private
     */
    private _lost;
    /**
     * @private
     * @param {any} parts
     */
    private _teardown;
}
export type MicrophoneErrorCode = "permission_denied" | "no_device" | "device_busy" | "device_lost" | "insecure_context" | "unsupported" | "audio_failed";
export type MicrophoneOptions = {
    /**
     * Rate of the PCM frames handed out (default 16000).
     */
    sampleRate?: number | undefined;
    /**
     * Frame length in ms, 20-100 (default 50).
     */
    frameMs?: number | undefined;
    /**
     * A device from enumerateDevices().
     */
    deviceId?: string | undefined;
    /**
     * Extra getUserMedia audio constraints (echoCancellation, noiseSuppression, …).
     */
    constraints?: Record<string, unknown> | undefined;
    /**
     * Where mic-worklet.js is served (default: next to mic.js).
     */
    workletUrl?: string | {
        href: string;
    } | undefined;
};
export type MicrophoneEvents = {
    /**
     * One frame of 16-bit mono PCM at `sampleRate`.
     */
    audio: Int16Array;
    level: import("./framing.js").AudioLevel;
    error: MicrophoneError;
    start: {
        type: "start";
        inputSampleRate: number;
        deviceLabel: string | undefined;
    };
    stop: {
        type: "stop";
        reason: "stopped" | "device_lost";
    };
};
import { Emitter } from './events.js';
