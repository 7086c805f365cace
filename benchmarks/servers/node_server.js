// Node https.createServer with its defaults: node node_server.js PORT CERT KEY [--body-size N]
// GET /__stats answers {"connections", "resumed"}: the client benchmarks use it to
// check whether a client really resumed TLS sessions.
'use strict';
const fs = require('fs');
const https = require('https');

const [port, certFile, keyFile] = process.argv.slice(2, 5);
const i = process.argv.indexOf('--body-size');
const size = i > 0 ? parseInt(process.argv[i + 1], 10) : 12;
const body = size === 12 ? Buffer.from('hello world\n') : Buffer.alloc(size, 'x');
let connections = 0;
let resumed = 0;

const server = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, (req, res) => {
  if (req.url === '/__stats') {
    res.end(JSON.stringify({ connections, resumed }));
    return;
  }
  res.end(body);
});
server.on('secureConnection', (sock) => {
  connections++;
  if (sock.isSessionReused()) resumed++;
});
server.listen(+port, '127.0.0.1', 1024);
process.on('SIGTERM', () => process.exit(0));
