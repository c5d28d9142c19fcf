// fixture.mjs - the browser tests' world: a temporary dir, the real
// smolder-server on 127.0.0.1:0 serving the repo's ui/, known data
// ingested through the real API, and headless Debian Chromium. Everything
// it starts is stopped and every temp dir removed by cleanup(), which the
// caller runs in `finally` and which also runs on SIGINT/SIGTERM.
import {spawn, execFileSync} from 'node:child_process';
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

import {encodeProfile} from './pprof.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = process.env.SMOLDER_CHROMIUM || '/usr/bin/chromium';
export const TYPE = 'process_cpu:samples:count:cpu:nanoseconds:delta';

// ---------------------------------------------------------------- the data
// A Go web service, "checkout", in two versions on two hosts: 1.5 spends
// far more in encoding/json (grew) and far less in the database write
// (shrank). Stacks root first, weights per host per 5-minute slot.
const HTTP = ['runtime.main', 'main.main', 'net/http.(*Server).Serve', 'net/http.(*conn).serve',
	'net/http.serverHandler.ServeHTTP', 'checkout.(*Handler).ServeHTTP'];
const ORDER = [...HTTP, 'checkout.(*Handler).placeOrder'];
export const JSON_FN = 'encoding/json.Marshal';
export const SQL_FN = 'database/sql.(*DB).ExecContext';
export const ORDER_FN = 'checkout.(*Handler).placeOrder';
export const GC_FN = 'runtime.gcDrain';
const STACKS = [
	// [frames, weight in 1.4, weight in 1.5]
	[[...ORDER, JSON_FN, 'encoding/json.(*encodeState).marshal',
		'encoding/json.(*encodeState).reflectValue', 'encoding/json.structEncoder.encode'], 9, 30],
	[[...ORDER, JSON_FN, 'encoding/json.(*encodeState).marshal',
		'encoding/json.(*encodeState).reflectValue', 'runtime.mallocgc'], 3, 10],
	[[...ORDER, 'checkout.(*Store).SaveOrder', SQL_FN, 'github.com/lib/pq.(*conn).Exec',
		'net.(*conn).Write', 'syscall.Syscall'], 24, 7],
	[[...ORDER, 'checkout.(*Store).SaveOrder', SQL_FN, 'database/sql.(*DB).conn'], 6, 3],
	[[...ORDER, 'checkout.validateCart', 'checkout.priceItems'], 8, 8],
	[[...HTTP, 'checkout.(*Handler).getCart', 'database/sql.(*DB).QueryContext',
		'github.com/lib/pq.(*conn).query', 'net.(*conn).Read', 'syscall.Syscall'], 15, 15],
	[[...HTTP, 'compress/gzip.(*Writer).Write', 'compress/flate.(*compressor).deflate',
		'compress/flate.(*compressor).findMatch'], 11, 10],
	[[...HTTP, 'go.uber.org/zap.(*Logger).Info', 'go.uber.org/zap/zapcore.(*ioCore).Write',
		'os.(*File).Write', 'syscall.Syscall'], 5, 5],
	[['runtime.main', 'main.main', 'net/http.(*Server).Serve', 'net/http.(*conn).serve',
		'crypto/tls.(*Conn).Write', 'crypto/aes.(*gcmAsm).Seal'], 4, 4],
	[['runtime.gcBgMarkWorker', 'runtime.gcDrain', 'runtime.scanobject'], 9, 14],
	[['runtime.gcBgMarkWorker', 'runtime.gcDrain', 'runtime.markroot'], 3, 4],
	[['runtime.mcall', 'runtime.park_m', 'runtime.schedule', 'runtime.findRunnable'], 3, 3],
];
const SEARCH_API = [
	[['runtime.main', 'main.main', 'search.(*Index).Query', 'search.scoreDocs'], 20],
	[['runtime.main', 'main.main', 'search.(*Index).Query', 'sort.Sort'], 6],
];
// "importer": 6 of its 20 samples per slot have stacks whose walk was cut
// short (the [truncated] marker outermost, as the agent sends them): 30 %
export const TRUNCATED = '[truncated]';
export const IMPORTER_PCT = 30;
const IMPORTER = [
	[['runtime.main', 'main.main', 'importer.run', 'importer.parse'], 14],
	[[TRUNCATED, 'importer.parse', 'bufio.(*Reader).Read'], 6],
];
const FILES = {};
for (const [frames] of [...STACKS, ...SEARCH_API, ...IMPORTER.slice(0, 1)])
	for (const f of frames) {
		const pkg = f.replace(/\.[^./]*$/, '').replace(/[()*]/g, '').replace(/\.$/, '');
		const base = pkg.split('/').pop() || 'main';
		FILES[f] ??= [`${pkg}/${base}.go`, 10 + (f.length * 7) % 400];
	}
export const fileOf = name => FILES[name];

// "oneoff", two processes of one executable (pid 101 and 102, as an agent
// with --pid-label labels them): memcpy is hot under the request path, and
// two one-off stacks reach it too: a page fault right under main (so the
// shallowest memcpy frame is a 1-sample one) and a 40-deep chain (too
// narrow to draw in memcpy's callers).
export const MEMCPY = '__memcpy_avx512_unaligned_erms';
const DEEP = Array.from({length: 40}, (_, i) => `app.layer${i + 1}`);
export const ONEOFF = {
	101: [[['main', 'app.handle', 'app.work', MEMCPY], 5000], [['main', 'app.handle', 'app.idle'], 400]],
	102: [[['main', 'app.handle', 'app.work', MEMCPY], 3000], [['main', 'page_fault', MEMCPY], 40],
		[['main', ...DEEP, MEMCPY], 1]],
};

export const HOSTS = ['checkout-1', 'checkout-2'];
export const SLOTS = 12;                      // 5-minute slots
// the load changes over time, so the timeline has a shape
const factor = k => [1, 1.3, 1.1, 0.8, 1.4, 2, 1.6, 1.2, 0.9, 1, 1.5, 1.1][k % 12];

// folded stacks ({stack: value}) of one version over all hosts and slots
export function expected(version) {
	const idx = version === '1.4' ? 1 : 2;
	const out = new Map();
	for (let k = 0; k < SLOTS; k++)
		for (const _ of HOSTS)
			for (const s of STACKS) {
				const key = s[0].join(';');
				out.set(key, (out.get(key) || 0) + Math.round(s[idx] * factor(k)));
			}
	return out;
}
export const sum = m => [...m.values()].reduce((a, b) => a + b, 0);
// samples with a frame of that name (or matching that regex) on the stack
export function withFrame(m, match) {
	let n = 0;
	for (const [k, v] of m)
		if (k.split(';').some(f => (match instanceof RegExp ? match.test(f) : f === match))) n += v;
	return n;
}

// ---------------------------------------------------------------- cleanup
const cleanups = [];
export function atCleanup(fn) { cleanups.push(fn); }
export async function cleanup() {
	while (cleanups.length) {
		const fn = cleanups.pop();
		try { await fn(); } catch (e) { console.error('cleanup:', e.message); }
	}
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
	process.on(sig, async () => { await cleanup(); process.exit(1); });

export function tempDir(tag) {
	const d = mkdtempSync(path.join(tmpdir(), `smolder-ui-${tag}.`));
	atCleanup(() => rmSync(d, {recursive: true, force: true}));
	return d;
}

// ---------------------------------------------------------------- server
export async function startServer() {
	const bin = process.env.SMOLDER_SERVER || path.join(REPO, 'bin/smolder-server');
	if (!existsSync(bin)) throw new Error(`${bin} does not exist (build it first)`);
	const help = spawnSyncText(bin, ['--help']);
	if (!help.includes('--ui-dir'))
		throw new Error(`${bin} takes no --ui-dir: the server does not serve the UI yet`);
	const dir = tempDir('data');
	const errLog = [];
	// maintenance every second: the week of data gets its roll-ups at once
	const child = spawn(bin, ['--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data'),
		'--ui-dir', process.env.SMOLDER_UI_DIR || path.join(REPO, 'ui'),
		'--maintenance-interval', '1s'], {stdio: ['ignore', 'pipe', 'pipe']});
	let exited = null;
	child.on('exit', (code, sig) => { exited = {code, sig}; });
	atCleanup(() => new Promise(res => {
		if (exited) return res();
		child.on('exit', res);
		child.kill('SIGKILL');
	}));
	child.stderr.on('data', d => { errLog.push(d.toString()); if (errLog.length > 400) errLog.shift(); });
	const base = await new Promise((resolve, reject) => {
		let out = '';
		const t = setTimeout(() => reject(new Error('server did not listen within 20 s')), 20000);
		child.stdout.on('data', d => {
			out += d;
			const m = out.match(/^smolder-server listening on (http:\/\/127\.0\.0\.1:\d+)$/m);
			if (m) { clearTimeout(t); resolve(m[1]); }
		});
		child.on('exit', () => { clearTimeout(t); reject(new Error(
			`server exited before listening: ${errLog.join('').slice(-2000)}`)); });
	});
	return {
		base, child,
		stderrTail: (n = 30) => errLog.join('').split('\n').slice(-n).join('\n'),
		// a clean shutdown: SIGTERM, and the exit status must be 0
		stop: () => new Promise((resolve, reject) => {
			if (exited) return reject(new Error(`server had exited: ${JSON.stringify(exited)}`));
			child.on('exit', (code, sig) => code === 0 ? resolve() :
				reject(new Error(`server exit status ${code} ${sig || ''}: ${errLog.join('').slice(-3000)}`)));
			child.kill('SIGTERM');
		}),
	};
}

function spawnSyncText(bin, args) {
	try {
		return execFileSync(bin, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
	} catch (e) {
		return `${e.stdout || ''}${e.stderr || ''}`;
	}
}

export async function api(base, p, params = {}) {
	const u = new URL(p, base);
	for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
	const r = await fetch(u);
	const body = await r.text();
	if (!r.ok) throw new Error(`GET ${u}: ${r.status} ${body}`);
	return JSON.parse(body);
}

// Ingests the data above; returns the range it covers (unix seconds).
// The slots lie between 58 and 2 minutes ago, so the UI's default "last
// hour" shows all of them too.
export async function ingest(base) {
	const now = Math.floor(Date.now() / 60000) * 60;
	const t0 = now - 58 * 60;
	const post = async (labels, body) => {
		const u = new URL('/api/v1/ingest/pprof', base);
		for (const [k, v] of Object.entries(labels)) u.searchParams.set(k, v);
		const r = await fetch(u, {method: 'POST', body});
		const t = await r.text();
		if (r.status !== 200) throw new Error(`ingest ${u}: ${r.status} ${t}`);
	};
	for (let k = 0; k < SLOTS; k++) {
		const timeNanos = BigInt(t0 + 300 * k) * 1000000000n + 30000000000n;
		for (const host of HOSTS)
			for (const [version, idx] of [['1.4', 1], ['1.5', 2]]) {
				const stacks = STACKS.map(s => ({frames: s[0], value: Math.round(s[idx] * factor(k))}));
				await post({service: 'checkout', version, hostname: host},
					encodeProfile({stacks, timeNanos, durationNanos: 10000000000n,
					               binary: '/usr/local/bin/checkout', files: FILES}));
			}
		await post({service: 'search-api', version: '2.0', hostname: 'search-1'},
			encodeProfile({stacks: SEARCH_API.map(s => ({frames: s[0], value: s[1]})),
			               timeNanos, durationNanos: 10000000000n,
			               binary: '/usr/local/bin/search-api', files: FILES}));
		await post({service: 'importer', version: '3.0', hostname: 'import-1'},
			encodeProfile({stacks: IMPORTER.map(s => ({frames: s[0], value: s[1]})),
			               timeNanos, durationNanos: 10000000000n,
			               binary: '/usr/local/bin/importer', files: FILES}));
	}
	for (const [pid, stacks] of Object.entries(ONEOFF))
		await post({service: 'oneoff', pid, hostname: 'app-1'},
			encodeProfile({stacks: stacks.map(([frames, value]) => ({frames, value})),
			               timeNanos: BigInt(t0 + 900) * 1000000000n, durationNanos: 10000000000n,
			               binary: '/usr/local/bin/app', files: {}}));
	// a native batch from tests/tools/mkbatch: service "svc", named frames
	// fn_7_<i> and the kernel frame do_syscall_64
	const mk = process.env.SMOLDER_MKBATCH || path.join(REPO, 'build/tests/mkbatch');
	if (!existsSync(mk)) throw new Error(`${mk} does not exist (build it first)`);
	const dir = tempDir('batch');
	const out = execFileSync(mk, ['--seed', '7', '--processes', '2', '--stacks', '6', '--rows', '120',
		'--start-ns', `${t0 + 600}000000000`, path.join(dir, 'b')], {encoding: 'utf8'});
	const r = await fetch(new URL('/api/v1/ingest', base), {method: 'POST',
		headers: {'Content-Type': 'application/x-smolder-batch'}, body: readFileSync(path.join(dir, 'b'))});
	if (r.status !== 200) throw new Error(`native ingest: ${r.status} ${await r.text()}`);
	// and one of Python frames (service "py"): Handler.fn_8_<i> in
	// /srv/app/handlers.py at line 10 + i, language "python"
	const pyOut = execFileSync(mk, ['--seed', '8', '--processes', '1', '--stacks', '4', '--rows', '60',
		'--service', 'py', '--python', '--start-ns', `${t0 + 600}000000000`, path.join(dir, 'p')],
		{encoding: 'utf8'});
	const rp = await fetch(new URL('/api/v1/ingest', base), {method: 'POST',
		headers: {'Content-Type': 'application/x-smolder-batch'}, body: readFileSync(path.join(dir, 'p'))});
	if (rp.status !== 200) throw new Error(`python ingest: ${rp.status} ${await rp.text()}`);
	return {from: t0 - 60, to: now + 60, batchSamples: Number(out.match(/samples=(\d+)/)[1]),
		pySamples: Number(pyOut.match(/samples=(\d+)/)[1])};
}

// Values in other units, in the last hour: off-CPU time (nanoseconds) of a
// service "waits" as the agent's type, and through Pyroscope's /ingest a
// wall-clock profile (nanoseconds) and a heap profile (bytes) of "webapp".
export const OFF_TYPE = 'off_cpu:time:nanoseconds:time:nanoseconds:delta';
export const WALL_TYPE = 'wall:wall:nanoseconds:wall:nanoseconds:delta';
export const HEAP_TYPE = 'inuse_space:inuse_space:bytes:inuse_space:bytes';
export const OFF_STACKS = [
	[['main', 'serve', 'handle', 'db_query', 'read'], 2_750_000_000],   // 2.75 s
	[['main', 'serve', 'handle', 'lock_wait'], 45_600_000],             // 45.6 ms
	[['main', 'serve', 'accept'], 150_000_000_000],                     // 2.50 min
];
export const WALL_FOLDED = [['main;loop;sleep', 3_500_000_000], ['main;loop;work', 1_200_000]];
export const HEAP_FOLDED = [['main;cache;alloc', 12 * 2 ** 20], ['main;buf', 1536]];
export async function ingestUnits(base) {
	const now = Math.floor(Date.now() / 1000);
	const u = new URL('/api/v1/ingest/pprof', base);
	for (const [k, v] of Object.entries({__name__: 'off_cpu', service: 'waits', hostname: 'db-1'}))
		u.searchParams.set(k, v);
	let r = await fetch(u, {method: 'POST', body: encodeProfile({
		stacks: OFF_STACKS.map(([frames, value]) => ({frames, value})),
		timeNanos: BigInt(now - 600) * 1000000000n, durationNanos: 10000000000n,
		sampleType: ['time', 'nanoseconds'], periodType: ['time', 'nanoseconds'], period: 1})});
	if (r.status !== 200) throw new Error(`off-CPU ingest: ${r.status} ${await r.text()}`);
	for (const [name, units, rows, extra] of [['webapp.wall{service=webapp}', 'nanoseconds', WALL_FOLDED, {}],
		['webapp.inuse_space{service=webapp}', 'bytes', HEAP_FOLDED, {aggregationType: 'average'}]]) {
		const p = new URL('/ingest', base);
		for (const [k, v] of Object.entries({name, units, from: now - 600, until: now - 590, ...extra}))
			p.searchParams.set(k, v);
		r = await fetch(p, {method: 'POST', body: rows.map(([s, v]) => `${s} ${v}`).join('\n') + '\n'});
		if (r.status !== 200) throw new Error(`pyroscope ingest ${name}: ${r.status} ${await r.text()}`);
	}
}

// A week of a nightly batch job, every 3 hours from 7 days ago (less an
// hour) to an hour ago: what a 7-day range shows, from the roll-ups the
// server writes for it. Returns the total.
export const WEEK_STACKS = [[['main', 'nightly.run', 'nightly.compact'], 7],
	[['main', 'nightly.run', 'nightly.upload', 'net.(*conn).Write'], 3]];
export async function ingestWeek(base) {
	const now = Math.floor(Date.now() / 300000) * 300;
	let total = 0;
	for (let t = now - 7 * 86400 + 3600; t <= now - 3600; t += 3 * 3600) {
		const u = new URL('/api/v1/ingest/pprof', base);
		for (const [k, v] of Object.entries({service: 'nightly', version: '3.1', hostname: 'batch-1'}))
			u.searchParams.set(k, v);
		const body = encodeProfile({stacks: WEEK_STACKS.map(([frames, value]) => ({frames, value})),
			timeNanos: BigInt(t) * 1000000000n, durationNanos: 10000000000n,
			binary: '/usr/local/bin/nightly', files: {}});
		const r = await fetch(u, {method: 'POST', body});
		if (r.status !== 200) throw new Error(`ingest ${u}: ${r.status} ${await r.text()}`);
		total += WEEK_STACKS.reduce((a, [, v]) => a + v, 0);
	}
	return total;
}

// 200 hosts of one service, host i with weight i + 1, twenty minutes ago:
// a timeline of 200 series.
export const FLEET = 200;
export const fleetHost = i => `fleet-${String(i).padStart(3, '0')}`;
export async function ingestFleet(base) {
	const t = Math.floor(Date.now() / 60000) * 60 - 20 * 60;
	for (let i = 0; i < FLEET; i += 20)
		await Promise.all(Array.from({length: Math.min(20, FLEET - i)}, async (_, k) => {
			const u = new URL('/api/v1/ingest/pprof', base);
			for (const [key, v] of Object.entries({service: 'fleet', version: '1', hostname: fleetHost(i + k)}))
				u.searchParams.set(key, v);
			const body = encodeProfile({stacks: [{frames: ['main', 'fleet.work'], value: i + k + 1}],
				timeNanos: BigInt(t) * 1000000000n, durationNanos: 10000000000n,
				binary: '/usr/local/bin/fleet', files: {}});
			const r = await fetch(u, {method: 'POST', body});
			if (r.status !== 200) throw new Error(`ingest ${u}: ${r.status} ${await r.text()}`);
		}));
}

// One sample of the server's /metrics, 0 when absent.
export async function metric(base, name, labels = '') {
	const text = await (await fetch(new URL('/metrics', base))).text();
	const line = text.split('\n').find(l => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
	return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

// ---------------------------------------------------------------- browser
export async function launchBrowser() {
	if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} does not exist (apt-get install chromium)`);
	const {chromium} = await import('playwright-core');
	const profile = tempDir('chromium');
	const context = await chromium.launchPersistentContext(profile, {
		executablePath: CHROMIUM,
		headless: true,
		args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync'],
		viewport: {width: 1280, height: 800},
		deviceScaleFactor: 1,
		handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
	});
	atCleanup(() => context.close());
	return context;
}
