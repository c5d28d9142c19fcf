#!/usr/bin/env node
// ui_test.mjs - the web UI in headless Debian Chromium (playwright-core, no
// browser download) against the real smolder-server ($SMOLDER_SERVER) with
// known data ingested through the real API (fixture.mjs): the flame graph
// shows the expected frames, tooltip, click-to-zoom with breadcrumb and
// URL, search highlights and its share, the top table and its sorting,
// diff colours and deltas, the URL round trip, range picker, timeline
// drag, a 7-day range from roll-ups, 200 series as ten lines and "other",
// empty and error states, autocompletion, kernel marks, downloads.
// It drives the page only through ui/CONTRACT.md's hooks.
//
//   node tests/ui/ui_test.mjs                     every check; exit 1 if any fails
//   node tests/ui/ui_test.mjs --screenshots DIR   only DIR/screenshot-main.png
//                                                 and DIR/screenshot-diff.png (1280x800)
//
// Every check runs (a failure does not hide the next ones); the browser,
// the server and the temp dirs are gone on any exit.
import assert from 'node:assert/strict';
import path from 'node:path';

import * as F from './fixture.mjs';

const argv = process.argv.slice(2);
const shotDir = argv[0] === '--screenshots' ? path.resolve(argv[1] || 'docs') : null;
const t0 = Date.now();

let server, context, base, R;
const pageProblems = [];              // uncaught errors, console errors, foreign requests

async function newPage() {
	const page = await context.newPage();
	page.setDefaultTimeout(10000);
	page.on('pageerror', e => pageProblems.push(`page error: ${e.message}`));
	page.on('console', m => {
		if (m.type() === 'error' && !/Failed to load resource/.test(m.text()))
			pageProblems.push(`console error: ${m.text()}`);
	});
	page.on('request', r => {
		const u = r.url();
		if (!u.startsWith(base + '/') && !/^(data|blob|about):/.test(u))
			pageProblems.push(`request left the origin: ${u}`);
	});
	return page;
}

// what window.__smolder holds, without its functions
const hook = page => page.evaluate(() => {
	const s = window.__smolder;
	return s ? JSON.parse(JSON.stringify(s)) : null;
});

async function summary(page) {
	try {
		const s = await hook(page);
		const status = await page.locator('[data-testid=status]').first().textContent({timeout: 500})
			.catch(() => '(no status element)');
		if (!s) return `window.__smolder is not set; status: ${status}`;
		return JSON.stringify({ready: s.ready, state: s.state, total: s.flame?.total,
			frames: s.flame?.frames?.length, status: status?.trim().slice(0, 200)});
	} catch (e) {
		return `(no state: ${e.message})`;
	}
}

// until(page, s => bool, what): polls window.__smolder (a JSON copy, so the
// predicate runs here and may use closures; no code is evaluated in the
// page, whose CSP forbids eval) until it is ready and satisfies pred
async function until(page, pred, what, timeout = 10000) {
	const end = Date.now() + timeout;
	let s = null, err = null;
	for (;;) {
		try {
			s = await hook(page);
			if (s && s.ready && pred(s)) return s;
		} catch (e) {
			err = e;
		}
		if (Date.now() > end)
			throw new Error(`timed out waiting for ${what}${err ? ` (${err.message.split('\n')[0]})` : ''}` +
				`\n    state now: ${await summary(page)}`);
		await new Promise(r => setTimeout(r, 100));
	}
}

const url = params => `${base}/?${new URLSearchParams(params)}`;
const urlParams = page => Object.fromEntries(new URL(page.url()).searchParams);

// opens a view by URL and waits until it shows that query
async function open(page, params, pred = () => true, what = 'the view to render') {
	await page.goto(url(params));
	return until(page, s => s.state.query === params.query && pred(s), what);
}

const frameOf = (s, name) => s.flame.frames.find(f => f.name === name);
function mustFrame(s, name) {
	const f = frameOf(s, name);
	assert.ok(f, `no frame named ${name} among ${s.flame.frames.length}: ${
		s.flame.frames.map(x => x.name).slice(0, 40).join(', ')}`);
	return f;
}
const root = s => s.flame.frames.reduce((a, f) => (f.depth < a.depth ? f : a));
const rgb = c => {
	const m = /rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(c || '');
	assert.ok(m, `colour ${JSON.stringify(c)} is not "rgb(r, g, b)"`);
	return m.slice(1, 4).map(Number);
};
// text with thousands separators ("1,320", "1 320") taken out
const digits = t => (t || '').replace(/(\d)[,\u00a0\u202f ](?=\d{3}\b)/g, '$1');
const near = (a, b, tol) => Math.abs(a - b) <= tol;

// the canvas pixels of the column at CSS x: [{y (CSS px), rgb}] runs of one colour
async function column(page, x) {
	const {px, scale, sx} = await page.evaluate(cx => {
		const c = document.querySelector('[data-testid=flamegraph]');
		const r = c.getBoundingClientRect();
		const ctx = c.getContext('2d');
		if (!ctx) throw new Error('the flamegraph canvas has no 2d context');
		const sx = c.width / r.width;
		const d = ctx.getImageData(Math.min(c.width - 1, Math.floor(cx * sx)), 0, 1, c.height).data;
		return {px: Array.from(d), scale: c.height / r.height, sx};
	}, x);
	const runs = [];
	for (let i = 0; i < px.length; i += 4) {
		const c = [px[i], px[i + 1], px[i + 2]];
		const last = runs[runs.length - 1];
		if (last && last.rgb.every((v, k) => near(v, c[k], 2))) last.y1 = i / 4;
		else runs.push({y0: i / 4, y1: i / 4, rgb: c});
	}
	return runs.map(r => ({top: r.y0 / scale, bottom: (r.y1 + 1) / scale, rgb: r.rgb, sx}));
}

// where on the page a frame is drawn: the run of its colour in its column
// whose hover tooltip names it. Returns page coordinates.
async function locateFrame(page, f) {
	const box = await page.locator('[data-testid=flamegraph]').boundingBox();
	assert.ok(box && box.width > 0 && box.height > 0, 'the flamegraph canvas has no size');
	const x = f.x + Math.min(f.w / 2, 40);
	const want = rgb(f.color);
	const runs = (await column(page, x)).filter(r => r.bottom - r.top >= 4);
	const same = runs.filter(r => r.rgb.every((v, k) => near(v, want[k], 6)));
	assert.ok(same.length, `frame ${f.name}: colour ${f.color} not on the canvas at x=${x}`);
	const tip = page.locator('[data-testid=tooltip]');
	for (const r of [...same, ...runs.filter(r => !same.includes(r))]) {
		const p = {x: box.x + x, y: box.y + (r.top + r.bottom) / 2};
		await page.mouse.move(p.x, p.y);
		const text = await tip.textContent({timeout: 300}).catch(() => '');
		if (await tip.isVisible() && text.includes(f.name)) return {...p, tooltip: text};
	}
	throw new Error(`no place in the column at x=${x} shows a tooltip naming ${f.name}`);
}

async function shareShown(page) {
	const t = (await page.locator('[data-testid=search-share]').textContent()) || '';
	const m = /(\d+(?:\.\d+)?)\s*%/.exec(t);
	assert.ok(m, `search-share says ${JSON.stringify(t)}: no percentage`);
	return Number(m[1]);
}

// ---------------------------------------------------------------- checks
const results = [];
async function check(name, fn) {
	const page = await newPage();
	try {
		await fn(page);
		results.push({name, ok: true});
		console.log(`ok ${results.length} - ${name}`);
	} catch (e) {
		results.push({name, ok: false, error: e});
		console.log(`not ok ${results.length} - ${name}\n    ${
			String(e.stack || e).split('\n').slice(0, 6).join('\n    ')}`);
	} finally {
		await page.close().catch(() => {});
	}
}

async function screenshots(dir) {
	const page = await newPage();
	// the last hour (the UI's default range), lines per version, a tooltip
	const s = await open(page, {query: '{service="checkout"}', from: 'now-1h', to: 'now',
		group_by: 'version'}, s => s.flame.frames.length > 10);
	await page.waitForTimeout(300);
	await locateFrame(page, mustFrame(s, F.JSON_FN));
	await page.screenshot({path: path.join(dir, 'screenshot-main.png')});
	await page.mouse.move(0, 0);
	await open(page, {query: Q14, compare: Q15, from: 'now-1h', to: 'now'},
		s => s.flame.frames.some(f => typeof f.delta === 'number'));
	await page.waitForTimeout(300);
	await page.screenshot({path: path.join(dir, 'screenshot-diff.png')});
	await page.close();
	console.log(`screenshots: ${dir}/screenshot-main.png, ${dir}/screenshot-diff.png`);
}

const Q14 = '{service="checkout", version="1.4"}';
const Q15 = '{service="checkout", version="1.5"}';
const QALL = '{service="checkout"}';

async function main() {
	server = await F.startServer();
	base = server.base;
	R = await F.ingest(base);
	await F.ingestUnits(base);
	const weekTotal = await F.ingestWeek(base);
	await F.ingestFleet(base);
	R.from = String(R.from);
	R.to = String(R.to);
	context = await F.launchBrowser();
	if (shotDir) return screenshots(shotDir);

	const e14 = F.expected('1.4'), e15 = F.expected('1.5');
	const n14 = F.sum(e14), n15 = F.sum(e15);
	const v14 = {query: Q14, from: R.from, to: R.to};
	const apiTree = await F.api(base, '/api/v1/query', v14);
	assert.equal(apiTree.total, n14, 'the API does not hold the data ingested');

	await check('the server serves the UI at / and 404s what ui/ lacks', async () => {
		let r = await fetch(base + '/');
		assert.equal(r.status, 200);
		assert.match(r.headers.get('content-type') || '', /^text\/html/);
		assert.match(await r.text(), /<script[^>]*type="?module/i);
		r = await fetch(base + '/ui/no-such-file.js');
		assert.equal(r.status, 404);
	});

	await check('flame graph: total and the expected frames, widths, depths, drawn on the canvas',
		async page => {
			const s = await open(page, v14, s => s.flame.frames.length > 0);
			assert.equal(s.state.from, R.from);
			assert.equal(s.state.to, R.to);
			assert.equal(s.flame.total, n14, 'flame.total');
			const r = root(s);
			for (const [k] of e14)
				for (const name of k.split(';')) mustFrame(s, name);
			const j = mustFrame(s, F.JSON_FN), o = mustFrame(s, F.ORDER_FN);
			assert.equal(j.total, F.withFrame(e14, F.JSON_FN), `${F.JSON_FN} total`);
			assert.equal(j.depth, o.depth + 1, `${F.JSON_FN} is a child of ${F.ORDER_FN}`);
			assert.ok(j.x >= o.x && j.x + j.w <= o.x + o.w + 0.5, 'child inside its parent');
			assert.ok(near(j.w, r.w * j.total / r.total, 1.5),
				`width ${j.w} not ${r.w * j.total / r.total} (its share of the root's ${r.w})`);
			assert.equal(j.highlighted, false);
			assert.equal(j.kernel, false);
			const runs = await column(page, j.x + j.w / 2);
			const want = rgb(j.color);
			assert.ok(runs.some(x => x.rgb.every((v, k) => near(v, want[k], 6))),
				`the canvas column of ${F.JSON_FN} has no pixel of its colour ${j.color}`);
			const colours = new Set(runs.map(x => x.rgb.join()));
			assert.ok(colours.size >= 4, `only ${colours.size} colours in a column: is the canvas drawn?`);
		});

	// file:line is not checked: frames ingested as pprof keep their names
	// but not their files and lines (server/pprof_in.c), and symbolized ones
	// would need real binaries and debug info
	await check('tooltip: name, total, % of total', async page => {
		const s = await open(page, v14, s => s.flame.frames.length > 0);
		const f = mustFrame(s, 'encoding/json.structEncoder.encode');
		const tooltip = digits((await locateFrame(page, f)).tooltip);
		assert.ok(tooltip.includes(String(f.total)), `tooltip ${JSON.stringify(tooltip)} lacks total ${f.total}`);
		const pct = (100 * f.total / s.flame.total).toFixed(1);
		assert.ok(tooltip.includes(pct), `tooltip ${JSON.stringify(tooltip)} lacks ${pct}%`);
	});

	await check('click zooms: frame fills the width, breadcrumb and URL follow; a crumb zooms out',
		async page => {
			let s = await open(page, v14, s => s.flame.frames.length > 0);
			const rw = root(s).w;
			const p = await locateFrame(page, mustFrame(s, F.ORDER_FN));
			await page.mouse.click(p.x, p.y);
			s = await until(page, s => s.state.focus === F.ORDER_FN, `focus on ${F.ORDER_FN}`);
			assert.equal(urlParams(page).focus, F.ORDER_FN, 'focus in the URL');
			const o = mustFrame(s, F.ORDER_FN);
			assert.ok(near(o.w, rw, 2), `zoomed frame is ${o.w} px wide, not the full ${rw}`);
			assert.ok(!s.flame.frames.some(f => f.name === F.GC_FN && f.w >= 1),
				`${F.GC_FN} (outside the zoomed frame) still shown`);
			mustFrame(s, F.JSON_FN);
			const crumbs = page.locator('[data-testid=breadcrumb] [data-testid=crumb]');
			assert.ok(await crumbs.count() >= 2, 'fewer than 2 crumbs after a zoom');
			assert.ok((await crumbs.last().textContent()).includes(F.ORDER_FN), 'last crumb');
			await crumbs.first().click();
			s = await until(page, s => !s.state.focus, 'zoomed out by the first crumb');
			assert.ok(!urlParams(page).focus, 'focus left in the URL after zooming out');
			assert.ok(near(mustFrame(s, F.GC_FN).w, rw * F.withFrame(e14, F.GC_FN) / n14, 1.5),
				`${F.GC_FN} back at its width`);
		});

	await check('window.__smolder.zoom(name) and reset()', async page => {
		await open(page, v14, s => s.flame.frames.length > 0);
		await page.evaluate(n => window.__smolder.zoom(n), F.SQL_FN);
		let s = await until(page, s => s.state.focus === F.SQL_FN, 'zoom(name)');
		assert.equal(mustFrame(s, F.SQL_FN).total, F.withFrame(e14, F.SQL_FN));
		assert.equal(frameOf(s, F.JSON_FN), undefined, 'a sibling is still shown after zoom');
		await page.evaluate(() => window.__smolder.reset());
		s = await until(page, s => !s.state.focus, 'reset()');
		mustFrame(s, F.JSON_FN);
	});

	await check('search highlights exactly the matching frames and shows their share', async page => {
		await open(page, v14, s => s.flame.frames.length > 0);
		await page.locator('[data-testid=search-input]').fill('json');
		await page.locator('[data-testid=search-input]').press('Enter');
		const s = await until(page, s => s.state.search === 'json' && s.flame.frames.some(f => f.highlighted),
			'search=json highlighted');
		const wrong = s.flame.frames.filter(f => f.highlighted !== /json/i.test(f.name));
		assert.deepEqual(wrong.map(f => `${f.name}:${f.highlighted}`), [], 'frames highlighted wrongly');
		assert.equal(urlParams(page).search, 'json', 'search in the URL');
		const want = 100 * F.withFrame(e14, /json/i) / n14;
		await page.waitForFunction(() => /\d\s*%/.test(
			document.querySelector('[data-testid=search-share]')?.textContent || ''));
		const got = await shareShown(page);
		assert.ok(near(got, want, 0.051), `search-share ${got}% not ${want.toFixed(2)}%`);
	});

	await check('top table: the functions with their flat/cum, sorts, a click opens the function\'s sandwich',
		async page => {
			await open(page, v14, s => s.flame.frames.length > 0);
			const top = await F.api(base, '/api/v1/top', v14);
			const rows = page.locator('[data-testid=top-table] [data-testid=top-row]');
			await rows.first().waitFor();
			const names = await rows.evaluateAll(rs => rs.map(r => r.dataset.name));
			for (const r of top.rows) assert.ok(names.includes(r.name), `no row for ${r.name}`);
			assert.equal(names[0], top.rows[0].name, 'not ordered by flat at first');
			const first = digits((await rows.first().locator('td, th').allTextContents()).join(' | '));
			assert.ok(first.includes(String(top.rows[0].flat)), `row ${first} lacks flat ${top.rows[0].flat}`);
			// sort by cumulative: the header cell that says "cum"
			const header = page.locator('[data-testid=top-table] th').filter({hasText: /cum/i}).first();
			await header.click();
			const byCum = [...top.rows].sort((a, b) => b.cum - a.cum);
			await page.waitForFunction(n => document.querySelector(
				'[data-testid=top-table] [data-testid=top-row]')?.dataset.name === n, byCum[0].name)
				.catch(async () => assert.fail(`after a click on "cum" the first row is ${
					await rows.first().getAttribute('data-name')}, not ${byCum[0].name}`));
			const cums = await rows.evaluateAll(rs => rs.map(r => r.dataset.name));
			const cumOf = Object.fromEntries(top.rows.map(r => [r.name, r.cum]));
			for (let i = 1; i < cums.length; i++)
				assert.ok(cumOf[cums[i - 1]] >= cumOf[cums[i]], `not sorted by cum at row ${i}`);
			await page.locator(`[data-testid=top-row][data-name="${F.JSON_FN}"]`).click();
			const s = await until(page, s => s.state.sandwich === F.JSON_FN && s.sandwich,
				'the sandwich from the table');
			assert.equal(urlParams(page).sandwich, F.JSON_FN);
			assert.equal(s.sandwich.total, F.withFrame(e14, F.JSON_FN), 'sandwich total');
			assert.equal(s.state.focus, '', 'a table click zoomed the flame graph');
		});

	await check('top table click: the function\'s sandwich with every caller merged, not its first frame; ' +
		'the callers graph as tall as what it draws', async page => {
		const q = {query: '{service="oneoff"}', from: R.from, to: R.to};
		const all = Object.values(F.ONEOFF).flat();
		const total = all.reduce((a, [, v]) => a + v, 0);
		const mem = all.filter(([fr]) => fr.includes(F.MEMCPY)).reduce((a, [, v]) => a + v, 0);
		await open(page, q, s => s.flame.total === total);
		await page.locator(`[data-testid=top-row][data-name="${F.MEMCPY}"]`).click();
		const s = await until(page, s => s.sandwich && s.sandwich.name === F.MEMCPY, 'memcpy\'s sandwich');
		assert.equal(s.sandwich.total, mem, 'all of memcpy\'s samples, every caller merged');
		assert.equal(s.flame.total, total, 'the flame graph was zoomed to one occurrence');
		assert.equal(s.state.focus, '');
		const callers = s.sandwich.callers.frames.filter(f => f.depth === 1).map(f => f.name);
		for (const c of ['app.work', 'page_fault'])
			assert.ok(callers.includes(c), `caller ${c} not in the callers graph: ${callers}`);
		const box = await page.locator('[data-testid=sandwich]').boundingBox();
		assert.ok(box && box.y < 800 && box.y + 40 > 0, `the sandwich is not in view (y ${box && box.y})`);
		// the 40-deep one-off is narrower than half a pixel: no empty rows for it
		const maxDepth = Math.max(...s.sandwich.callers.frames.map(f => f.depth));
		const h = await page.locator('#sandwich-callers').evaluate(c => c.getBoundingClientRect().height);
		assert.equal(maxDepth, 3, `callers drawn ${maxDepth} deep`);
		assert.equal(h, (maxDepth + 1) * 18, `callers canvas ${h} px for ${maxDepth + 1} rows of frames`);
		assert.equal(s.sandwich.callers.rows, maxDepth + 1);
	});

	await check('top table: the function column resizes; a cut name is whole in its title and when selected',
		async page => {
			await open(page, v14, s => s.flame.frames.length > 0);
			const long = 'encoding/json.(*encodeState).reflectValue';
			const cell = page.locator(`[data-testid=top-row][data-name="${long}"] td.fn`);
			await cell.waitFor();
			const cut = () => cell.evaluate(td => td.scrollWidth > td.clientWidth + 1);
			assert.ok(await cut(), `${long} is not cut at the default width: the check proves nothing`);
			assert.ok((await cell.getAttribute('title')).startsWith(long), 'title lacks the full name');
			const th = page.locator('[data-testid=top-table] th').first();
			const w0 = (await th.boundingBox()).width;
			const hb = await page.locator('[data-testid=top-name-resize]').boundingBox();
			await page.mouse.move(hb.x + hb.width / 2, hb.y + hb.height / 2);
			await page.mouse.down();
			await page.mouse.move(hb.x + 150, hb.y + hb.height / 2, {steps: 6});
			await page.mouse.move(hb.x + 250, hb.y + hb.height / 2, {steps: 4});
			await page.mouse.up();
			const w1 = (await th.boundingBox()).width;
			assert.ok(w1 > w0 + 200, `dragging the handle 250 px: ${w0} -> ${w1} px`);
			assert.ok(!(await cut()), `${long} still cut at ${w1} px`);
			// narrow again with the keyboard: cut, then whole once selected
			const handle = page.locator('[data-testid=top-name-resize]');
			await handle.focus();
			for (let i = 0; i < 12; i++) await handle.press('ArrowLeft');
			assert.ok((await th.boundingBox()).width < w0, 'arrow keys did not narrow the column');
			assert.ok(await cut(), 'not cut when narrow');
			await page.locator(`[data-testid=top-row][data-name="${long}"]`).click();
			await until(page, s => s.state.sandwich === long, 'selected');
			assert.ok(!(await cut()), 'the selected row still cuts its name');
			assert.equal(await cell.textContent(), long);
		});

	await check('label picker: pid offered apart and unticked where series carry it; ticking it groups by process',
		async page => {
			await open(page, {query: QALL, from: R.from, to: R.to}, s => s.flame.total > 0);
			await page.locator('[data-testid=group-by-pick]').click();
			const boxes = page.locator('[data-testid=group-picker] [data-testid=group-by-label]');
			await boxes.first().waitFor();
			const names = await boxes.evaluateAll(bs => bs.map(b => b.dataset.label));
			assert.ok(names.includes('version') && !names.includes('pid'), `checkout's labels: ${names}`);
			await page.keyboard.press('Escape');
			await open(page, {query: '{service="oneoff"}', from: R.from, to: R.to}, s => s.flame.total > 0);
			await page.locator('[data-testid=group-by-pick]').click();
			const pid = page.locator('[data-testid=group-picker] [data-testid=group-by-label][data-label=pid]');
			await pid.waitFor().catch(() => assert.fail('no pid in the picker for series that carry it'));
			assert.equal(await pid.isChecked(), false, 'pid ticked by default');
			assert.match(await page.locator('[data-testid=group-picker]').textContent(), /opt-in/);
			await pid.check();
			await until(page, s => s.state.group_by === 'pid', 'group_by=pid');
			assert.equal(urlParams(page).group_by, 'pid');
			await page.waitForFunction(() => {
				const t = document.querySelector('[data-testid=timeline]')?.textContent || '';
				return t.includes('pid=101') && t.includes('pid=102');
			}).catch(() => assert.fail('the timeline has no line per process'));
		});

	const diffWant = name => F.withFrame(e15, name) / n15 - F.withFrame(e14, name) / n14;
	await check('diff view: grown frames red, shrunk green, delta = compare share - base share, legend',
		async page => {
			const s = await open(page, {...v14, compare: Q15},
				s => s.flame.frames.some(f => typeof f.delta === 'number'));
			assert.equal(s.state.compare, Q15);
			await page.locator('[data-testid=legend]').waitFor({state: 'visible'});
			const j = mustFrame(s, F.JSON_FN), q = mustFrame(s, F.SQL_FN);
			assert.ok(near(j.delta, diffWant(F.JSON_FN), 0.002), `${F.JSON_FN} delta ${j.delta} not ${diffWant(F.JSON_FN)}`);
			assert.ok(near(q.delta, diffWant(F.SQL_FN), 0.002), `${F.SQL_FN} delta ${q.delta} not ${diffWant(F.SQL_FN)}`);
			const [jr, jg, jb] = rgb(j.color), [qr, qg, qb] = rgb(q.color);
			assert.ok(jr > jg + 40 && jr > jb + 40, `grown ${F.JSON_FN} is ${j.color}, not red`);
			assert.ok(qg > qr + 40 && qg > qb + 20, `shrunk ${F.SQL_FN} is ${q.color}, not green`);
			// a bigger change is a stronger colour than a smaller one of the same sign
			const m = mustFrame(s, 'runtime.mallocgc');   // grew, less than Marshal
			assert.ok(m.delta > 0 && m.delta < j.delta, 'mallocgc grew less than Marshal');
			const sat = c => { const [r, g, b] = rgb(c); return r - Math.min(g, b); };
			assert.ok(sat(m.color) < sat(j.color), `${m.color} (small growth) not paler than ${j.color}`);
			const runs = await column(page, j.x + j.w / 2);
			assert.ok(runs.some(x => x.rgb.every((v, k) => near(v, [jr, jg, jb][k], 6))),
				'the grown frame\'s red is not on the canvas');
		});

	await check('diff view: "what changed" above the flame graph as the API ranks it; only significant ' +
		'frames coloured, all others neutral', async page => {
			const s = await open(page, {...v14, compare: Q15},
				s => s.flame.frames.some(f => typeof f.delta === 'number'));
			const apiTop = await F.api(base, '/api/v1/diff', {base: Q14, compare: Q15, from: R.from,
				to: R.to, format: 'top', limit: 1000});
			const apiTree = await F.api(base, '/api/v1/diff', {base: Q14, compare: Q15, from: R.from,
				to: R.to});
			const sig = apiTop.rows.filter(r => r.listed);
			assert.equal(sig.length, apiTop.listed_rows);
			const row = n => apiTop.rows.find(r => r.name === n);
			assert.ok(row(F.JSON_FN).cum_significant && row(F.JSON_FN).cum_delta > 0,
				`${F.JSON_FN} not a significant growth in the API's table`);
			assert.ok(row(F.SQL_FN).cum_significant && row(F.SQL_FN).cum_delta < 0,
				`${F.SQL_FN} not a significant drop in the API's table`);
			// the leaf under Marshal that grew is listed; Marshal, whose growth
			// it explains, is not
			const enc = row('encoding/json.structEncoder.encode');
			assert.ok(enc.listed && enc.significant && enc.delta > 0, 'structEncoder.encode not listed');
			assert.ok(!row(F.JSON_FN).listed, `${F.JSON_FN} listed though its callees explain it`);
			// the list: above the canvas, the API's significant rows in its order
			const list = page.locator('[data-testid=changes]');
			await list.waitFor({state: 'visible'});
			const lb = await list.boundingBox(), cb = await page.locator('[data-testid=flamegraph]').boundingBox();
			assert.ok(lb.y + lb.height <= cb.y + 1, 'the list is not above the flame graph');
			const items = await page.locator('[data-testid=change]').evaluateAll(
				ls => ls.map(l => ({name: l.dataset.name, delta: Number(l.dataset.delta), text: l.textContent})));
			assert.deepEqual(items.map(i => i.name), sig.slice(0, 20).map(r => r.name), 'list order');
			const j = items.find(i => i.name === 'encoding/json.structEncoder.encode');
			assert.match(j.text, /^\+\d+\.\d pp encoding\/json\.structEncoder\.encode \(p [<=] [0-9.]+\)$/);
			const end = await page.locator('[data-testid=changes-end]').textContent();
			assert.equal(end, sig.length > 20 ? `${sig.length - 20} more significant changes` :
				'no other significant change');
			// colours: every frame the API calls significant is red or green by
			// direction, every other one is the neutral grey
			const sigOf = new Map();
			const walk = n => { sigOf.set(n.name, (sigOf.get(n.name) || false) || n.significant);
				for (const c of n.children) walk(c); };
			walk(apiTree);
			let coloured = 0, grey = 0;
			for (const f of s.flame.frames) {
				const [r, g, b] = rgb(f.color);
				if (f.significant)
					assert.ok(sigOf.get(f.name), `${f.name}: significant in the page, not in the API`);
				if (!f.significant) {
					assert.deepEqual([r, g, b], [214, 214, 214], `${f.name} not significant but ${f.color}`);
					grey++;
				} else if (f.delta > 0) {
					assert.ok(r > g + 20 && r > b + 20, `${f.name} grew significantly but is ${f.color}`);
					coloured++;
				} else {
					assert.ok(g > r + 20, `${f.name} shrank significantly but is ${f.color}`);
					coloured++;
				}
			}
			assert.ok(coloured >= 2 && grey >= 2, `${coloured} coloured, ${grey} grey frames`);
			// frames whose share moved, but not significantly, are among the grey
			const moved = s.flame.frames.filter(f => Math.abs(f.delta) > 0.005 && !f.significant);
			assert.ok(moved.length >= 1, 'no frame moved without being significant: the check is empty');
			// a click on a line focuses that function
			await page.locator('[data-testid=change][data-name="encoding/json.structEncoder.encode"]').click();
			await until(page, s => s.state.focus === 'encoding/json.structEncoder.encode', 'focus from the list');
		});

	await check('diff toggle: compare selector in the form, run, URL and deltas follow', async page => {
		await open(page, v14, s => s.flame.frames.length > 0);
		await page.locator('[data-testid=diff-toggle]').click();
		await page.locator('[data-testid=compare-input]').fill(Q15);
		await page.locator('[data-testid=run]').click();
		const s = await until(page, s => s.state.compare === Q15 &&
			s.flame.frames.some(f => typeof f.delta === 'number'), 'diff mode from the form');
		assert.equal(urlParams(page).compare, Q15, 'compare in the URL');
		assert.ok(mustFrame(s, F.JSON_FN).delta > 0);
	});

	await check('diff of two ranges (compare_from/compare_to)', async page => {
		const mid = String(Math.floor((Number(R.from) + Number(R.to)) / 2));
		const s = await open(page, {query: QALL, from: R.from, to: mid, compare_from: mid, compare_to: R.to},
			s => s.flame.frames.some(f => typeof f.delta === 'number'));
		assert.equal(s.state.compare_from, mid);
		assert.equal(s.state.compare_to, R.to);
		const p = urlParams(page);
		assert.equal(p.compare_from, mid);
		assert.equal(p.compare_to, R.to);
	});

	await check('URL round trip: query, from, to, compare, search give that state and view, and survive a reload',
		async page => {
			const params = {query: Q14, from: R.from, to: R.to, compare: Q15, search: 'sql'};
			for (const pass of ['load', 'reload']) {
				if (pass === 'load') await page.goto(url(params));
				else await page.reload();
				const s = await until(page, s => s.state.query === Q14 &&
					s.flame.frames.some(f => f.highlighted), `the shared view (${pass})`);
				for (const k of Object.keys(params))
					assert.equal(s.state[k], params[k], `state.${k} after ${pass}`);
				assert.equal(await page.locator('[data-testid=query-input]').inputValue(), Q14);
				assert.equal(await page.locator('[data-testid=compare-input]').inputValue(), Q15);
				assert.equal(await page.locator('[data-testid=search-input]').inputValue(), 'sql');
				const wrong = s.flame.frames.filter(f => f.highlighted !== /sql/i.test(f.name));
				assert.deepEqual(wrong.map(f => f.name), [], `highlights after ${pass}`);
				assert.ok(mustFrame(s, F.SQL_FN).delta < 0, 'diff lost');
				const p = urlParams(page);
				for (const k of Object.keys(params)) assert.equal(p[k], params[k], `URL ${k} after ${pass}`);
			}
		});

	await check('range picker: 15m 1h 24h 7d custom; choosing 24h puts it in the state and URL', async page => {
		await open(page, {query: QALL}, s => s.flame.total > 0);
		const sel = page.locator('[data-testid=range-select]');
		const opts = await sel.locator('option').evaluateAll(os => os.map(o => o.value));
		for (const v of ['15m', '1h', '24h', '7d', 'custom']) assert.ok(opts.includes(v), `no option ${v}: ${opts}`);
		await sel.selectOption('24h');
		const s = await until(page, s => /24h/.test(s.state.from), 'from=now-24h');
		assert.equal(s.flame.total, n14 + n15, 'total over 24 h');
		assert.match(urlParams(page).from || '', /24h/, 'from in the URL');
	});

	await check('timeline: drawn; dragging a range narrows the profile and the URL', async page => {
		const s0 = await open(page, {query: QALL, from: R.from, to: R.to}, s => s.flame.total > 0);
		const canvas = page.locator('[data-testid=timeline] canvas').first();
		await canvas.waitFor();
		const b = await canvas.boundingBox();
		assert.ok(b.width > 200 && b.height > 40, `timeline canvas ${b.width}x${b.height}`);
		await page.mouse.move(b.x + b.width * 0.3, b.y + b.height / 2);
		await page.mouse.down();
		await page.mouse.move(b.x + b.width * 0.5, b.y + b.height / 2, {steps: 8});
		await page.mouse.move(b.x + b.width * 0.6, b.y + b.height / 2, {steps: 4});
		await page.mouse.up();
		const s = await until(page, s => s.state.from !== R.from && s.state.to !== R.to,
			'a dragged range');
		assert.ok(s.flame.total > 0 && s.flame.total < s0.flame.total,
			`total ${s.flame.total} after the drag, ${s0.flame.total} before`);
		const p = urlParams(page);
		assert.equal(p.from, s.state.from);
		assert.equal(p.to, s.state.to);
	});

	await check('timeline group-by: lines per label value, group_by in the URL', async page => {
		await open(page, {query: QALL, from: R.from, to: R.to}, s => s.flame.total > 0);
		const g = page.locator('[data-testid=group-by]');
		await g.fill('version');
		await g.press('Enter');
		await page.waitForFunction(() => new URL(location.href).searchParams.get('group_by') === 'version');
		await page.waitForFunction(() => {
			const t = document.querySelector('[data-testid=timeline]')?.textContent || '';
			return t.includes('1.4') && t.includes('1.5');
		}).catch(() => assert.fail('the timeline does not name the lines 1.4 and 1.5'));
	});

	await check('a selector that selects nothing: "no series match", the closest values; a click runs the fix',
		async page => {
			await page.goto(url({query: '{service="chekout"}', from: R.from, to: R.to}));
			const st = page.locator('[data-testid=status]');
			await page.waitForFunction(() => /no series match/i.test(
				document.querySelector('[data-testid=status]')?.textContent || ''))
				.catch(async () => assert.fail(`status: ${JSON.stringify(await st.textContent().catch(() => null))}`));
			assert.ok(await st.isVisible(), 'status not visible');
			assert.match(await st.textContent(), /did you mean service="checkout"\?/);
			const fix = page.locator('[data-testid=no-match-fix]').first();
			assert.equal(await fix.textContent(), 'service="checkout"');
			await fix.click();
			const s = await until(page, s => s.state.query === '{service="checkout"}' && s.flame.total > 0,
				'the fixed selector run');
			assert.equal(s.flame.total, n14 + n15);
			assert.equal(urlParams(page).query, '{service="checkout"}');
		});

	await check('error state shows the server\'s message', async page => {
		await page.goto(url({query: '{service="x"', from: R.from, to: R.to}));
		const st = page.locator('[data-testid=status]');
		await page.waitForFunction(() => /expected/i.test(
			document.querySelector('[data-testid=status]')?.textContent || ''))
			.catch(async () => assert.fail(`status: ${JSON.stringify(await st.textContent().catch(() => null))}`));
		assert.ok(await st.isVisible(), 'status not visible');
	});

	await check('Enter in the query field runs it', async page => {
		await open(page, v14, s => s.flame.total > 0);
		const q = page.locator('[data-testid=query-input]');
		await q.fill(Q15);
		await q.press('Enter');
		const s = await until(page, s => s.state.query === Q15, 'the new query');
		assert.equal(s.flame.total, n15);
		assert.equal(urlParams(page).query, Q15);
	});

	async function suggestions(page, typed) {
		const q = page.locator('[data-testid=query-input]');
		await q.fill('');
		await q.focus();
		await q.pressSequentially(typed, {delay: 20});
		const list = page.locator('[data-testid=suggestions] li');
		await list.first().waitFor({timeout: 5000}).catch(() => assert.fail(`no suggestions for ${typed}`));
		return list.evaluateAll(ls => ls.map(l => l.dataset.value || l.textContent));
	}
	await check('autocompletion: label names, then values', async page => {
		await open(page, v14, s => s.flame.total > 0);
		const names = await suggestions(page, '{');
		for (const n of ['service', 'version', 'hostname'])
			assert.ok(names.some(v => v.includes(n)), `label ${n} not offered: ${names}`);
		const values = await suggestions(page, '{service="');
		for (const v of ['checkout', 'search-api'])
			assert.ok(values.some(x => x.includes(v)), `value ${v} not offered: ${values}`);
	});

	await check('autocompletion: profile types', async page => {
		await open(page, v14, s => s.flame.total > 0);
		const types = await suggestions(page, 'process');
		assert.ok(types.some(v => v.includes(F.TYPE)), `type not offered: ${types}`);
	});

	await check('kernel frames are marked, named frames of a native batch shown', async page => {
		const s = await open(page, {query: '{service="svc"}', from: R.from, to: R.to}, s => s.flame.total > 0);
		assert.equal(s.flame.total, R.batchSamples);
		assert.equal(mustFrame(s, 'do_syscall_64').kernel, true, 'do_syscall_64 not marked kernel');
		assert.ok(s.flame.frames.some(f => /^fn_7_\d+$/.test(f.name) && f.kernel === false), 'no fn_7_* frame');
	});

	await check('Python frames: coloured as Python, file, line and language in the tooltip', async page => {
		const s = await open(page, {query: '{service="py"}', from: R.from, to: R.to}, s => s.flame.total > 0);
		assert.equal(s.flame.total, R.pySamples);
		const py = s.flame.frames.filter(f => /^Handler\.fn_8_\d+$/.test(f.name));
		assert.ok(py.length, 'no Handler.fn_8_* frame');
		const hue = c => {
			const [r, g, b] = rgb(c).map(v => v / 255), mx = Math.max(r, g, b), d = mx - Math.min(r, g, b);
			const h = mx === r ? ((g - b) / d) % 6 : mx === g ? (b - r) / d + 2 : (r - g) / d + 4;
			return (h * 60 + 360) % 360;
		};
		for (const f of py) {
			assert.equal(f.lang, 'python', `${f.name} has language ${f.lang}`);
			// Python's band (ui/CONTRACT.md): 45-68 degrees, rounding aside
			assert.ok(hue(f.color) >= 44 && hue(f.color) <= 69, `${f.name} is ${f.color}, hue ${hue(f.color)}`);
		}
		// the native frames around them are in no language's band
		const native = s.flame.frames.filter(f => f.name.startsWith('[unknown]'));
		assert.ok(native.length, 'no native frame');
		for (const f of native) {
			assert.equal(f.lang, '', `${f.name} has language ${f.lang}`);
			assert.ok(hue(f.color) < 44 || hue(f.color) > 69, `native ${f.name} in Python's band: ${f.color}`);
		}
		const f = py.reduce((a, b) => (b.w > a.w ? b : a));
		const i = Number(f.name.slice('Handler.fn_8_'.length));
		const tip = (await locateFrame(page, f)).tooltip;
		assert.ok(tip.includes(`/srv/app/handlers.py:${10 + i}`), `tooltip ${JSON.stringify(tip)} lacks file:line`);
		assert.ok(tip.includes('python frame'), `tooltip ${JSON.stringify(tip)} lacks the language`);
	});
	await check('incomplete stacks: the share shown above 1 %, none below; the marker is no frame',
		async page => {
			let s = await open(page, {query: '{service="importer"}', from: R.from, to: R.to},
				s => s.flame.total > 0);
			const note = page.locator('[data-testid=completeness]');
			assert.equal(await note.isVisible(), true, 'no completeness note at 30 %');
			const text = (await note.textContent()) || '';
			assert.match(text, new RegExp(`^${F.IMPORTER_PCT}\\.0 % of these samples have incomplete stacks`),
				`note says ${JSON.stringify(text)}`);
			assert.ok(near(s.completeness.pct, F.IMPORTER_PCT, 0.01), `hook pct ${s.completeness.pct}`);
			assert.equal(s.flame.frames.some(f => f.name === F.TRUNCATED), false,
				'the [truncated] marker is drawn as a frame');
			mustFrame(s, 'bufio.(*Reader).Read');
			s = await open(page, {query: '{service="search-api"}', from: R.from, to: R.to},
				s => s.flame.total > 0);
			assert.equal(await note.isVisible(), false, 'a note for complete stacks');
			assert.equal(s.completeness.pct, 0);
		});

	await check('incomplete stacks: a diff whose sides differ by more than 3 points warns',
		async page => {
			let s = await open(page, {query: '{service="search-api"}', compare: '{service="importer"}',
				from: R.from, to: R.to}, s => s.flame.frames.some(f => typeof f.delta === 'number'));
			const note = page.locator('[data-testid=completeness]');
			assert.equal(await note.isVisible(), true, 'no warning');
			assert.match((await note.getAttribute('class')) || '', /\bwarn\b/);
			const text = (await note.textContent()) || '';
			assert.match(text, /differ in completeness: 0\.0 % and 30\.0 %/, `warning says ${JSON.stringify(text)}`);
			assert.equal(s.completeness.warn, true);
			assert.ok(near(s.completeness.compare_pct, F.IMPORTER_PCT, 0.01));
			s = await open(page, {query: Q14, compare: Q15, from: R.from, to: R.to},
				s => s.flame.frames.some(f => typeof f.delta === 'number'));
			assert.equal(await note.isVisible(), false, 'a warning between two complete sides');
			assert.equal(s.completeness.warn, false);
		});

	await check('download links: pprof and folded of the current view', async page => {
		await open(page, v14, s => s.flame.total > 0);
		const href = async id => new URL(await page.locator(`[data-testid=${id}]`).getAttribute('href'), page.url());
		const p = await href('download-pprof');
		assert.equal(p.origin, base, 'pprof link leaves the origin');
		let r = await fetch(p);
		const buf = Buffer.from(await r.arrayBuffer());
		assert.equal(r.status, 200, `${p}`);
		assert.ok(buf[0] === 0x1f && buf[1] === 0x8b, 'pprof download is not gzip');
		r = await fetch(await href('download-folded'));
		const lines = (await r.text()).trim().split('\n');
		const total = lines.reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
		assert.equal(total, n14, 'folded download total');
		assert.ok(lines.some(l => l.includes(F.JSON_FN)));
	});

	// ---- units: profile types whose values are not sample counts ----
	const cells = async page => Object.fromEntries(await page.locator('[data-testid=top-row]').evaluateAll(
		rows => rows.map(r => [r.dataset.name, [...r.cells].map(c => c.textContent)])));
	const header = async page => page.locator('[data-testid=top-table] thead th').allTextContents();
	const col = (h, name) => h.findIndex(t => t.replace(/[▲▼]/g, '').trim() === name);
	const hourAgo = {from: 'now-1h', to: 'now'};

	await check('profile-type picker: the types with data, and choosing one runs that type', async page => {
		const types = await F.api(base, '/api/v1/types', hourAgo);
		for (const t of [F.OFF_TYPE, F.WALL_TYPE, F.HEAP_TYPE, F.TYPE])
			assert.ok(types.includes(t), `/api/v1/types lacks ${t}: ${types}`);
		await open(page, {query: '{service="waits"}', ...hourAgo});
		const sel = page.locator('[data-testid=type-select]');
		await page.waitForFunction(() => document.querySelectorAll('[data-testid=type-select] option').length > 1);
		const opts = await sel.locator('option').evaluateAll(os => os.map(o => o.value));
		assert.deepEqual([...opts].sort(), [...types].sort(), 'the picker lists /api/v1/types');
		assert.equal(await sel.inputValue(), F.TYPE, 'a selector without a type shows the default');
		await sel.selectOption(F.OFF_TYPE);
		const s = await until(page, s => s.state.query.startsWith(F.OFF_TYPE) && s.flame.total > 0,
			'the off-CPU profile after picking its type');
		assert.equal(s.state.query, `${F.OFF_TYPE}{service="waits"}`, 'the matchers are kept');
		assert.equal(s.unit, 'nanoseconds');
		assert.equal(urlParams(page).query, s.state.query, 'the type in the URL');
		assert.equal(s.flame.total, F.OFF_STACKS.reduce((a, x) => a + x[1], 0));
	});

	await check('nanosecond types read as durations: top table, tooltip, timeline', async page => {
		const s = await open(page, {query: `${F.OFF_TYPE}{service="waits"}`, ...hourAgo},
			s => s.flame.total > 0);
		const c = await cells(page), h = await header(page);
		const flat = col(h, 'flat'), cum = col(h, 'cum');
		assert.ok(flat > 0 && cum > 0, `no flat/cum columns in ${h}`);
		assert.equal(c.read?.[flat], '2.75 s', `read's flat: ${c.read}`);
		assert.equal(c.lock_wait?.[flat], '45.6 ms', `lock_wait's flat: ${c.lock_wait}`);
		assert.equal(c.accept?.[flat], '2.50 min', `accept's flat: ${c.accept}`);
		assert.equal(c.main?.[cum], '2.55 min', `main's cum: ${c.main}`);
		for (const [name, row] of Object.entries(c))
			for (const t of row)
				assert.ok(!/\d{7}/.test(digits(t)), `a raw integer in the top table: ${name} ${row}`);
		const tip = (await locateFrame(page, mustFrame(s, 'read'))).tooltip;
		assert.match(tip, /self: 2\.75 s \(1\.80%\)/, `tooltip ${JSON.stringify(tip)}`);
		assert.match(tip, /total: 2\.75 s/, `tooltip ${JSON.stringify(tip)}`);
		const legend = await page.locator('[data-testid=timeline] .timeline-legend').textContent();
		assert.match(legend, /2\.55 min/, `timeline legend ${JSON.stringify(legend)}`);
		assert.ok(!/\d{7}/.test(digits(legend)), `a raw integer in the legend: ${legend}`);
		const title = await page.locator('#timeline-title').textContent();
		assert.match(title, /time/i, `timeline title ${JSON.stringify(title)}`);
	});

	await check("Pyroscope's wall type reads as durations, its heap type as bytes", async page => {
		await open(page, {query: `${F.WALL_TYPE}{service="webapp"}`, ...hourAgo}, s => s.flame.total > 0);
		let c = await cells(page), h = await header(page);
		assert.equal(c.sleep?.[col(h, 'flat')], '3.50 s', `sleep: ${c.sleep}`);
		assert.equal(c.work?.[col(h, 'flat')], '1.20 ms', `work: ${c.work}`);
		const s = await open(page, {query: `${F.HEAP_TYPE}{service="webapp"}`, ...hourAgo},
			s => s.flame.total > 0);
		assert.equal(s.unit, 'bytes');
		c = await cells(page);
		h = await header(page);
		assert.equal(c.alloc?.[col(h, 'flat')], '12.0 MiB', `alloc: ${c.alloc}`);
		assert.equal(c.buf?.[col(h, 'flat')], '1.50 KiB', `buf: ${c.buf}`);
		const tip = (await locateFrame(page, mustFrame(s, 'alloc'))).tooltip;
		assert.match(tip, /total: 12\.0 MiB/, `tooltip ${JSON.stringify(tip)}`);
	});

	await check('a 7-day range renders from the roll-ups, with the total ingested', async page => {
		// the server's maintenance (every second here) cuts the week into
		// blocks and rolls it up; wait until a 7-day query reads the daily
		// level and says what raw rows say
		const q = {query: '{service="nightly"}', from: 'now-7d', to: 'now'};
		const deadline = Date.now() + 60000;
		for (;;) {
			const files = await F.metric(base, 'smolder_rollup_files', 'level="1d"');
			const planned = (await F.api(base, '/api/v1/query', {...q, max_nodes: 10})).total;
			const raw = (await F.api(base, '/api/v1/query', {...q, max_nodes: 10, raw: 1})).total;
			if (files >= 6 && planned === weekTotal && raw === weekTotal) break;
			if (Date.now() > deadline)
				assert.fail(`no roll-ups after 60 s: ${files} daily files, totals ${planned} ` +
					`(planned) and ${raw} (raw rows), ${weekTotal} ingested`);
			await new Promise(r => setTimeout(r, 500));
		}
		const before = await F.metric(base, 'smolder_query_rows_read_total', 'level="1d"');
		const s = await open(page, q, s => s.flame.total > 0);
		assert.equal(s.flame.total, weekTotal, '7-day total');
		mustFrame(s, 'nightly.compact');
		const after = await F.metric(base, 'smolder_query_rows_read_total', 'level="1d"');
		assert.ok(after > before, `the page read no daily roll-up (${before} -> ${after} rows)`);
		await page.locator('[data-testid=timeline] canvas').first().waitFor();
		const t = await until(page, s => s.timeline && s.timeline.lines.length > 0, 'the timeline');
		assert.equal(t.timeline.lines.reduce((a, l) => a + l.total, 0), weekTotal, 'timeline total');
	});

	await check('timeline of 200 series: the ten heaviest and "other", labels that differ only',
		async page => {
			const s = await open(page, {query: '{service="fleet"}', from: 'now-1h', to: 'now'},
				s => s.flame.total > 0);
			const t = await until(page, s => s.timeline && s.timeline.lines.length > 0, 'the timeline');
			const lines = t.timeline.lines;
			assert.equal(lines.length, 11, `lines: ${JSON.stringify(lines.map(l => l.label))}`);
			for (let i = 0; i < 10; i++) {
				assert.equal(lines[i].label, `hostname=${F.fleetHost(F.FLEET - 1 - i)}`, `line ${i}`);
				assert.equal(lines[i].total, F.FLEET - i, `line ${i} total`);
			}
			assert.equal(lines[10].other, F.FLEET - 10);
			assert.equal(lines[10].label, `other (${F.FLEET - 10} series)`);
			const rest = (F.FLEET - 10) * (F.FLEET - 9) / 2;
			assert.equal(lines[10].total, rest, 'other holds the rest');
			assert.equal(s.flame.total, F.FLEET * (F.FLEET + 1) / 2);
			const legend = await page.locator('[data-testid=timeline] .timeline-legend').textContent();
			assert.ok(!/service=|version=/.test(legend), `labels every line shares in the legend: ${legend}`);
		});

	await check('nothing leaves the origin; no uncaught errors in any page', async () => {
		assert.deepEqual([...new Set(pageProblems)], []);
	});

	await context.close();
	await server.stop();              // clean exit under the sanitizers
	server = null;
}

let failed = 0;
try {
	await main();
	failed = results.filter(r => !r.ok).length;
} catch (e) {
	console.log(`not ok - ${e.stack || e}`);
	if (server) console.log(`--- server stderr (tail) ---\n${server.stderrTail()}`);
	failed = 1;
} finally {
	await F.cleanup();
}
const secs = ((Date.now() - t0) / 1000).toFixed(1);
if (!shotDir)
	console.log(`ui_test: ${results.length - failed} of ${results.length} checks passed in ${secs} s`);
if (failed) {
	console.log(`ui_test: FAILED: ${results.filter(r => !r.ok).map(r => r.name).join('; ') || 'setup'}`);
	process.exit(1);
}
