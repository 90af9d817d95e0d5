#!/usr/bin/env node
// Second, independent MCP client implementation for mcpwarden e2e tests:
// @modelcontextprotocol/client 2.x (the rewritten v2 TypeScript SDK, its own
// protocol core and Streamable HTTP transport; it implements both the
// 2025-11-25 era and the 2026-07-28 era). The official MCP Inspector needs
// Node >= 22.7.5 and ships a browser UI, so it is not used (see README.md).
//
//   node inspector.mjs --url URL [--token T] [--tool NAME] [--args JSON]
//                      [--name N] [--version V] [--era legacy|auto|modern]
//                      [--header 'K: V']... [--timeout-ms MS] [--list-tools]
//
// Prints one JSON line: {"impl":"@modelcontextprotocol/client@X","ok":true,
// "era":..,"protocolVersion":..,"sessionId":..,"tool":..,"result":..} or
// {"ok":false,"stage":"connect"|"call"|"list_tools","error":..,"code":..}.
// Exit 0 iff ok.
import { parseArgs } from 'node:util';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const USAGE = `usage: node inspector.mjs --url URL [--token T] [--tool NAME] [--args JSON] [--name N] [--version V]
  [--era legacy|auto|modern] [--header 'K: V']... [--timeout-ms MS] [--list-tools]`;
const out = (o) => {
  try {
    fs.writeSync(1, JSON.stringify(o) + '\n');
  } catch {
    /* ignore */
  }
};
function usage(msg) {
  process.stderr.write(`inspector.mjs: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

let opts;
try {
  opts = parseArgs({
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      tool: { type: 'string' },
      args: { type: 'string' },
      name: { type: 'string' },
      version: { type: 'string' },
      era: { type: 'string' },
      header: { type: 'string', multiple: true },
      'timeout-ms': { type: 'string' },
      'list-tools': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }).values;
} catch (e) {
  usage(e.message);
}
if (opts.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
if (!opts.url) usage('--url is required');
let url;
try {
  url = new URL(opts.url);
} catch {
  usage(`bad --url ${opts.url}`);
}
let toolArgs = { text: 'hello' };
if (opts.args !== undefined) {
  try {
    toolArgs = JSON.parse(opts.args);
  } catch (e) {
    usage(`--args is not JSON: ${e.message}`);
  }
}
const toolName = opts.tool ?? 'echo';
const era = opts.era ?? 'legacy';
const mode = era === 'legacy' ? 'legacy' : era === 'auto' ? 'auto' : era === 'modern' ? { pin: '2026-07-28' } : /^\d{4}-\d{2}-\d{2}$/.test(era) ? { pin: era } : null;
if (mode === null) usage(`bad --era ${era}`);
const timeout = Number(opts['timeout-ms'] ?? 15000);

let impl = '@modelcontextprotocol/client';
try {
  const require = createRequire(import.meta.url);
  const pj = JSON.parse(fs.readFileSync(require.resolve('@modelcontextprotocol/client/package.json'), 'utf8'));
  impl += '@' + pj.version;
} catch {
  /* exports map may hide package.json */
  try {
    const pj = JSON.parse(fs.readFileSync(new URL('./node_modules/@modelcontextprotocol/client/package.json', import.meta.url), 'utf8'));
    impl += '@' + pj.version;
  } catch {
    /* unknown version */
  }
}

const headers = {};
for (const h of opts.header ?? []) {
  const i = h.indexOf(':');
  if (i <= 0) usage(`bad --header ${h}`);
  headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
}
if (opts.token !== undefined) headers['Authorization'] = `Bearer ${opts.token}`;

function errInfo(e) {
  let code = e?.code ?? null;
  if (code === null && e?.status !== undefined) code = e.status;
  if ((code === null || typeof code === 'string') && e?.cause?.code) code = e.cause.code;
  const msg = [e?.message ?? String(e), e?.cause?.message].filter(Boolean).join(': ');
  const o = { error: msg, code };
  if (e?.data !== undefined) o.data = e.data;
  if (e?.name) o.name = e.name;
  return o;
}

let finished = false;
function finish(obj, rc) {
  if (finished) return;
  finished = true;
  out({ impl, ...obj });
  Promise.race([client?.close().catch(() => {}), new Promise((r) => setTimeout(r, 200))]).finally(() => process.exit(rc));
}
process.on('unhandledRejection', (e) => finish({ ok: false, stage: 'unhandled', ...errInfo(e) }, 1));
process.on('uncaughtException', (e) => finish({ ok: false, stage: 'uncaught', ...errInfo(e) }, 1));

const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers } });
transport.onerror = () => {};
const client = new Client(
  { name: opts.name ?? 'mcpwarden-e2e-inspector', version: opts.version ?? '2.0.0' },
  { capabilities: {}, versionNegotiation: { mode } },
);
client.onerror = () => {};

const info = () => ({
  era: client.getProtocolEra?.() ?? null,
  protocolVersion: client.getNegotiatedProtocolVersion?.() ?? null,
  sessionId: transport.sessionId ?? null,
  server: client.getServerVersion?.() ?? null,
});

try {
  await client.connect(transport, { timeout });
} catch (e) {
  finish({ ok: false, stage: 'connect', ...info(), ...errInfo(e) }, 1);
}
if (!finished) {
  let tools;
  if (opts['list-tools']) {
    try {
      tools = (await client.listTools(undefined, { timeout })).tools.map((t) => t.name);
    } catch (e) {
      finish({ ok: false, stage: 'list_tools', ...info(), ...errInfo(e) }, 1);
    }
  }
  if (!finished) {
    try {
      const r = await client.callTool({ name: toolName, arguments: toolArgs }, { timeout });
      const ok = !r.isError;
      finish({ ok, stage: 'call', ...info(), ...(tools ? { tools } : {}), tool: toolName, result: r,
        ...(ok ? {} : { error: (r.content ?? []).map((c) => c.text ?? '').join(' ') }) }, ok ? 0 : 1);
    } catch (e) {
      finish({ ok: false, stage: 'call', ...info(), tool: toolName, ...errInfo(e) }, 1);
    }
  }
}
