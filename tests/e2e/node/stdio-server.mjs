#!/usr/bin/env node
// A real SDK MCP server on stdio (McpServer + StdioServerTransport), for the
// stdio launch-control tests. The first thing it does is append a line to
// the record file (argv --record FILE, or MCP_RECORD), so a test can tell
// whether it ever ran its own code; each tool call is recorded too.
//
//   node stdio-server.mjs --record FILE
import fs from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import * as z from 'zod';

const i = process.argv.indexOf('--record');
const record = i > 0 ? process.argv[i + 1] : process.env.MCP_RECORD;
const rec = (o) => { if (record) fs.appendFileSync(record, JSON.stringify({ time: new Date().toISOString(), pid: process.pid, ...o }) + '\n'); };
rec({ kind: 'started' });

const server = new McpServer({ name: 'mcpwarden-e2e-stdio', version: '1.0.0' });
server.registerTool('echo', { description: 'echo', inputSchema: { text: z.string() } },
  async ({ text }) => { rec({ kind: 'tool', name: 'echo', args: { text } }); return { content: [{ type: 'text', text }] }; });
await server.connect(new StdioServerTransport());
