// The Earshot demo page: microphone or file → the JS SDK → live text.
// Everything audio and network goes through the SDK served at /sdk/.
import { EarshotClient, MicrophoneCapture, downmix, resample } from '/sdk/index.js';

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const CHUNK_MS = 100; // file streaming frame

// Live state, also read by the browser test (tests/test_browser_demo.py).
const demo = {
  state: 'idle',
  finals: [], // {index, text, language, streamStart, streamEnd, latencyMs}
  partials: 0,
  sentSeconds: 0,
  errors: [],
  micRate: undefined,
  peakDbfs: -100, // loudest microphone frame seen (the level meter's input)
};
window.earshotDemo = demo;

let run = null; // {kind: 'mic'|'file', client, mic?, cancelled?}
const latencies = [];

// ------------------------------------------------------------------ view

const fmtTime = (s) => {
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, '0')}`;
};
const fmtMs = (ms) => (ms === undefined ? '–' : `${Math.round(ms)} ms`);

function setState(state) {
  demo.state = state;
  $('state').dataset.state = state;
  $('state').textContent = state;
}

function showError(message) {
  demo.errors.push(message);
  $('error').textContent = message;
  $('error').hidden = false;
}

function setRunning(kind) {
  const button = $('start');
  button.textContent = kind ? 'Stop' : 'Start microphone';
  button.classList.toggle('recording', Boolean(kind));
  button.disabled = false;
  $('file').disabled = Boolean(kind);
  if (!kind) {
    $('level').style.width = '0%';
    $('partial').hidden = true;
  }
}

function showPartial(p) {
  demo.partials += 1;
  const el = $('partial');
  el.dataset.index = p.index;
  el.querySelector('.time').textContent = `${fmtTime(p.streamStart)} – ${fmtTime(p.streamEnd)}`;
  el.querySelector('.text').textContent = p.text;
  el.hidden = !p.text;
  $('placeholder').hidden = true;
  $('stat-partial').textContent = fmtMs(p.latencyMs);
}

function addFinal(f) {
  demo.finals.push({
    index: f.index,
    text: f.text,
    language: f.language,
    streamStart: f.streamStart,
    streamEnd: f.streamEnd,
    latencyMs: f.latencyMs,
  });
  if ($('partial').dataset.index === String(f.index)) $('partial').hidden = true;
  if (!f.text.trim()) return; // an utterance that held no words after filtering
  const li = document.createElement('li');
  li.className = 'utterance final';
  li.dataset.index = f.index;
  li.innerHTML =
    '<span class="meta"><span class="time"></span><span><span class="badge lang"></span> <span class="latency"></span></span></span>' +
    '<span class="text"></span>';
  li.querySelector('.time').textContent = `${fmtTime(f.streamStart)} – ${fmtTime(f.streamEnd)}`;
  li.querySelector('.lang').textContent = f.language || '?';
  li.querySelector('.latency').textContent = fmtMs(f.latencyMs);
  li.querySelector('.text').textContent = f.text;
  $('finals').append(li);
  $('placeholder').hidden = true;
  if (f.latencyMs !== undefined) latencies.push(f.latencyMs);
  const sorted = [...latencies].sort((a, b) => a - b);
  $('stat-latency').textContent = fmtMs(f.latencyMs);
  $('stat-median').textContent = fmtMs(sorted[Math.floor(sorted.length / 2)]);
  $('stat-count').textContent = String($('finals').children.length);
  li.scrollIntoView({ block: 'nearest' });
}

function updateSent(client) {
  demo.sentSeconds = client.stats.sentSeconds;
  $('stat-audio').textContent = `${demo.sentSeconds.toFixed(1)} s`;
}

// ------------------------------------------------------------------ connection

function newClient() {
  const client = new EarshotClient({
    url: location.origin, // → ws(s)://host/v1/listen
    language: $('language').value,
    interimResults: true,
    format: query.get('format') === 'msgpack' ? 'msgpack' : 'json',
    token: query.get('token') || undefined, // browsers cannot send API keys; use a token
    reconnect: true,
  });
  client.on('state', ({ state }) => setState(state));
  client.on('ready', (r) => ($('stat-model').textContent = r.model ?? '?'));
  client.on('partial', showPartial);
  client.on('final', addFinal);
  client.on('reconnecting', (e) => console.info(`reconnecting (close ${e.closeCode}), attempt ${e.attempt}`));
  client.on('gap', (g) => showError(`Connection was lost too long: ${g.lostSeconds.toFixed(1)} s of audio were not transcribed.`));
  client.on('error', (e) => {
    if (e.fatal) showError(`Connection error: ${e.message}`);
    else console.warn('server error', e);
  });
  client.on('closed', (e) => {
    if (e.error) setState('error');
    if (run?.client === client) stop(); // the stream ended under us: release the microphone too
  });
  return client;
}

// ------------------------------------------------------------------ microphone

async function startMic() {
  $('error').hidden = true;
  $('start').disabled = true;
  const client = newClient();
  const mic = new MicrophoneCapture({ sampleRate: 16000, frameMs: 50 });
  run = { kind: 'mic', client, mic };
  mic.on('audio', (pcm) => {
    if (client.state === 'closing' || client.state === 'closed') return;
    client.sendAudio(pcm);
    updateSent(client);
  });
  mic.on('level', ({ dbfs }) => {
    demo.peakDbfs = Math.max(demo.peakDbfs, dbfs);
    $('level').style.width = `${Math.max(0, Math.min(100, ((dbfs + 60) / 60) * 100))}%`;
  });
  mic.on('error', (err) => {
    showError(err.message);
    stop();
  });
  try {
    // In parallel: audio captured before the server is ready is held by the SDK and sent after.
    await Promise.all([mic.start(), client.connect()]);
    demo.micRate = mic.inputSampleRate;
    setRunning('mic');
  } catch (err) {
    showError(err.message);
    run = null;
    await mic.stop().catch(() => {});
    client.terminate();
    setRunning(null);
  }
}

// ------------------------------------------------------------------ file

async function decodeFile(file) {
  // decodeAudioData gives the file's audio at the context's rate; the SDK resamples it to 16 kHz.
  const context = new OfflineAudioContext({ numberOfChannels: 1, length: 1, sampleRate: 48000 });
  const buffer = await context.decodeAudioData(await file.arrayBuffer());
  const channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c));
  const mono = downmix(channels);
  return resample(mono, buffer.sampleRate, 16000);
}

async function streamFile(file) {
  if (run) await stop();
  $('error').hidden = true;
  let samples;
  try {
    samples = await decodeFile(file);
  } catch (err) {
    showError(`Could not decode ${file.name}: ${err.message ?? err}`);
    return;
  }
  const client = newClient();
  run = { kind: 'file', client, cancelled: false };
  const job = run;
  setRunning('file');
  try {
    await client.connect();
  } catch (err) {
    showError(err.message);
    run = null;
    setRunning(null);
    return;
  }
  const speed = Number($('speed').value) || 1;
  const step = (16000 * CHUNK_MS) / 1000;
  const total = samples.length / 16000;
  const t0 = performance.now();
  for (let at = 0, k = 1; at < samples.length && !job.cancelled; at += step, k++) {
    client.sendAudio(samples.subarray(at, at + step));
    updateSent(client);
    $('file-progress').textContent = `${file.name}: ${Math.min(total, (at + step) / 16000).toFixed(1)} / ${total.toFixed(1)} s`;
    const wait = t0 + (k * CHUNK_MS) / speed - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  if (!job.cancelled && run === job) await stop();
}

// ------------------------------------------------------------------ stop

async function stop() {
  const current = run;
  if (!current) return;
  run = null;
  current.cancelled = true;
  $('start').disabled = true;
  try {
    if (current.mic) await current.mic.stop();
    // Graceful: the server finalizes the last utterance; its final still shows up.
    if (current.client.state !== 'closed') await current.client.close();
  } catch (err) {
    showError(err.message);
  } finally {
    setRunning(null);
  }
}

// ------------------------------------------------------------------ wiring

$('start').addEventListener('click', () => (run ? stop() : startMic()));
$('clear').addEventListener('click', () => {
  $('finals').replaceChildren();
  $('placeholder').hidden = false;
  latencies.length = 0;
  demo.finals.length = 0;
});
$('file').addEventListener('change', (e) => {
  const file = e.target.files[0];
  e.target.value = '';
  if (file) streamFile(file);
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const file = e.dataTransfer.files[0];
  if (file) streamFile(file);
});
if (query.get('lang')) $('language').value = query.get('lang');
$('start').disabled = false; // the module loaded: the page works
