// The client over real sockets with the `ws` package (the Node path): a small
// in-process server speaking enough of /v1/listen to check what only a real
// socket shows: refused handshakes with their status and body, headers, binary
// msgpack frames, close codes from the wire, and replay after a lost connection.
import assert from 'node:assert/strict';
import http from 'node:http';
import test from 'node:test';
import { encode } from '@msgpack/msgpack';
import WebSocket, { WebSocketServer } from 'ws';
import { EarshotClient, EarshotError } from '../src/index.js';

// script(ws, req, n): how the n-th accepted connection behaves.
async function toyServer(script) {
  const server = http.createServer();
  const wss = new WebSocketServer({ noServer: true });
  const seen = [];
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://x');
    if (url.searchParams.get('language') === 'xx') {
      const body = JSON.stringify({ error: 'invalid_parameter', parameter: 'language' });
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const n = seen.length;
      seen.push({ url, headers: req.headers, frames: [] });
      ws.on('message', (data, isBinary) => seen[n].frames.push(isBinary ? data.length / 2 : JSON.parse(data.toString()).type));
      script(ws, url, n);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    seen,
    close: () => {
      for (const ws of wss.clients) ws.terminate();
      return new Promise((r) => server.close(r));
    },
  };
}

const pack = (ws, url, msg) => ws.send(url.searchParams.get('format') === 'msgpack' ? encode(msg) : JSON.stringify(msg));

// Says ready, answers each finalize with a final for the audio since the last one, honours close_stream.
function echoServer(ws, url, n) {
  let samples = 0;
  let utterance = 0;
  let from = 0;
  pack(ws, url, { type: 'ready', session_id: `toy${n}`, sample_rate: 16000, model: 'toy' });
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      samples += data.length / 2;
      return;
    }
    const { type } = JSON.parse(data.toString());
    const finalize = () => {
      if (samples > from) {
        pack(ws, url, { type: 'final', utterance: utterance++, start: from / 16000, end: samples / 16000, text: `${samples - from} samples`, language: 'en' });
        from = samples;
      }
    };
    if (type === 'finalize') finalize();
    if (type === 'close_stream') {
      finalize();
      pack(ws, url, { type: 'closed' });
      ws.close(1000);
    }
  });
}

test('a refused handshake reports the HTTP status and the body naming the parameter', async () => {
  const srv = await toyServer(echoServer);
  try {
    const c = new EarshotClient({ url: srv.url, WebSocket, language: 'xx' });
    await assert.rejects(c.connect(), (e) => {
      assert.ok(e instanceof EarshotError);
      assert.equal(e.code, 'handshake_failed');
      assert.equal(e.status, 400);
      assert.match(e.body, /"parameter":"language"/);
      return true;
    });
  } finally {
    await srv.close();
  }
});

test('nothing listening: connect fails with a clear error', async () => {
  const srv = await toyServer(echoServer);
  const url = srv.url;
  await srv.close();
  const c = new EarshotClient({ url, WebSocket });
  await assert.rejects(c.connect(), (e) => e.code === 'handshake_failed' && /ECONNREFUSED|could not open/.test(e.message));
});

test('apiKey becomes an Authorization header; msgpack over a real socket; graceful close', async () => {
  const srv = await toyServer(echoServer);
  try {
    const c = new EarshotClient({ url: srv.url, WebSocket, apiKey: 'sk-test', format: 'msgpack' });
    await c.connect();
    assert.equal(srv.seen[0].headers.authorization, 'Bearer sk-test');
    c.sendAudio(new Int16Array(3200));
    c.finalize();
    const f = await c.once('final');
    assert.equal(f.text, '3200 samples');
    c.sendAudio(new Int16Array(1600));
    const closed = await c.close();
    assert.equal(closed.graceful, true);
    assert.equal(c.stats.finals, 2);
    assert.deepEqual(srv.seen[0].frames, [3200, 'finalize', 1600, 'close_stream']);
  } finally {
    await srv.close();
  }
});

test('real close codes: 1013 at admission is retried, a killed connection is resumed without loss', async () => {
  const srv = await toyServer((ws, url, n) => {
    if (n === 0) ws.close(1013, 'overloaded'); // refuse the first session
    else echoServer(ws, url, n);
  });
  try {
    const c = new EarshotClient({ url: srv.url, WebSocket, reconnect: { initialDelayMs: 5, overloadedDelayMs: 5 } });
    const finals = [];
    c.on('final', (f) => finals.push(f));
    await c.connect();
    c.sendAudio(new Int16Array(1600));
    c.finalize();
    await c.once('final'); // covers samples 0..1600
    c.sendAudio(new Int16Array(800));
    await new Promise((r) => setTimeout(r, 20));
    // Kill the live session's TCP connection (ws's underlying net.Socket): an abnormal close (1006).
    const reconnecting = c.once('reconnecting');
    c._socket._socket.destroy();
    assert.equal((await reconnecting).closeCode, 1006);
    await c.once('ready');
    c.sendAudio(new Int16Array(400));
    await c.close();
    assert.deepEqual(finals.map((f) => [f.index, f.session, f.text]), [
      [0, 0, '1600 samples'],
      [1, 1, '1200 samples'], // the 800 unacknowledged samples were replayed, then 400 more
    ]);
    assert.deepEqual(srv.seen[2].frames, [800, 400, 'close_stream']);
    assert.ok(Math.abs(finals[1].streamStart - 0.1) < 1e-9);
  } finally {
    await srv.close();
  }
});
