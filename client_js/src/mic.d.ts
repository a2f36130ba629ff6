import { Emitter } from './events.js';
import type { AudioLevel } from './framing.js';

export type MicrophoneErrorCode =
  | 'permission_denied'
  | 'no_device'
  | 'device_busy'
  | 'device_lost'
  | 'insecure_context'
  | 'unsupported'
  | 'audio_failed';

export class MicrophoneError extends Error {
  constructor(code: MicrophoneErrorCode, detail?: string);
  code: MicrophoneErrorCode;
  static MESSAGES: Readonly<Record<MicrophoneErrorCode, string>>;
}

export function microphoneErrorFrom(error: unknown): MicrophoneError;

export interface MicrophoneOptions {
  /** Rate of the PCM frames handed out (default 16000). */
  sampleRate?: number;
  /** Frame length in ms, 20-100 (default 50). */
  frameMs?: number;
  deviceId?: string;
  /** Extra getUserMedia audio constraints (echoCancellation, noiseSuppression, …). */
  constraints?: Record<string, unknown>;
  /** Where mic-worklet.js is served (default: next to mic.js). */
  workletUrl?: string | { href: string };
}

export interface MicrophoneEvents {
  /** One frame of 16-bit mono PCM at `sampleRate`. */
  audio: Int16Array;
  level: AudioLevel;
  error: MicrophoneError;
  start: { type: 'start'; inputSampleRate: number; deviceLabel: string | undefined };
  stop: { type: 'stop'; reason: 'stopped' | 'device_lost' };
}

export class MicrophoneCapture extends Emitter<MicrophoneEvents> {
  constructor(options?: MicrophoneOptions);
  readonly active: boolean;
  readonly sampleRate: number;
  readonly frameMs: number;
  readonly inputSampleRate: number | undefined;
  readonly deviceLabel: string | undefined;
  readonly level: AudioLevel;
  /** Ask for the microphone and start capturing. Rejects with MicrophoneError. */
  start(): Promise<void>;
  /** Stop; buffered audio is delivered first. */
  stop(): Promise<void>;
}
