#!/usr/bin/env node
// A real SDK MCP client that launches a stdio server (StdioClientTransport)
// and calls one tool. Prints JSON lines; exits 0 iff the call succeeded.
//
//   node stdio-client.mjs --name CLIENT_NAME --record FILE [--timeout-ms MS]
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? process.argv[i + 1] : d; };
const name = arg('--name', 'stdio-client');
const record = arg('--record', '/dev/null');
const timeout = Number(arg('--timeout-ms', '8000'));
const here = path.dirname(fileURLToPath(import.meta.url));
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const transport = new StdioClientTransport({
  command: process.execPath,
  args: [path.join(here, 'stdio-server.mjs'), '--record', record],
  stderr: 'ignore',
});
const client = new Client({ name, version: '1.0.0' });
const timer = setTimeout(() => { out({ step: 'timeout' }); process.exit(1); }, timeout);
try {
  await client.connect(transport);
  const r = await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
  out({ step: 'call', ok: true, result: r });
  clearTimeout(timer);
  await client.close();
  process.exit(0);
} catch (e) {
  out({ step: 'error', ok: false, error: String(e && e.message || e) });
  clearTimeout(timer);
  process.exit(1);
}
