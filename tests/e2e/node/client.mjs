#!/usr/bin/env node
// Real MCP client (TypeScript SDK 1.x: Client + StreamableHTTPClientTransport)
// for mcpwarden end-to-end tests. One JSON line per step on stdout; never
// crashes on a network error; exit 0 iff every step succeeded.
//
//   node client.mjs --url URL [--token T] [--name N] [--version V]
//                   [--tool NAME] [--args JSON] [--calls K] [--interval-ms MS]
//                   [--duration-s S] [--list-tools] [--session-id ID]
//                   [--print-session] [--session-file F] [--protocol-version V]
//                   [--header 'K: V']... [--timeout-ms MS] [--hold-s S]
//                   [--terminate] [--no-get-stream] [--sse-retries N] [--max-result-chars N]
//                   [--keepalive-ms MS] [--max-connections N]
import { parseArgs } from 'node:util';
import fs from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

const USAGE = `usage: node client.mjs --url URL [--token T] [--name N --version V] [--tool NAME --args JSON]
  [--calls K] [--interval-ms MS] [--duration-s S] [--list-tools] [--session-id ID] [--print-session]
  [--session-file F] [--protocol-version V] [--header 'K: V']... [--timeout-ms MS] [--hold-s S]
  [--terminate] [--no-get-stream] [--sse-retries N] [--max-result-chars N]
  [--keepalive-ms MS] [--max-connections N]`;

const out = (obj) => {
  try {
    fs.writeSync(1, JSON.stringify(obj) + '\n');
  } catch {
    /* stdout gone */
  }
};

let steps_failed = 0;
let ok_calls = 0;
let failed_calls = 0;

function errInfo(e) {
  // Classify an error the way a test wants to assert on it.
  if (e instanceof McpError) {
    return { error: e.message, code: e.code, kind: e.code === -32001 && /timed out/i.test(e.message) ? 'timeout' : 'jsonrpc' };
  }
  if (e instanceof StreamableHTTPError) return { error: e.message, code: e.code ?? null, kind: 'http' };
  if (e && e.name === 'UnauthorizedError') return { error: e.message, code: 401, kind: 'http' };
  // fetch() network failure: TypeError('fetch failed') with cause {code: ECONNRESET|UND_ERR_SOCKET|ECONNREFUSED ...}
  let c = e?.cause;
  const chain = [];
  while (c && chain.length < 4) {
    chain.push(c.code ?? c.name ?? String(c.message ?? c));
    c = c.cause;
  }
  const code = e?.cause?.code ?? e?.code ?? null;
  const msg = [e?.message ?? String(e), e?.cause?.message].filter(Boolean).join(': ');
  return { error: msg, code, kind: e?.name === 'AbortError' ? 'abort' : 'network', ...(chain.length ? { cause: chain } : {}) };
}

process.on('unhandledRejection', (e) => out({ step: 'unhandled', ok: false, ...errInfo(e) }));
process.on('uncaughtException', (e) => {
  out({ step: 'uncaught', ok: false, ...errInfo(e) });
  out({ step: 'done', ok_calls, failed_calls: failed_calls + 1 });
  process.exit(1);
});

let opts;
try {
  opts = parseArgs({
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      name: { type: 'string' },
      version: { type: 'string' },
      calls: { type: 'string' },
      tool: { type: 'string' },
      args: { type: 'string' },
      'interval-ms': { type: 'string' },
      'duration-s': { type: 'string' },
      'session-id': { type: 'string' },
      'print-session': { type: 'boolean' },
      'session-file': { type: 'string' },
      'protocol-version': { type: 'string' },
      'list-tools': { type: 'boolean' },
      header: { type: 'string', multiple: true },
      'timeout-ms': { type: 'string' },
      'hold-s': { type: 'string' },
      terminate: { type: 'boolean' },
      'no-get-stream': { type: 'boolean' },
      'sse-retries': { type: 'string' },
      'keepalive-ms': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-result-chars': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }).values;
} catch (e) {
  process.stderr.write(`client.mjs: ${e.message}\n${USAGE}\n`);
  process.exit(2);
}
if (opts.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
function usage(msg) {
  process.stderr.write(`client.mjs: ${msg}\n${USAGE}\n`);
  process.exit(2);
}
const num = (v, d, what) => {
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) usage(`bad ${what}: ${v}`);
  return n;
};
if (!opts.url) usage('--url is required');
let url;
try {
  url = new URL(opts.url);
} catch {
  usage(`bad --url ${opts.url}`);
}
let toolArgs = {};
if (opts.args !== undefined) {
  try {
    toolArgs = JSON.parse(opts.args);
  } catch (e) {
    usage(`--args is not JSON: ${e.message}`);
  }
}
const toolName = opts.tool ?? 'echo';
if (opts.tool === undefined && opts.args === undefined) toolArgs = { text: 'hello' };
const durationS = num(opts['duration-s'], undefined, '--duration-s');
const calls = num(opts.calls, durationS !== undefined ? Infinity : opts['list-tools'] && !opts.tool ? 0 : 1, '--calls');
const intervalMs = num(opts['interval-ms'], durationS !== undefined ? 1000 : 0, '--interval-ms');
const timeoutMs = num(opts['timeout-ms'], 15000, '--timeout-ms');
const holdS = num(opts['hold-s'], 0, '--hold-s');
const maxResult = num(opts['max-result-chars'], 4096, '--max-result-chars');

const headers = {};
for (const h of opts.header ?? []) {
  const i = h.indexOf(':');
  if (i <= 0) usage(`bad --header ${h} (want 'Name: value')`);
  headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
}
if (opts.token !== undefined) headers['Authorization'] = `Bearer ${opts.token}`;

// Optional: answer the transport's GET (standalone SSE stream) with 405
// locally, so the client opens no long-lived GET connection.
const fetchImpl = opts['no-get-stream']
  ? (input, init) => (init?.method === 'GET' ? Promise.resolve(new Response(null, { status: 405 })) : fetch(input, init))
  : undefined;

// Node's fetch (undici) closes an idle pooled connection after 4 s and opens
// as many connections as there are concurrent requests. --keepalive-ms and
// --max-connections replace the global dispatcher with one configured
// otherwise (Node 20 bundles undici but does not export its Agent: take the
// class from the lazily created global dispatcher).
async function configureDispatcher() {
  const ka = opts['keepalive-ms'];
  const mc = opts['max-connections'];
  if (ka === undefined && mc === undefined) return;
  const sym = Symbol.for('undici.globalDispatcher.1');
  if (!globalThis[sym]) await fetch('http://127.0.0.1:0/').catch(() => {});
  const Agent = globalThis[sym]?.constructor;
  if (typeof Agent !== 'function') usage('cannot configure the fetch dispatcher on this Node version');
  const o = {};
  if (ka !== undefined) {
    o.keepAliveTimeout = num(ka, 4000, '--keepalive-ms');
    o.keepAliveMaxTimeout = Math.max(o.keepAliveTimeout, 600000);
  }
  if (mc !== undefined) o.connections = num(mc, 0, '--max-connections') || null;
  globalThis[sym] = new Agent(o);
}
await configureDispatcher();

const transport = new StreamableHTTPClientTransport(url, {
  requestInit: { headers },
  ...(opts['session-id'] !== undefined ? { sessionId: opts['session-id'] } : {}),
  ...(fetchImpl ? { fetch: fetchImpl } : {}),
  // SDK default: a broken GET stream is re-opened up to 2 times (1 s, 1.5 s backoff).
  ...(opts['sse-retries'] !== undefined
    ? { reconnectionOptions: { maxReconnectionDelay: 30000, initialReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5,
        maxRetries: num(opts['sse-retries'], 2, '--sse-retries') } }
    : {}),
});
if (opts['session-id'] !== undefined || opts['protocol-version'] !== undefined) {
  // A stolen session skips initialize; send the header a real client would.
  transport.setProtocolVersion(opts['protocol-version'] ?? '2025-11-25');
}
let closing = false;
transport.onerror = (e) => {
  if (!closing) out({ step: 'transport_error', info: true, ...errInfo(e) });
};

const client = new Client({ name: opts.name ?? 'mcpwarden-e2e-client', version: opts.version ?? '1.0.0' }, { capabilities: {} });
client.onerror = () => {}; // transport errors are already reported above

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const reqOpts = { timeout: timeoutMs };

function summarize(result) {
  let len = 0;
  const content = (result?.content ?? []).map((c) => {
    if (c.type !== 'text' || typeof c.text !== 'string') return c;
    len += c.text.length;
    return c.text.length > maxResult ? { ...c, text: c.text.slice(0, maxResult), truncated: true } : c;
  });
  return { result: { ...result, content }, result_len: len };
}

async function finish(code) {
  if (closing) return;
  closing = true;
  out({ step: 'done', ok_calls, failed_calls });
  // close() only aborts in-flight fetches; it never sends DELETE.
  await Promise.race([client.close().catch(() => {}), sleep(1000)]);
  process.exit(code);
}

async function main() {
  const t0 = Date.now();
  try {
    await client.connect(transport, reqOpts);
    const sv = client.getServerVersion();
    out({ step: 'connect', ok: true, sessionId: transport.sessionId ?? null, stolen: opts['session-id'] !== undefined,
      protocolVersion: transport.protocolVersion ?? null, server: sv ?? null });
  } catch (e) {
    out({ step: 'connect', ok: false, sessionId: transport.sessionId ?? null, ...errInfo(e) });
    return finish(1);
  }
  if (opts['print-session']) out({ step: 'session', ok: true, sessionId: transport.sessionId ?? null });
  if (opts['session-file'] && transport.sessionId) {
    fs.writeFileSync(opts['session-file'] + '.tmp', transport.sessionId + '\n');
    fs.renameSync(opts['session-file'] + '.tmp', opts['session-file']);
  }

  if (opts['list-tools']) {
    try {
      const r = await client.listTools(undefined, reqOpts);
      out({ step: 'list_tools', ok: true, tools: r.tools.map((t) => t.name) });
    } catch (e) {
      steps_failed++;
      out({ step: 'list_tools', ok: false, ...errInfo(e) });
    }
  }

  for (let i = 1; i <= calls; i++) {
    if (durationS !== undefined && Date.now() - t0 >= durationS * 1000) break;
    if (i > 1 && intervalMs > 0) await sleep(intervalMs);
    if (durationS !== undefined && Date.now() - t0 >= durationS * 1000) break;
    try {
      const r = await client.callTool({ name: toolName, arguments: toolArgs }, undefined, reqOpts);
      if (r.isError) {
        failed_calls++;
        const msg = (r.content ?? []).map((c) => c.text ?? '').join(' ');
        out({ step: 'call', i, ok: false, tool: toolName, error: msg, code: null, kind: 'tool', ...summarize(r) });
      } else {
        ok_calls++;
        out({ step: 'call', i, ok: true, tool: toolName, ...summarize(r) });
      }
    } catch (e) {
      failed_calls++;
      out({ step: 'call', i, ok: false, tool: toolName, ...errInfo(e) });
    }
  }

  if (holdS > 0) await sleep(holdS * 1000);
  if (opts.terminate) {
    try {
      await transport.terminateSession();
      out({ step: 'terminate', ok: true, sessionId: transport.sessionId ?? null });
    } catch (e) {
      steps_failed++;
      out({ step: 'terminate', ok: false, ...errInfo(e) });
    }
  }
  return finish(steps_failed === 0 && failed_calls === 0 ? 0 : 1);
}

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => finish(1));
main();
