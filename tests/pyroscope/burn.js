// burn.js - burns CPU in known functions under the real Pyroscope Node.js
// client, pushing to Smolder's POST /ingest (tests/integration/pyroscope_test.sh).
// Usage: node burn.js http://127.0.0.1:PORT SECONDS [MODULE [APP_NAME]]
// MODULE is the client package: @pyroscope/nodejs (the newest) by default,
// or pyroscope-nodejs-0.4 (package.json's alias of a 0.4 release).
'use strict';
const [serverAddress, seconds] = [process.argv[2], Number(process.argv[3] || 15)];
const Pyroscope = require(process.argv[4] || '@pyroscope/nodejs');

Pyroscope.init({
  serverAddress,
  appName: process.argv[5] || 'smolder-test',
  tags: { region: 'eu' },
  flushIntervalMs: 3000,
  wall: { collectCpuTime: true },
});
Pyroscope.start();

function fibonacci(n) {
  return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2);
}

const end = Date.now() + seconds * 1000;
function work() {
  fibonacci(25);
  if (Date.now() < end) {
    setImmediate(work);
  } else {
    // stop() flushes the last profile before the process exits
    Pyroscope.stop().then(() => process.exit(0), () => process.exit(1));
  }
}
work();
