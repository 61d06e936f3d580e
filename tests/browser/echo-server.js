// A page and a WebSocket echo on one port (ws://, or wss:// with --cert/--key).
// Prints "listening on 127.0.0.1:PORT" once ready.
'use strict';
const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const tls = opt('--cert') && opt('--key');

const page = (req) => {
  const scheme = tls ? 'wss' : 'ws';
  return `<!doctype html><html><body><p id="out">waiting</p><script>
const ws = new WebSocket('${scheme}://' + location.host + '/echo');
ws.onopen = () => ws.send('hello through burrow');
ws.onmessage = (e) => { document.getElementById('out').textContent = 'echo: ' + e.data; ws.close(); };
ws.onerror = () => { document.getElementById('out').textContent = 'websocket error'; };
</script></body></html>`;
};

const handler = (req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(page(req));
};
const server = tls
  ? https.createServer({ cert: fs.readFileSync(opt('--cert')), key: fs.readFileSync(opt('--key')) }, handler)
  : http.createServer(handler);
const wss = new WebSocketServer({ server, path: '/echo', maxPayload: 64 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.listen(0, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
