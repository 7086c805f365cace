// Node https client: node node_client.js MODE PORT CA --n N --concurrency C [--warmup W]
// keepalive/big: new https.Agent({keepAlive: true}); newconn: agent: false (full
// handshake each time); newconn-resume: new https.Agent({keepAlive: false}), which
// caches TLS sessions (maxCachedSessions 100).
'use strict';
const fs = require('fs');
const https = require('https');

const argv = process.argv.slice(2);
const [mode, port, caFile] = argv;
const opt = (name, dflt) => { const i = argv.indexOf(name); return i > 0 ? parseInt(argv[i + 1], 10) : dflt; };
const n = opt('--n', 5000);
const concurrency = opt('--concurrency', 50);
const warmup = opt('--warmup', 100);
const ca = fs.readFileSync(caFile);
let agent;
if (mode === 'keepalive' || mode === 'big') agent = new https.Agent({ keepAlive: true });
else if (mode === 'newconn') agent = false;
else agent = new https.Agent({ keepAlive: false });
const options = { hostname: '127.0.0.1', port: +port, path: '/', agent, ca };

function one() {
  return new Promise((resolve, reject) => {
    const req = https.get(options, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => { bytes += chunk.length; });
      res.on('end', () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`status ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

async function run(count) {
  let left = count;
  let total = 0;
  const worker = async () => {
    while (left > 0) {
      left--;
      const bytes = await one(); // not `total += await one()`: that reads total before awaiting
      total += bytes;
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return [total, Number(process.hrtime.bigint() - start) / 1e9];
}

(async () => {
  if (warmup) await run(warmup);
  const [bytes, seconds] = await run(n);
  console.log(JSON.stringify({ requests: n, bytes, seconds }));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
