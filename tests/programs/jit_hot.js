// jit_hot.js - the Node.js subject of tests/integration/jit_test.sh: two
// hot functions that V8 optimizes (and, with --perf-basic-prof, names in
// /tmp/perf-PID.map), called from a driver for SECONDS seconds.
//
// usage: node --perf-basic-prof jit_hot.js SECONDS
'use strict';

function hotAlpha(n) {
  let s = 0;
  for (let i = 0; i < n; i++) s = (s + i * 31) % 1000003;
  return s;
}

function hotBeta(n) {
  let s = 1;
  for (let i = 0; i < n; i++) s = (s * 7 + i) % 999983;
  return s;
}

function driver(seconds) {
  const end = Date.now() + seconds * 1000;
  let acc = 0;
  while (Date.now() < end) {
    acc += hotAlpha(200000);
    acc += hotBeta(100000);
  }
  return acc;
}

console.log(driver(Number(process.argv[2] || 5)));
