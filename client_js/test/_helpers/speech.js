// The real-speech clips: the repository's fixture set (tests/data/speech) or $EARSHOT_SPEECH_DIR.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeWav } from '../../src/wav.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** tests/data/speech in the repository, or $EARSHOT_SPEECH_DIR. */
export const SPEECH_DIR = process.env.EARSHOT_SPEECH_DIR || resolve(repoRoot, 'tests/data/speech');

export function speechAvailable() {
  return existsSync(join(SPEECH_DIR, 'manifest.jsonl'));
}

export function manifest() {
  return Object.fromEntries(
    readFileSync(join(SPEECH_DIR, 'manifest.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .map((m) => [m.file, m]),
  );
}

/** A clip as { text, language, sampleRate, samples (Float32Array) }. */
export function loadClip(file) {
  const meta = manifest()[file];
  if (!meta) throw new Error(`${file} is not in ${SPEECH_DIR}/manifest.jsonl`);
  return { ...meta, ...decodeWav(readFileSync(join(SPEECH_DIR, file))) };
}
