// Compiled (not run) by types.test.js: the generated declarations must
// describe the public API as the README uses it, under `strict`.
import {
  EarshotClient,
  EarshotError,
  LIMITS,
  MicrophoneCapture,
  MicrophoneError,
  Resampler,
  connect,
  decodeWav,
  encodePcm,
  resample,
  type ClientOptions,
  type FinalEvent,
  type StreamEvent,
} from 'earshot-client';
import { MicrophoneCapture as Mic2 } from 'earshot-client/mic';

declare const WsImpl: ClientOptions['WebSocket'];

export async function node(wav: Uint8Array): Promise<string[]> {
  const stream = await connect({
    url: 'ws://localhost:8000',
    WebSocket: WsImpl,
    sampleRate: 16000,
    encoding: 'pcm_s16le',
    language: 'auto',
    interimResults: true,
    wordTimestamps: true,
    format: 'msgpack',
    endpointingMs: 500,
    prompt: 'Earshot',
    token: async () => 'tok',
    reconnect: { maxRetries: 5, maxReplaySeconds: 30 },
  });
  const texts: string[] = [];
  const off = stream.on('final', (f: FinalEvent) => {
    texts.push(`${f.index} ${f.text} ${f.language} ${f.words.map((w) => w.word).join(' ')} ${f.latencyMs ?? ''}`);
  });
  stream.on('partial', (p) => p.text.length + p.streamEnd);
  stream.on('error', (e) => (e.fatal ? e.code : e.message));
  stream.on('state', (s) => s.state === 'reconnecting');
  stream.on('*', (e) => e.type);
  const first: FinalEvent = await stream.once('final');
  texts.push(`${first.streamEnd} ${LIMITS.endpointingMs[0]}-${LIMITS.maxUtteranceS[1]}`);
  const { samples, sampleRate } = decodeWav(wav);
  stream.sendAudio(resample(samples, sampleRate, 16000));
  stream.sendAudio(new Int16Array(160));
  stream.sendAudio(new ArrayBuffer(320));
  stream.finalize();
  const closed = await stream.close({ timeoutMs: 10000 });
  off();
  return closed.graceful ? texts : [];
}

export async function iterate(client: EarshotClient): Promise<number> {
  let n = 0;
  for await (const ev of client) {
    const e: StreamEvent = ev;
    if (e.type === 'final') n += e.index;
    else if (e.type === 'closed' && e.error instanceof EarshotError) n -= 1;
  }
  return n;
}

export async function browser(client: EarshotClient): Promise<void> {
  const mic = new MicrophoneCapture({ sampleRate: 16000, frameMs: 50 });
  mic.on('audio', (pcm: Int16Array) => client.sendAudio(pcm));
  mic.on('level', ({ dbfs }) => dbfs > -50);
  mic.on('error', (e: MicrophoneError) => e.code === 'device_lost');
  try {
    await mic.start();
  } catch (e) {
    if (e instanceof MicrophoneError && e.code === 'permission_denied') return;
  }
  await mic.stop();
  const r = new Resampler(48000, 16000);
  encodePcm(r.process(new Float32Array(128)), 'pcm_s16le');
  new Mic2();
}
