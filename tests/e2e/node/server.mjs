#!/usr/bin/env node
// Real MCP server (TypeScript SDK 1.x: McpServer + StreamableHTTPServerTransport
// over node:http) for mcpwarden end-to-end tests.
//
//   node server.mjs [--port N] [--host H] [--stateless] [--record FILE]
//                   [--json-response] [--path /mcp] [--modern]
//
// Env fallbacks: MCP_PORT, MCP_HOST, MCP_STATELESS=1, MCP_RECORD,
// MCP_JSON_RESPONSE=1, MCP_MODERN=1.
// --modern makes it a dual-era server: requests of the 2026-07-28 era (per-
// request _meta envelope, no sessions) are served by the v2 SDK
// (@modelcontextprotocol/server createMcpHandler); 2025-era requests keep
// going to the 1.x SDK transport as without the flag.
// Every TCP connection, every HTTP request (as read from node:http, before the
// SDK transport sees it) and every tool handler invocation is appended to the
// record file as one JSON line with fs.appendFileSync, so a test can tell
// exactly what reached this process.
import http from 'node:http';
import fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import * as z from 'zod';

const USAGE = `usage: node server.mjs [--port N] [--host H] [--stateless] [--record FILE] [--json-response] [--path P] [--modern]`;

function die(msg) {
  process.stderr.write(`server.mjs: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

let opts;
try {
  opts = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      stateless: { type: 'boolean' },
      record: { type: 'string' },
      'json-response': { type: 'boolean' },
      path: { type: 'string' },
      modern: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }).values;
} catch (e) {
  die(e.message);
}
if (opts.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
const envTrue = (v) => v !== undefined && v !== '' && v !== '0' && v !== 'false';
const port = Number(opts.port ?? process.env.MCP_PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) die(`bad port ${opts.port}`);
let host = opts.host ?? process.env.MCP_HOST ?? '127.0.0.1';
if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
const stateless = opts.stateless || envTrue(process.env.MCP_STATELESS);
const jsonResponse = opts['json-response'] || envTrue(process.env.MCP_JSON_RESPONSE);
const recordFile = opts.record ?? process.env.MCP_RECORD;
const mcpPath = opts.path ?? '/mcp';
const modernMode = opts.modern || envTrue(process.env.MCP_MODERN);

function record(obj) {
  if (!recordFile) return;
  const line = JSON.stringify({ time: new Date().toISOString(), pid: process.pid, ...obj }) + '\n';
  try {
    fs.appendFileSync(recordFile, line);
  } catch (e) {
    process.stderr.write(`server.mjs: cannot append to ${recordFile}: ${e.message}\n`);
  }
}

// ---------------------------------------------------------------- MCP server
const text = (s) => ({ content: [{ type: 'text', text: s }] });

// The tools, defined once for both SDKs: [name, description, zod shape, fn].
const TOOLS = [
  ['search_tickets', 'Search tickets by query', { query: z.string() },
    ({ query }) => text(JSON.stringify([{ id: 1, title: `ticket matching ${query}` }]))],
  ['create_ticket', 'Create a ticket', { title: z.string() },
    ({ title }) => text(JSON.stringify({ id: Math.floor(Math.random() * 1e6), title, created: true }))],
  ['delete_all', 'Delete every ticket', {}, () => text('deleted all tickets')],
  ['echo', 'Return the text given', { text: z.string() }, ({ text: t }) => text(t)],
  ['big', 'Return a string of the given size', { size: z.number().int().min(0).max(64 * 1024 * 1024) },
    ({ size }) => text('x'.repeat(size))],
  ['sleep', 'Wait ms milliseconds, then answer (for in-flight tests)', { ms: z.number().int().min(0).max(600000) },
    async ({ ms }) => {
      await new Promise((r) => setTimeout(r, ms));
      return text(`slept ${ms}`);
    }],
];

function makeMcpServer() {
  const server = new McpServer({ name: 'mcpwarden-e2e-tickets', version: '1.0.0' });
  for (const [name, description, shape, fn] of TOOLS)
    server.registerTool(name, { description, inputSchema: shape }, async (args, extra) => {
      record({ kind: 'tool', name, args, era: 'legacy', sessionId: extra?.sessionId ?? null, requestId: extra?.requestId ?? null });
      return fn(args ?? {});
    });
  return server;
}

// v2 SDK (2026-07-28 era), loaded only with --modern.
let v2 = null;
let modernHandler = null;
if (modernMode) {
  v2 = await import('@modelcontextprotocol/server');
  modernHandler = v2.createMcpHandler(
    (ctx) => {
      const server = new v2.McpServer({ name: 'mcpwarden-e2e-tickets', version: '2.0.0' });
      for (const [name, description, shape, fn] of TOOLS)
        server.registerTool(name, { description, inputSchema: z.object(shape) }, async (args, extra) => {
          record({ kind: 'tool', name, args, era: ctx?.era ?? 'modern', sessionId: null, requestId: extra?.mcpReq?.id ?? null });
          return fn(args ?? {});
        });
      return server;
    },
    { legacy: 'reject' },
  );
}

function toWebRequest(req, raw) {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const hostHeader = req.headers.host ?? `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const hasBody = !(req.method === 'GET' || req.method === 'HEAD');
  return new Request(`http://${hostHeader}${req.url}`, { method: req.method, headers, body: hasBody ? raw : undefined });
}

async function sendWebResponse(res, response) {
  const headers = {};
  response.headers.forEach((v, k) => {
    headers[k] = k in headers ? [].concat(headers[k], v) : v;
  });
  res.writeHead(response.status, headers);
  if (response.body) {
    res.on('close', () => response.body.cancel().catch(() => {}));
    for await (const chunk of response.body) {
      if (res.destroyed) break;
      res.write(chunk);
    }
  }
  res.end();
}

// Session-ful mode: one McpServer + transport per session.
const sessions = new Map(); // sessionId -> { transport, server }

function jsonRpcError(res, status, code, message) {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

const isInitialize = (body) =>
  Array.isArray(body) ? body.some((m) => m && m.method === 'initialize') : !!body && body.method === 'initialize';

async function handleStateful(req, res, body) {
  const sid = req.headers['mcp-session-id'];
  if (sid !== undefined) {
    const s = sessions.get(Array.isArray(sid) ? sid[0] : sid);
    if (!s) return jsonRpcError(res, 404, -32001, 'Session not found');
    return s.transport.handleRequest(req, res);
  }
  if (req.method === 'POST' && isInitialize(body)) {
    const server = makeMcpServer();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: jsonResponse,
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server });
        record({ kind: 'session', event: 'created', sessionId: id });
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
        record({ kind: 'session', event: 'closed', sessionId: id });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    return transport.handleRequest(req, res);
  }
  return jsonRpcError(res, 400, -32000, 'Bad Request: No valid session ID provided');
}

async function handleStateless(req, res) {
  if (req.method !== 'POST') return jsonRpcError(res, 405, -32000, 'Method not allowed.');
  const server = makeMcpServer();
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: jsonResponse,
  });
  res.on('close', () => {
    transport.close().catch(() => {});
    server.close().catch(() => {});
  });
  await server.connect(transport);
  return transport.handleRequest(req, res);
}

// ---------------------------------------------------------------- HTTP
let connSeq = 0;
const sockets = new Set();
const httpServer = http.createServer({ keepAliveTimeout: 65000, requestTimeout: 0, headersTimeout: 60000 });
httpServer.on('connection', (sock) => {
  sock.__conn = ++connSeq;
  sockets.add(sock);
  record({ kind: 'connection', conn: sock.__conn, remote: sock.remoteAddress, remotePort: sock.remotePort,
    local: sock.localAddress, localPort: sock.localPort });
  sock.on('close', (hadError) => {
    sockets.delete(sock);
    record({ kind: 'connection_closed', conn: sock.__conn, hadError });
  });
});
httpServer.on('clientError', (err, sock) => {
  record({ kind: 'client_error', conn: sock.__conn ?? null, error: err.code ?? err.message });
  if (sock.writable && !sock.destroyed) sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else sock.destroy();
});

httpServer.on('request', (req, res) => {
  const chunks = [];
  let done = false;
  const base = () => ({
    kind: 'http', conn: req.socket.__conn, method: req.method, url: req.url, httpVersion: req.httpVersion,
    headers: req.headers, rawHeaders: req.rawHeaders,
    remote: req.socket.remoteAddress, remotePort: req.socket.remotePort,
  });
  req.on('data', (c) => chunks.push(c));
  req.on('error', () => {});
  req.on('close', () => {
    if (!done) {
      done = true;
      record({ ...base(), body: Buffer.concat(chunks).toString('utf8'), complete: false });
    }
  });
  req.on('end', () => {
    if (done) return;
    done = true;
    const raw = Buffer.concat(chunks);
    const bodyText = raw.toString('utf8');
    record({ ...base(), body: bodyText, complete: true });
    dispatch(req, res, raw, bodyText).catch((e) => {
      record({ kind: 'server_error', error: String(e?.stack ?? e) });
      jsonRpcError(res, 500, -32603, 'Internal server error');
    });
  });
});

async function dispatch(req, res, raw, bodyText) {
  const path = (req.url ?? '').split('?')[0];
  if (path !== mcpPath) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    return res.end('not found\n');
  }
  let body;
  if (req.method === 'POST') {
    try {
      body = JSON.parse(bodyText);
    } catch {
      body = undefined; // the SDK answers the parse error itself
    }
  }
  // The body stream is consumed; @hono/node-server (used inside the SDK
  // transport) takes the body from incoming.rawBody, so the SDK parses and
  // validates exactly the bytes that were received.
  req.rawBody = raw;
  if (modernHandler) {
    const webReq = toWebRequest(req, raw);
    const legacy = await v2.isLegacyRequest(webReq, body);
    record({ kind: 'route', conn: req.socket.__conn, era: legacy ? 'legacy' : 'modern' });
    if (!legacy) return sendWebResponse(res, await modernHandler.fetch(webReq, body !== undefined ? { parsedBody: body } : undefined));
  }
  if (stateless) return handleStateless(req, res);
  return handleStateful(req, res, body);
}

httpServer.on('error', (e) => {
  process.stderr.write(`server.mjs: ${e.code ?? ''} ${e.message}\n`);
  process.exit(1);
});

httpServer.listen({ port, host, ipv6Only: false }, () => {
  const addr = httpServer.address();
  record({ kind: 'ready', port: addr.port, host: addr.address, stateless, jsonResponse, modern: modernMode });
  process.stdout.write(JSON.stringify({ ready: true, port: addr.port, pid: process.pid, host: addr.address,
    stateless, modern: modernMode, url: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}${mcpPath}` }) + '\n');
});

let stopping = false;
async function stop(sig) {
  if (stopping) return;
  stopping = true;
  record({ kind: 'shutdown', signal: sig });
  httpServer.close();
  await modernHandler?.close().catch(() => {});
  for (const { transport, server } of sessions.values()) {
    await transport.close().catch(() => {});
    await server.close().catch(() => {});
  }
  for (const s of sockets) s.destroy();
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
