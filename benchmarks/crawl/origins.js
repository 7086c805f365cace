// The crawl's origins: N HTTPS servers (one listening port each) in this one Node
// process, each answering every request with the same HTML page, gzip-encoded.
//
//   node origins.js PAGE CERT KEY N
//
// PAGE is the HTML file; it is gzipped once at start (zlib.gzipSync, level 6, zlib's
// default) and sent as is with Content-Encoding: gzip and a Content-Length, keep-alive.  Prints one JSON
// line {"ports": [...], "gzip_bytes": n} when every server listens.  Keep-alive
// idle timeout is long (120 s) so that no client meets a connection the server is
// closing mid-crawl: a fair crawl counts clients' work, not races with the reaper.
//
// GET /__stats (any port) answers {"opened", "peak_per_origin"}: TLS connections
// opened since the last /__stats, and the most connections any one origin had open
// at once in that time (the runner checks the per-origin limit with it); then resets.
'use strict';
const fs = require('fs');
const https = require('https');
const zlib = require('zlib');

const [pageFile, certFile, keyFile, count] = process.argv.slice(2, 6);
const page = fs.readFileSync(pageFile);
const gz = zlib.gzipSync(page, { level: 6 });
const head = {
  'Content-Type': 'text/html; charset=utf-8',
  'Content-Encoding': 'gzip',
  'Content-Length': gz.length,
};
const tls = { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };

const open = new Array(+count).fill(0);
const peak = new Array(+count).fill(0);
let opened = 0;

function stats(res) {
  const body = JSON.stringify({ opened, peak_per_origin: Math.max(...peak) });
  opened = 0;
  for (let i = 0; i < peak.length; i++) peak[i] = open[i];
  res.end(body);
}

function answer(req, res) {
  // Read (and drop) any request body so the connection stays usable.
  req.resume();
  if (req.url === '/__stats') return stats(res);
  res.writeHead(200, head);
  res.end(gz);
}

const ports = [];
let pending = +count;
for (let i = 0; i < +count; i++) {
  const server = https.createServer(tls, answer);
  server.on('secureConnection', (sock) => {
    opened++;
    if (++open[i] > peak[i]) peak[i] = open[i];
    sock.on('close', () => { open[i]--; });
  });
  server.keepAliveTimeout = 120000;
  server.headersTimeout = 130000;
  server.requestTimeout = 0;
  server.listen(0, '127.0.0.1', 1024, () => {
    ports[i] = server.address().port;
    if (--pending === 0) {
      process.stdout.write(JSON.stringify({ ports, gzip_bytes: gz.length, page_bytes: page.length }) + '\n');
    }
  });
}
process.on('SIGTERM', () => process.exit(0));
