#!/usr/bin/env node
// Hand-crafted HTTP/1.1 requests over ONE TCP connection (node:net), for tests
// that need byte-level control: splits, pipelining, chunked bodies, header
// spelling, identity switches on one connection, 2026-07-28-era requests.
//
//   node raw.mjs SPEC_JSON | SPEC_FILE | -   [--host H] [--port N]
//
// Spec:
// {
//   "host": "127.0.0.1", "port": 8080,
//   "split": N,            // write the bytes in N-byte pieces (default: whole request at once)
//   "delay_ms": MS,        // pause between pieces (and between pipelined requests)
//   "pipeline": false,     // true: write every request before reading any response
//   "timeout_ms": 5000,    // per response
//   "connect_timeout_ms": 5000,
//   "linger_ms": 0,        // after the last response, wait this long for the peer to close
//   "half_close": false,   // shut down our write side after the last request
//   "auto_session": false, // add Mcp-Session-Id (last one a response issued) to requests that lack it
//   "max_body": 65536,     // body characters printed per response (body_len is always the full length)
//   "requests": [{
//     "method": "POST", "path": "/mcp",
//     "headers": {"K": "V"} | [["K","V"], ...],   // array form keeps order and duplicates
//     "body": "text" | {json},  "body_b64": "...",
//     "chunked": false | N,   // send the body with Transfer-Encoding: chunked (N-byte chunks)
//     "raw": "GET / HTTP/1.1\r\n...", "raw_b64": "...",   // exact bytes; nothing added
//     "no_auto_headers": false,  // do not add Host / Content-Length / Content-Type / Accept
//     "split": N, "delay_ms": MS, "pause_before_ms": MS,
//     "read_ms": MS,           // read the response for MS then report it partial (GET SSE streams)
//     "expect_no_response": false, // the request is expected to get no answer (do not wait)
//     "joined": false          // sequential mode: sent in one write with the request before it
//   }]
// }
// "{{session}}" in a header value or body string is replaced by the last
// Mcp-Session-Id a response carried (sequential mode).
//
// Output, one JSON line each: {"connected":true,"local":..,"remote":..}, then
// per response {"response":i,"status":..,"reason":..,"headers":{..},"body":..,
// "body_len":..,"json":..|"messages":[..]}, {"response":i,"timeout":true,..}
// when none came in time, {"closed":true,"by":"peer","error":CODE|null,..} if
// the peer closed or reset the connection, and last {"done":true,...}.
// Exit 0 if every expected response arrived, 1 otherwise, 2 on bad usage.
import net from 'node:net';
import fs from 'node:fs';
import { parseArgs } from 'node:util';

const USAGE = 'usage: node raw.mjs SPEC_JSON|SPEC_FILE|- [--host H] [--port N]';
const out = (o) => {
  try {
    fs.writeSync(1, JSON.stringify(o) + '\n');
  } catch {
    /* ignore */
  }
};
function die(msg) {
  process.stderr.write(`raw.mjs: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({ options: { host: { type: 'string' }, port: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true });
} catch (e) {
  die(e.message);
}
if (parsed.values.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
const src = parsed.positionals[0];
if (src === undefined) die('missing spec');
let spec;
try {
  const text = src === '-' ? fs.readFileSync(0, 'utf8') : src.trimStart().startsWith('{') ? src : fs.readFileSync(src, 'utf8');
  spec = JSON.parse(text);
} catch (e) {
  die(`cannot read spec: ${e.message}`);
}
if (parsed.values.host) spec.host = parsed.values.host;
if (parsed.values.port) spec.port = Number(parsed.values.port);
let host = spec.host ?? '127.0.0.1';
if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
const port = Number(spec.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) die(`bad port ${spec.port}`);
if (!Array.isArray(spec.requests)) die('spec.requests must be an array');
const timeoutMs = spec.timeout_ms ?? 5000;
const maxBody = spec.max_body ?? 65536;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let sessionId = null;
const subst = (s) => (typeof s === 'string' && sessionId !== null ? s.split('{{session}}').join(sessionId) : s);

// ---------------------------------------------------------------- requests
function build(r) {
  if (r.raw_b64 !== undefined) return Buffer.from(r.raw_b64, 'base64');
  if (r.raw !== undefined) return Buffer.from(subst(r.raw), 'latin1');
  let body = null;
  if (r.body_b64 !== undefined) body = Buffer.from(r.body_b64, 'base64');
  else if (typeof r.body === 'string') body = Buffer.from(subst(r.body), 'utf8');
  else if (r.body !== undefined && r.body !== null) body = Buffer.from(subst(JSON.stringify(r.body)), 'utf8');
  let headers = Array.isArray(r.headers) ? r.headers.map(([k, v]) => [k, v]) : Object.entries(r.headers ?? {});
  headers = headers.map(([k, v]) => [k, subst(String(v))]);
  const has = (name) => headers.some(([k]) => k.toLowerCase() === name);
  if (!r.no_auto_headers) {
    const pre = [];
    if (!has('host')) pre.push(['Host', `${host.includes(':') ? `[${host}]` : host}:${port}`]);
    if (body !== null && !has('content-type')) pre.push(['Content-Type', 'application/json']);
    if (!has('accept') && (r.method ?? 'POST') !== 'DELETE')
      pre.push(['Accept', (r.method ?? 'POST') === 'GET' ? 'text/event-stream' : 'application/json, text/event-stream']);
    if (spec.auto_session && sessionId !== null && !has('mcp-session-id')) pre.push(['Mcp-Session-Id', sessionId]);
    if (body !== null && r.chunked && !has('transfer-encoding')) pre.push(['Transfer-Encoding', 'chunked']);
    else if (body !== null && !has('content-length')) pre.push(['Content-Length', String(body.length)]);
    headers = [...pre, ...headers];
  }
  const head = `${r.method ?? 'POST'} ${r.path ?? '/mcp'} ${r.http_version ?? 'HTTP/1.1'}\r\n` +
    headers.map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n';
  const parts = [Buffer.from(head, 'latin1')];
  if (body !== null) {
    if (r.chunked) {
      const n = r.chunked === true ? body.length || 1 : Number(r.chunked);
      for (let i = 0; i < body.length; i += n) {
        const c = body.subarray(i, i + n);
        parts.push(Buffer.from(c.length.toString(16) + '\r\n'), c, Buffer.from('\r\n'));
      }
      parts.push(Buffer.from('0\r\n\r\n'));
    } else parts.push(body);
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- connection
const sock = net.connect({ host, port });
sock.setNoDelay(true);
let inbuf = Buffer.alloc(0);
let peerClosed = false;
let closeError = null;
let wake = null; // resolver for the reader waiting for data / close
const notify = () => {
  const w = wake;
  wake = null;
  w?.();
};
sock.on('data', (d) => {
  inbuf = inbuf.length ? Buffer.concat([inbuf, d]) : d;
  notify();
});
sock.on('error', (e) => {
  closeError = e.code ?? e.message;
  peerClosed = true;
  notify();
});
sock.on('end', () => {
  peerClosed = true;
  notify();
});
sock.on('close', () => {
  peerClosed = true;
  notify();
});

function waitData(deadline) {
  return new Promise((resolve) => {
    if (peerClosed) return resolve();
    const t = setTimeout(() => {
      wake = null;
      resolve();
    }, Math.max(0, deadline - Date.now()));
    wake = () => {
      clearTimeout(t);
      resolve();
    };
  });
}

async function writeBytes(buf, split, delay) {
  const n = split && split > 0 ? split : buf.length || 1;
  for (let i = 0; i < buf.length; i += n) {
    if (peerClosed) return false;
    if (i > 0 && delay > 0) await sleep(delay);
    const piece = buf.subarray(i, i + n);
    const ok = await new Promise((resolve) => sock.write(piece, (err) => resolve(!err)));
    if (!ok) return false;
    if (i + n < buf.length && !(delay > 0)) await new Promise((r) => setImmediate(r));
  }
  return true;
}

// ---------------------------------------------------------------- responses
function parseHead(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i <= 0) continue;
    const k = l.slice(0, i).trim().toLowerCase();
    const v = l.slice(i + 1).trim();
    headers[k] = headers[k] === undefined ? v : [].concat(headers[k], v);
  }
  return { version: m?.[1] ?? null, status: m ? Number(m[2]) : null, reason: m?.[3] ?? '', statusLine: lines[0], headers, headLen: end + 4 };
}

// Try to take one complete response from buf. Returns {resp, used} or null.
function takeChunked(buf, start) {
  let p = start;
  const chunks = [];
  for (;;) {
    const le = buf.indexOf('\r\n', p);
    if (le < 0) return null;
    const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0].trim(), 16);
    if (Number.isNaN(size)) return { error: 'bad chunk size', used: buf.length, body: Buffer.concat(chunks) };
    p = le + 2;
    if (size === 0) {
      // trailers until an empty line
      for (;;) {
        const te = buf.indexOf('\r\n', p);
        if (te < 0) return null;
        const empty = te === p;
        p = te + 2;
        if (empty) return { body: Buffer.concat(chunks), used: p };
      }
    }
    if (buf.length < p + size + 2) return { partial: true, body: Buffer.concat([...chunks, buf.subarray(p, Math.min(buf.length, p + size))]) };
    chunks.push(buf.subarray(p, p + size));
    p += size + 2;
  }
}

function describe(i, head, bodyBuf, extra = {}) {
  const body = bodyBuf.toString('utf8');
  const o = { response: i, status: head.status, reason: head.reason, version: head.version, headers: head.headers,
    body: body.length > maxBody ? body.slice(0, maxBody) : body, body_len: bodyBuf.length, ...extra };
  if (body.length > maxBody) o.body_truncated = true;
  const ct = String(head.headers['content-type'] ?? '');
  if (ct.includes('text/event-stream')) {
    const messages = [];
    for (const ev of body.split(/\r?\n\r?\n/)) {
      const data = ev.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
      if (!data) continue;
      try {
        messages.push(JSON.parse(data));
      } catch {
        messages.push(data);
      }
    }
    o.messages = messages;
  } else if (ct.includes('json') && body) {
    try {
      o.json = JSON.parse(body);
    } catch {
      /* leave as text */
    }
  }
  return o;
}

// Read one response (i) for request r. Returns true if a full (or read_ms partial) response came.
async function readResponse(i, r) {
  const deadline = Date.now() + (r.read_ms ?? r.timeout_ms ?? timeoutMs);
  for (;;) {
    const head = parseHead(inbuf);
    if (head) {
      if (head.status >= 100 && head.status < 200 && head.status !== 101) {
        out({ response: i, interim: true, status: head.status, headers: head.headers });
        inbuf = inbuf.subarray(head.headLen);
        continue;
      }
      const te = String(head.headers['transfer-encoding'] ?? '').toLowerCase();
      const noBody = (r.method ?? 'POST') === 'HEAD' || head.status === 204 || head.status === 304;
      const cl = head.headers['content-length'] !== undefined ? Number([].concat(head.headers['content-length'])[0]) : null;
      let done = null;
      let partialBody = null;
      if (noBody) done = { body: Buffer.alloc(0), used: head.headLen };
      else if (te.includes('chunked')) {
        const c = takeChunked(inbuf, head.headLen);
        if (c && !c.partial) done = c;
        else partialBody = c?.body ?? Buffer.alloc(0);
      } else if (cl !== null) {
        if (inbuf.length >= head.headLen + cl) done = { body: inbuf.subarray(head.headLen, head.headLen + cl), used: head.headLen + cl };
        else partialBody = inbuf.subarray(head.headLen);
      } else {
        partialBody = inbuf.subarray(head.headLen); // read until close
        if (peerClosed) done = { body: partialBody, used: inbuf.length };
      }
      const s = head.headers['mcp-session-id'];
      if (s) sessionId = [].concat(s)[0];
      if (done) {
        out(describe(i, head, done.body));
        inbuf = inbuf.subarray(done.used);
        return true;
      }
      if (Date.now() >= deadline || peerClosed) {
        if (r.read_ms !== undefined && !peerClosed) {
          out(describe(i, head, partialBody, { partial: true }));
          return 'stream';
        }
        out(describe(i, head, partialBody, { partial: true, incomplete: true }));
        return false;
      }
    } else if (peerClosed || Date.now() >= deadline) {
      if (!peerClosed) out({ response: i, timeout: true, received: inbuf.toString('latin1').slice(0, 2000) });
      else if (inbuf.length) out({ response: i, incomplete: true, received: inbuf.toString('latin1').slice(0, 2000) });
      return false;
    }
    await waitData(deadline);
  }
}

// ---------------------------------------------------------------- main
let got = 0;
let expected = 0;
let reported = false;
function reportClosed() {
  if (reported || !peerClosed) return;
  reported = true;
  out({ closed: true, by: 'peer', error: closeError, responses: got, expected, unread: inbuf.length });
}
function finish() {
  reportClosed();
  out({ done: true, responses: got, expected, closed_by_peer: reported, session_id: sessionId });
  sock.destroy();
  process.exit(got === expected ? 0 : 1);
}

const connectTimer = setTimeout(() => {
  out({ connected: false, error: 'connect timeout' });
  process.exit(1);
}, spec.connect_timeout_ms ?? 5000);
let isConnected = false;
sock.once('connect', async () => {
  isConnected = true;
  clearTimeout(connectTimer);
  out({ connected: true, local: `${sock.localAddress}:${sock.localPort}`, remote: `${sock.remoteAddress}:${sock.remotePort}` });
  const reqs = spec.requests;
  try {
    if (spec.pipeline) {
      for (const [i, r] of reqs.entries()) {
        if (i > 0 && (r.pause_before_ms ?? spec.delay_ms ?? 0) > 0) await sleep(r.pause_before_ms ?? spec.delay_ms);
        const bytes = build(r);
        const wrote = await writeBytes(bytes, r.split ?? spec.split, r.delay_ms ?? spec.delay_ms ?? 0);
        out({ sent: i, bytes: bytes.length, complete: wrote });
        if (!wrote) break;
      }
      if (spec.half_close && !peerClosed) sock.end();
      for (const [i, r] of reqs.entries()) {
        if (r.expect_no_response) continue;
        expected++;
        const ok = await readResponse(i, r);
        if (ok) got++;
        if (ok !== true) break;
      }
    } else {
      for (const [i, r] of reqs.entries()) {
        if ((r.pause_before_ms ?? 0) > 0) await sleep(r.pause_before_ms);
        if (peerClosed) {
          if (!r.expect_no_response) expected++;
          break;
        }
        // A joined request went out with the one before it.
        if (!r.joined) {
          let bytes = build(r);
          for (let j = i + 1; j < reqs.length && reqs[j].joined; j++) bytes = Buffer.concat([bytes, build(reqs[j])]);
          const wrote = await writeBytes(bytes, r.split ?? spec.split, r.delay_ms ?? spec.delay_ms ?? 0);
          out({ sent: i, bytes: bytes.length, complete: wrote });
        }
        if (i === reqs.length - 1 && spec.half_close && !peerClosed) sock.end();
        if (r.expect_no_response) continue;
        expected++;
        const ok = await readResponse(i, r);
        if (ok) got++;
        if (ok !== true) break;
      }
    }
    if ((spec.linger_ms ?? 0) > 0) {
      // wait for the peer to close within linger_ms (data arriving meanwhile is kept unread)
      const end = Date.now() + spec.linger_ms;
      while (!peerClosed && Date.now() < end) await waitData(end);
    }
  } catch (e) {
    out({ error: String(e?.stack ?? e) });
  }
  finish();
});
sock.once('error', () => {
  if (isConnected) return;
  out({ connected: false, error: closeError });
  process.exit(1);
});
