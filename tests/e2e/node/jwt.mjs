#!/usr/bin/env node
// Mint test JWTs with node:crypto only.
//
//   node jwt.mjs --iss I --sub S --client-id C [--azp A] [--jti J] [--exp-s N]
//                [--aud A]... [--scope S] [--alg RS256|ES256|HS256|none]
//                [--key PEM_FILE | --secret S] [--kid K] [--iat T] [--nbf T]
//                [--k8s-pod-uid U --k8s-namespace N --k8s-pod-name P [--k8s-sa SA]]
//                [--cnf-jkt T] [--claims JSON] [--typ T] [--decode TOKEN]
//   node jwt.mjs --gen-keys DIR
//
// Prints the compact token (one line). --alg defaults to the key's type
// (RSA -> RS256, EC P-256 -> ES256), HS256 with --secret, and none without a key.
// --gen-keys writes private.pem/public.pem (RSA 2048), ec-private.pem/ec-public.pem
// (P-256) and jwks.json with both public keys (kid = RFC 7638 thumbprint).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = `usage: node jwt.mjs [--iss I] [--sub S] [--client-id C] [--azp A] [--jti J] [--exp-s N] [--aud A]...
  [--scope S] [--alg RS256|ES256|HS256|none] [--key PEM_FILE | --secret S] [--kid K] [--iat T] [--nbf T]
  [--k8s-pod-uid U --k8s-namespace N --k8s-pod-name P [--k8s-sa SA]] [--cnf-jkt T] [--claims JSON] [--typ T]
       node jwt.mjs --gen-keys DIR
       node jwt.mjs --decode TOKEN`;

function die(msg, code = 2) {
  process.stderr.write(`jwt.mjs: ${msg}\n${code === 2 ? USAGE + '\n' : ''}`);
  process.exit(code);
}

// parseArgs (Node 20) takes "-10" for an option: join "--exp-s -10" into "--exp-s=-10".
const argv = [];
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const n = process.argv[i + 1];
  if (/^--[a-z0-9-]+$/.test(a) && n !== undefined && /^-\d/.test(n)) {
    argv.push(`${a}=${n}`);
    i++;
  } else argv.push(a);
}

let opts;
try {
  opts = parseArgs({
    args: argv,
    options: {
      iss: { type: 'string' },
      sub: { type: 'string' },
      'client-id': { type: 'string' },
      azp: { type: 'string' },
      jti: { type: 'string' },
      'exp-s': { type: 'string' },
      aud: { type: 'string', multiple: true },
      scope: { type: 'string' },
      alg: { type: 'string' },
      key: { type: 'string' },
      secret: { type: 'string' },
      kid: { type: 'string' },
      iat: { type: 'string' },
      nbf: { type: 'string' },
      typ: { type: 'string' },
      'k8s-pod-uid': { type: 'string' },
      'k8s-namespace': { type: 'string' },
      'k8s-pod-name': { type: 'string' },
      'k8s-sa': { type: 'string' },
      'cnf-jkt': { type: 'string' },
      claims: { type: 'string' },
      'gen-keys': { type: 'string' },
      decode: { type: 'string' },
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

const b64u = (buf) => Buffer.from(buf).toString('base64url');
const b64uJson = (obj) => b64u(JSON.stringify(obj));

function thumbprint(jwk) {
  // RFC 7638: required members, lexicographic order, no whitespace.
  const req = jwk.kty === 'RSA' ? { e: jwk.e, kty: 'RSA', n: jwk.n } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return b64u(crypto.createHash('sha256').update(JSON.stringify(req)).digest());
}

if (opts['gen-keys'] !== undefined) {
  const dir = opts['gen-keys'];
  fs.mkdirSync(dir, { recursive: true });
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const w = (name, data, mode) => fs.writeFileSync(path.join(dir, name), data, { mode });
  w('private.pem', rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
  w('public.pem', rsa.publicKey.export({ type: 'spki', format: 'pem' }), 0o644);
  w('ec-private.pem', ec.privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
  w('ec-public.pem', ec.publicKey.export({ type: 'spki', format: 'pem' }), 0o644);
  const keys = [];
  for (const [pub, alg] of [[rsa.publicKey, 'RS256'], [ec.publicKey, 'ES256']]) {
    const jwk = pub.export({ format: 'jwk' });
    keys.push({ ...jwk, kid: thumbprint(jwk), alg, use: 'sig' });
  }
  w('jwks.json', JSON.stringify({ keys }, null, 2) + '\n', 0o644);
  process.stdout.write(JSON.stringify({ dir, files: ['private.pem', 'public.pem', 'ec-private.pem', 'ec-public.pem', 'jwks.json'],
    kids: { RS256: keys[0].kid, ES256: keys[1].kid } }) + '\n');
  process.exit(0);
}

if (opts.decode !== undefined) {
  const parts = opts.decode.trim().split('.');
  if (parts.length !== 3) die('not a compact JWS (want 3 dot-separated parts)', 1);
  try {
    const dec = (p) => JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
    process.stdout.write(JSON.stringify({ header: dec(parts[0]), payload: dec(parts[1]), signature_len: Buffer.from(parts[2], 'base64url').length }) + '\n');
  } catch (e) {
    die(`cannot decode: ${e.message}`, 1);
  }
  process.exit(0);
}

const int = (v, what) => {
  const n = Number(v);
  if (!Number.isInteger(n)) die(`${what} must be an integer: ${v}`);
  return n;
};

// ---------------------------------------------------------------- key, alg
let key = null; // KeyObject (private) for RS/ES
if (opts.key !== undefined) {
  let pem;
  try {
    pem = fs.readFileSync(opts.key);
  } catch (e) {
    die(`cannot read --key ${opts.key}: ${e.message}`, 1);
  }
  try {
    key = crypto.createPrivateKey(pem);
  } catch {
    key = null; // not a private key: maybe an HS256 secret in a file
    if (!opts.alg || opts.alg.toUpperCase() === 'HS256') opts.secret ??= pem.toString('utf8').replace(/\r?\n$/, '');
    else die(`--key ${opts.key} is not a private key PEM`, 1);
  }
}
let alg = opts.alg?.toUpperCase();
if (alg === 'NONE') alg = 'none';
if (!alg) {
  if (key) alg = key.asymmetricKeyType === 'rsa' ? 'RS256' : key.asymmetricKeyType === 'ec' ? 'ES256' : undefined;
  else if (opts.secret !== undefined) alg = 'HS256';
  else alg = 'none';
}
if (!['RS256', 'ES256', 'HS256', 'none'].includes(alg)) die(`unsupported --alg ${opts.alg}`);
if ((alg === 'RS256' || alg === 'ES256') && !key) die(`--alg ${alg} needs --key PRIVATE_PEM`);
if (alg === 'RS256' && key.asymmetricKeyType !== 'rsa') die('--alg RS256 needs an RSA key');
if (alg === 'ES256' && !(key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1'))
  die('--alg ES256 needs an EC P-256 key');
if (alg === 'HS256' && opts.secret === undefined) die('--alg HS256 needs --secret S (or --key FILE holding the secret)');

// ---------------------------------------------------------------- claims
const now = opts.iat !== undefined ? int(opts.iat, '--iat') : Math.floor(Date.now() / 1000);
const payload = {};
if (opts.iss !== undefined) payload.iss = opts.iss;
if (opts.sub !== undefined) payload.sub = opts.sub;
if (opts.aud !== undefined) payload.aud = opts.aud.length === 1 ? opts.aud[0] : opts.aud;
if (opts['client-id'] !== undefined) payload.client_id = opts['client-id'];
if (opts.azp !== undefined) payload.azp = opts.azp;
payload.jti = opts.jti ?? crypto.randomUUID();
payload.iat = now;
if (opts.nbf !== undefined) payload.nbf = int(opts.nbf, '--nbf');
payload.exp = now + (opts['exp-s'] !== undefined ? int(opts['exp-s'], '--exp-s') : 3600);
if (opts.scope !== undefined) payload.scope = opts.scope;
if (opts['cnf-jkt'] !== undefined) payload.cnf = { jkt: opts['cnf-jkt'] };
const k8s = ['k8s-pod-uid', 'k8s-namespace', 'k8s-pod-name', 'k8s-sa'].some((k) => opts[k] !== undefined);
if (k8s) {
  // Shape of a Kubernetes projected service-account token.
  const ns = opts['k8s-namespace'] ?? 'default';
  const sa = opts['k8s-sa'] ?? 'default';
  payload['kubernetes.io'] = {
    namespace: ns,
    pod: { name: opts['k8s-pod-name'] ?? 'pod', uid: opts['k8s-pod-uid'] ?? crypto.randomUUID() },
    serviceaccount: { name: sa, uid: crypto.createHash('sha256').update(`${ns}/${sa}`).digest('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/, '$1-$2-$3-$4-$5') },
  };
  if (opts.sub === undefined) payload.sub = `system:serviceaccount:${ns}:${sa}`;
  if (opts.iss === undefined) payload.iss = 'https://kubernetes.default.svc.cluster.local';
}
if (opts.claims !== undefined) {
  let extra;
  try {
    extra = JSON.parse(opts.claims);
  } catch (e) {
    die(`--claims is not JSON: ${e.message}`);
  }
  if (!extra || typeof extra !== 'object' || Array.isArray(extra)) die('--claims must be a JSON object');
  for (const [k, v] of Object.entries(extra)) {
    if (v === null) delete payload[k];
    else payload[k] = v;
  }
}

// ---------------------------------------------------------------- sign
const header = { alg, typ: opts.typ ?? 'JWT' };
if (opts.kid !== undefined) header.kid = opts.kid;
else if (key) header.kid = thumbprint(crypto.createPublicKey(key).export({ format: 'jwk' }));
const input = `${b64uJson(header)}.${b64uJson(payload)}`;
let sig = '';
if (alg === 'RS256') sig = b64u(crypto.sign('sha256', Buffer.from(input), key));
else if (alg === 'ES256') sig = b64u(crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }));
else if (alg === 'HS256') sig = b64u(crypto.createHmac('sha256', opts.secret).update(input).digest());
process.stdout.write(`${input}.${sig}\n`);
