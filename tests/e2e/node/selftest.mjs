#!/usr/bin/env node
// Loopback self-test of the e2e Node programs (no agent involved):
//   node selftest.mjs      -> "... N passed, N failed", exit 1 on any failure.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpw-node-selftest-'));
let passed = 0;
let failed = 0;
const children = new Set();

function check(name, cond, detail) {
  if (cond) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail !== undefined ? `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : ''}`);
  }
}

// Run a program to completion: {code, lines (parsed JSON), stdout, stderr}.
function run(prog, args, { timeoutMs = 30000 } = {}) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(here, prog), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      children.delete(p);
      const lines = stdout.split('\n').filter(Boolean).map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return { unparsed: l };
        }
      });
      resolve({ code, lines, stdout, stderr });
    });
  });
}

// Start a server; resolves with {proc, port, url, record, ready}.
function startServer(args, name) {
  const record = path.join(tmp, `${name}.jsonl`);
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(here, 'server.mjs'), '--port', '0', '--record', record, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.add(p);
    let buf = '';
    const t = setTimeout(() => reject(new Error(`${name} not ready`)), 20000);
    p.stdout.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        const ready = JSON.parse(buf.slice(0, nl));
        resolve({ proc: p, port: ready.port, url: ready.url, record, ready });
      }
    });
    p.on('exit', () => children.delete(p));
  });
}
const readRecord = (f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
const stop = (srv) =>
  new Promise((resolve) => {
    srv.proc.once('exit', (code, sig) => resolve({ code, sig }));
    srv.proc.kill('SIGTERM');
  });
const last = (r) => r.lines[r.lines.length - 1] ?? {};

async function main() {
  // ---------------------------------------------------------------- jwt
  const keys = path.join(tmp, 'keys');
  let r = await run('jwt.mjs', ['--gen-keys', keys]);
  const jwks = fs.existsSync(path.join(keys, 'jwks.json')) ? JSON.parse(fs.readFileSync(path.join(keys, 'jwks.json'), 'utf8')) : { keys: [] };
  check('jwt --gen-keys writes keys and jwks.json', r.code === 0 && jwks.keys.length === 2 && jwks.keys.every((k) => k.kid));
  const tokens = {};
  for (const [alg, extra] of [['RS256', ['--key', path.join(keys, 'private.pem')]], ['ES256', ['--key', path.join(keys, 'ec-private.pem')]],
    ['HS256', ['--secret', 's3cret']], ['none', []]]) {
    r = await run('jwt.mjs', ['--iss', 'https://idp.test', '--sub', 'alice', '--client-id', 'ci-bot', '--jti', `j-${alg}`, '--alg', alg, ...extra]);
    tokens[alg] = r.stdout.trim();
    const d = await run('jwt.mjs', ['--decode', tokens[alg]]);
    const dec = last(d);
    check(`jwt ${alg} mints and decodes`, r.code === 0 && dec.header?.alg === alg && dec.payload?.client_id === 'ci-bot' && dec.payload?.jti === `j-${alg}`, dec);
  }
  r = await run('jwt.mjs', ['--sub', 'x', '--k8s-pod-uid', 'uid-1', '--k8s-namespace', 'ci', '--k8s-pod-name', 'p0', '--exp-s', '-5']);
  const k8s = last(await run('jwt.mjs', ['--decode', r.stdout.trim()]));
  check('jwt k8s claims and negative --exp-s', k8s.payload?.['kubernetes.io']?.pod?.uid === 'uid-1' && k8s.payload.exp < k8s.payload.iat, k8s);

  // ---------------------------------------------------------------- session-ful server + client
  const srv = await startServer([], 'server');
  check('server prints ready', srv.ready.ready === true && srv.port > 0 && srv.ready.pid === srv.proc.pid, srv.ready);
  r = await run('client.mjs', ['--url', srv.url, '--token', tokens.RS256, '--name', 'ci-bot', '--version', '1.2', '--list-tools',
    '--tool', 'search_tickets', '--args', '{"query":"q1"}', '--calls', '3']);
  check('client: connect, list, 3 calls, exit 0', r.code === 0 && r.lines[0].step === 'connect' && r.lines[0].sessionId &&
    r.lines.find((l) => l.step === 'list_tools')?.tools?.length === 6 && last(r).ok_calls === 3, r.stdout);
  let rec = readRecord(srv.record);
  const sid = r.lines[0].sessionId;
  const init = rec.find((x) => x.kind === 'http' && x.body.includes('"initialize"'));
  check('record: initialize body with clientInfo and bearer token',
    init && JSON.parse(init.body).params.clientInfo.name === 'ci-bot' && init.headers.authorization === `Bearer ${tokens.RS256}`);
  check('record: 3 tool lines with args and session', rec.filter((x) => x.kind === 'tool' && x.name === 'search_tickets' && x.args.query === 'q1' && x.sessionId === sid).length === 3);

  r = await run('client.mjs', ['--url', srv.url, '--tool', 'big', '--args', '{"size":200000}', '--max-result-chars', '10']);
  check('client: big result', r.code === 0 && r.lines.find((l) => l.step === 'call')?.result_len === 200000);
  r = await run('client.mjs', ['--url', srv.url, '--tool', 'nope', '--args', '{}']);
  check('client: unknown tool -> ok:false, exit 1', r.code === 1 && r.lines.find((l) => l.step === 'call')?.ok === false);

  // session stealing
  const sidFile = path.join(tmp, 'sid');
  const owner = run('client.mjs', ['--url', srv.url, '--token', 'owner-token', '--session-file', sidFile, '--hold-s', '3']);
  for (let i = 0; i < 100 && !fs.existsSync(sidFile); i++) await new Promise((res) => setTimeout(res, 50));
  const stolen = fs.existsSync(sidFile) ? fs.readFileSync(sidFile, 'utf8').trim() : 'none';
  r = await run('client.mjs', ['--url', srv.url, '--token', 'thief-token', '--session-id', stolen, '--tool', 'delete_all', '--args', '{}']);
  check('client: stolen session accepted by the server', r.code === 0 && r.lines[0].stolen === true && r.lines[0].sessionId === stolen, r.stdout);
  const ownerRes = await owner;
  check('client: session owner ok', ownerRes.code === 0, ownerRes.stdout);
  rec = readRecord(srv.record);
  check('record: thief request carried the stolen session id',
    rec.some((x) => x.kind === 'http' && x.headers.authorization === 'Bearer thief-token' && x.headers['mcp-session-id'] === stolen && !x.body.includes('initialize')) &&
    rec.some((x) => x.kind === 'tool' && x.name === 'delete_all' && x.sessionId === stolen));

  // raw: initialize + identity switch on one connection, 1-byte split, chunked body
  const spec = {
    port: srv.port, split: 1, auto_session: true,
    requests: [
      { headers: { Authorization: 'Bearer A' }, body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'alice', version: '1' } } } },
      { headers: { Authorization: 'Bearer B', 'Mcp-Protocol-Version': '2025-11-25' }, chunked: 5,
        body: { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'sid={{session}}' } } } },
    ],
  };
  r = await run('raw.mjs', [JSON.stringify(spec)]);
  const resp = r.lines.filter((l) => l.response !== undefined);
  const conns = new Set(readRecord(srv.record).filter((x) => x.kind === 'http' && x.body.includes('sid=')).map((x) => x.conn));
  check('raw: initialize + call on one connection, 1-byte split, chunked', r.code === 0 && resp.length === 2 && resp[1].status === 200 &&
    resp[1].messages?.[0]?.result?.content?.[0]?.text === `sid=${last(r).session_id}` && r.lines[0].connected === true && conns.size === 1, r.stdout);

  const modernReq = {
    headers: { Authorization: 'Bearer M', 'Mcp-Protocol-Version': '2026-07-28', 'Mcp-Method': 'tools/call', 'Mcp-Name': 'echo' },
    body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'modern' },
      _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'ci-bot', version: '1' },
        'io.modelcontextprotocol/clientCapabilities': {} } } },
  };
  r = await run('raw.mjs', [JSON.stringify({ port: srv.port, requests: [modernReq] })]);
  check('raw: 2026-07-28 request to the 1.x server -> 400, recorded', r.code === 0 && r.lines.find((l) => l.response === 0)?.status === 400 &&
    readRecord(srv.record).some((x) => x.kind === 'http' && x.headers['mcp-method'] === 'tools/call' && x.headers['authorization'] === 'Bearer M'));

  r = await run('raw.mjs', [JSON.stringify({ port: srv.port, pipeline: true, requests: [{ method: 'GET', path: '/a' }, { method: 'GET', path: '/b' }, { method: 'GET', path: '/c' }] })]);
  check('raw: 3 pipelined requests -> 3 responses', r.code === 0 && r.lines.filter((l) => l.status === 404).length === 3, r.stdout);

  // second client implementation
  r = await run('inspector.mjs', ['--url', srv.url, '--token', tokens.ES256, '--name', 'insp', '--tool', 'create_ticket', '--args', '{"title":"t1"}']);
  rec = readRecord(srv.record);
  check('inspector (v2 SDK, legacy era) with bearer token', r.code === 0 && last(r).ok === true && last(r).era === 'legacy' &&
    rec.some((x) => x.kind === 'http' && x.headers.authorization === `Bearer ${tokens.ES256}` && x.body.includes('"insp"')) &&
    rec.some((x) => x.kind === 'tool' && x.name === 'create_ticket' && x.args.title === 't1'), r.stdout);
  r = await run('inspector.mjs', ['--url', srv.url, '--era', 'modern']);
  check('inspector --era modern vs 1.x server fails cleanly', r.code === 1 && last(r).stage === 'connect', r.stdout);

  const freePort = await new Promise((res) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
  r = await run('client.mjs', ['--url', `http://127.0.0.1:${freePort}/mcp`]);
  check('client: refused connection -> connect ok:false ECONNREFUSED, exit 1', r.code === 1 &&
    r.lines.some((l) => l.step === 'connect' && l.ok === false && l.code === 'ECONNREFUSED'), r.stdout);

  const st = await stop(srv);
  check('server exits 0 on SIGTERM', st.code === 0, st);

  // ---------------------------------------------------------------- stateless + modern
  const sl = await startServer(['--stateless'], 'stateless');
  r = await run('client.mjs', ['--url', sl.url, '--calls', '2']);
  check('stateless server: calls ok, no session id', r.code === 0 && r.lines[0].sessionId === null && last(r).ok_calls === 2, r.stdout);
  await stop(sl);

  const md = await startServer(['--modern'], 'modern');
  r = await run('inspector.mjs', ['--url', md.url, '--era', 'modern', '--token', 'T', '--tool', 'echo', '--args', '{"text":"m"}']);
  rec = readRecord(md.record);
  check('modern server: v2 client pinned to 2026-07-28', r.code === 0 && last(r).era === 'modern' && last(r).protocolVersion === '2026-07-28' &&
    rec.some((x) => x.kind === 'tool' && x.era === 'modern' && x.args.text === 'm') &&
    rec.some((x) => x.kind === 'http' && x.headers['mcp-method'] === 'tools/call' && x.headers['mcp-name'] === 'echo'), r.stdout);
  r = await run('raw.mjs', [JSON.stringify({ port: md.port, requests: [modernReq] })]);
  const mr = r.lines.find((l) => l.response === 0);
  check('modern server: raw 2026-07-28 request served', r.code === 0 && (mr?.json ?? mr?.messages?.[0])?.result?.content?.[0]?.text === 'modern', r.stdout);
  r = await run('client.mjs', ['--url', md.url, '--calls', '1']);
  check('modern server: 1.x client still gets a session', r.code === 0 && r.lines[0].sessionId, r.stdout);
  await stop(md);
}

try {
  await main();
} catch (e) {
  check('selftest ran to the end', false, String(e?.stack ?? e));
}
for (const c of children) c.kill('SIGKILL');
fs.rmSync(tmp, { recursive: true, force: true });
console.log(`node e2e programs: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
