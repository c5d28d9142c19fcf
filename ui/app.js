// app.js - the page: state (what the URL says), the fetches one view
// needs, and wiring the parts (query bar, timeline, flame graph, top
// table, sandwich, diff). Every change the user makes goes to the URL with
// history.replaceState, so a reload or a shared link shows the same view;
// after each render window.__smolder says what is shown (ui/CONTRACT.md).
import {getJSON, apiURL, ApiError, authFetch, authHeaders} from './api.js';
import {QueryBar} from './querybar.js';
import {Timeline, LINES} from './timeline.js';
import {FlameGraph, DIFF_FLOOR} from './flame.js';
import {TopTable, mergeTop} from './toptable.js';
import {renderChanges} from './changes.js';
import {buildTree, findFirst, pathTo, matcher, searchShare, sandwich, completeness} from './tree.js';
import {timeSeconds, fmtTime} from './util.js';
import {typeOf, withType, parseType, setType, currentUnit, fmtAmount, timelineTitle} from './units.js';
import {noMatchNodes} from './nomatch.js';
import {GroupByPicker} from './groupby.js';

// the heaviest frames the server sends (query/query.h Q_MAX_NODES_UI): a
// few thousand is what a flame graph a screen wide has room to draw; the
// rest is folded into "other" per parent, so a huge tree costs neither
// side much
const MAX_NODES = 4000;
const TOP_LIMIT = 500;
const CHANGES_LIMIT = 20;     // lines of "what changed" above a diff's flame graph
const PRESETS = ['15m', '1h', '24h', '7d'];
const KEYS = ['query', 'from', 'to', 'compare', 'compare_from', 'compare_to', 'search', 'focus', 'sandwich',
	'group_by'];

const $ = id => document.getElementById(id);
const ui = {
	form: $('query-form'), query: $('query-input'), range: $('range-select'),
	custom: $('custom-range'), from: $('from-input'), to: $('to-input'),
	diff: $('diff-toggle'), diffBar: $('diff-bar'), compare: $('compare-input'),
	compareFrom: $('compare-from-input'), compareTo: $('compare-to-input'), legend: $('legend'),
	status: $('status'), completeness: $('completeness'), groupBy: $('group-by'), search: $('search-input'), share: $('search-share'),
	crumbs: $('breadcrumb'), pprof: $('download-pprof'), folded: $('download-folded'),
	sandwich: $('sandwich'), sandwichTitle: $('sandwich-title'), tooltip: $('tooltip'),
	type: $('type-select'), timelineTitle: $('timeline-title'),
};

// ---- state and the URL ----

const state = {query: '{}', from: 'now-1h', to: 'now', compare: '', compare_from: '',
	compare_to: '', search: '', focus: '', sandwich: '', group_by: ''};
let diffOn = false;

function readURL() {
	const p = new URLSearchParams(location.search);
	for (const k of KEYS) if (p.has(k)) state[k] = p.get(k);
	if (!state.query.trim()) state.query = '{}';
	// a zoomed frame's sandwich shows unless the link says which one
	if (!p.has('sandwich')) state.sandwich = state.focus;
	diffOn = !!(state.compare || state.compare_from || state.compare_to);
}

function writeURL() {
	const p = new URLSearchParams();
	for (const k of KEYS) if (state[k]) p.set(k, state[k]);
	history.replaceState(null, '', `${location.pathname}?${p}`);
}

function presetOf(from, to) {
	const m = String(from).match(/^now-(\w+)$/);
	return to === 'now' && m && PRESETS.includes(m[1]) ? m[1] : 'custom';
}

// The inputs show the state.
function showState() {
	ui.query.value = state.query;
	const preset = presetOf(state.from, state.to);
	ui.range.value = preset;
	ui.custom.hidden = preset !== 'custom';
	ui.from.value = state.from;
	ui.to.value = state.to;
	ui.diff.setAttribute('aria-pressed', String(diffOn));
	ui.diffBar.hidden = !diffOn;
	ui.compare.value = state.compare;
	ui.compareFrom.value = state.compare_from;
	ui.compareTo.value = state.compare_to;
	ui.groupBy.value = state.group_by;
	ui.search.value = state.search;
}

// The state takes what the inputs say.
function takeInputs() {
	state.query = ui.query.value.trim() || '{}';
	if (ui.range.value === 'custom') {
		state.from = ui.from.value.trim() || 'now-1h';
		state.to = ui.to.value.trim() || 'now';
	} else {
		state.from = `now-${ui.range.value}`;
		state.to = 'now';
	}
	if (diffOn) {
		state.compare = ui.compare.value.trim();
		state.compare_from = ui.compareFrom.value.trim();
		state.compare_to = ui.compareTo.value.trim();
		// diff mode needs something to differ: the same selector by default
		if (!state.compare && !state.compare_from && !state.compare_to) state.compare = state.query;
	} else {
		state.compare = state.compare_from = state.compare_to = '';
	}
	state.group_by = ui.groupBy.value.trim();
}

// ---- status line ----

function setStatus(kind, text, detail) {
	ui.status.className = kind || '';
	ui.status.replaceChildren();
	if (!text) return;
	ui.status.append(text);
	if (detail) {
		const pre = document.createElement('pre');
		pre.textContent = detail;
		ui.status.append(pre);
	}
}

// An API error as a message that says what to do next; for a selector
// that does not parse, the selector with a caret under the place.
function showError(e) {
	if (!(e instanceof ApiError)) return setStatus('error', `Something failed in the page: ${e.message}`);
	const b = e.body || {};
	const param = b.parameter;
	if (param && Number.isInteger(b.position)) {
		const value = {query: state.query, base: state.query, compare: state.compare || state.query,
			from: state.from, to: state.to, compare_from: state.compare_from,
			compare_to: state.compare_to, by: state.group_by}[param] ?? '';
		return setStatus('error', `${e.message} — fix the ${param === 'by' ? 'group-by labels' : param} and press Enter.`,
			`${value}\n${' '.repeat(b.position)}^`);
	}
	if (e.status === 404 && b.no_match) return showNoMatch(b);
	if (e.status === 413) return setStatus('error', `${e.message}`);
	if (e.status === 0) return setStatus('error', e.message);
	setStatus('error', `The server refused the query: ${e.message}`);
}

// A selector that selects no series: the server's sentence and a button
// per close name that fixes the selector and runs it.
function showNoMatch(b) {
	// in diff mode the compare side's /top names its selector "query" too
	const sel = b.no_match.selector;
	const side = b.parameter === 'compare' || (diffOn && state.compare && sel === state.compare &&
		sel !== state.query) ? 'compare' : 'query';
	const text = side === 'compare' ? state.compare || state.query : state.query;
	setStatus('empty', '');
	ui.status.append(...noMatchNodes(b, text, fixed => {
		if (side === 'compare') ui.compare.value = fixed;
		else ui.query.value = fixed;
		run();
	}));
}

// ---- the parts ----

const flame = new FlameGraph($('flamegraph'), {
	tooltip: ui.tooltip, label: 'flame graph',
	onZoom: (node, user) => {
		state.focus = node && node.parent ? node.name : '';
		showCrumbs();
		if (user) {
			state.sandwich = state.focus;
			writeURL();
			top.select(state.focus);
			showSandwich(state.sandwich);
		}
		publish();
	},
});
const callers = new FlameGraph($('sandwich-callers'), {direction: 'up', tooltip: ui.tooltip, label: 'callers'});
const callees = new FlameGraph($('sandwich-callees'), {tooltip: ui.tooltip, label: 'callees'});
const top = new TopTable($('top-table'), name => openSandwich(name));
const timeline = new Timeline($('timeline'), (a, b) => {
	state.from = String(a);
	state.to = String(b);
	showState();
	run();
});
new QueryBar(ui.query, $('suggestions'), () => ({from: state.from, to: state.to}), () => run());
new GroupByPicker(ui.groupBy, $('group-by-pick'), $('group-picker'),
	() => ({query: state.query, from: state.from, to: state.to}), value => {
		state.group_by = value;
		writeURL();
		publish();
		loadTimeline(ctl ? ctl.signal : undefined);
	});

let tree = null;            // the profile shown (buildTree)
let ready = false;
let ctl = null;             // aborts the previous run's fetches

function showCrumbs() {
	ui.crumbs.replaceChildren();
	if (!tree) return;
	const path = pathTo(flame.zoomNode || tree.root);
	path.forEach((n, i) => {
		if (i) {
			const s = document.createElement('span');
			s.className = 'sep';
			s.textContent = '›';
			s.setAttribute('aria-hidden', 'true');
			ui.crumbs.append(s);
		}
		const b = document.createElement('button');
		b.type = 'button';
		b.setAttribute('data-testid', 'crumb');
		b.textContent = n.name;
		b.title = i ? `zoom to ${n.name}` : 'zoom out to the whole profile';
		if (i === path.length - 1) b.setAttribute('aria-current', 'true');
		b.addEventListener('click', () => flame.zoomTo(n, true));
		ui.crumbs.append(b);
	});
}

function showShare() {
	const m = matcher(state.search);
	flame.setSearch(m);
	callers.setSearch(m);
	callees.setSearch(m);
	if (!m || !tree) { ui.share.textContent = ''; return; }
	const share = searchShare(tree.root, m);
	ui.share.textContent = `${(share * 100).toFixed(1)}% of samples match`;
}

let shownSandwich = null;     // {name, total} of the sandwich shown

function showSandwich(name) {
	const s = name && tree ? sandwich(tree.root, name) : null;
	ui.sandwich.hidden = !s;
	shownSandwich = s ? {name, total: s.total} : null;
	if (!s) { callers.setTree(null); callees.setTree(null); return; }
	ui.sandwichTitle.textContent = `Callers and callees of ${name} (${fmtAmount(s.total)})`;
	ui.sandwichTitle.title = name;
	callers.setTree(s.callers);
	callees.setTree(s.callees);
	callers.render();
	callees.render();
}

// The top table's pick: that function's sandwich, every call of it
// merged (all its callers above, all its callees below), not the first
// place it happens to occur; the flame graph keeps its zoom.
function openSandwich(name) {
	top.select(name);
	if (!tree) return false;
	state.sandwich = name;
	showSandwich(name);
	writeURL();
	publish();
	if (ui.sandwich.hidden) {
		setStatus('empty', `${name} is not in the profile's tree: it is among the small frames folded into "other"; narrow the selector or the range to see it.`);
		return false;
	}
	ui.sandwich.scrollIntoView({block: 'start'});
	return true;
}

// Zooms the flame graph to the first frame of name (the test hook);
// false when the profile has no such frame.
function focusFunction(name) {
	if (!tree) return false;
	const n = findFirst(tree.root, name);
	top.select(name);
	if (!n) {
		setStatus('empty', `${name} is not in the flame graph: it is among the small frames folded into "other"; narrow the selector or the range to see it.`);
		return false;
	}
	flame.zoomTo(n, true);
	$('flamegraph').scrollIntoView({block: 'nearest'});
	return true;
}

function showLegend() {
	ui.legend.replaceChildren();
	if (!diffOn || !tree || tree.mode !== 'diff') return;
	const m = (Math.max(tree.maxAbsDelta, DIFF_FLOOR) * 100).toFixed(2);
	const ramp = document.createElement('span');
	ramp.className = 'ramp';
	ramp.setAttribute('aria-hidden', 'true');
	ui.legend.append(`shrank −${m} pts`, ramp, `grew +${m} pts`, ' · grey: no significant change');
	ui.legend.title = 'a frame is red where its share of samples grew significantly from base to ' +
		'compare, green where it shrank significantly (false discovery rate 5 %), grey otherwise; ' +
		'full colour is the largest change';
}

// The share of samples with incomplete stacks, above the flame graph
// when it matters (tree.js: completeness).
function showCompleteness() {
	const c = completeness(tree);
	ui.completeness.hidden = !(c && c.text);
	ui.completeness.textContent = c ? c.text : '';
	ui.completeness.className = c && c.warn ? 'warn' : '';
}

function downloads() {
	const base = {from: state.from, to: state.to};
	if (diffOn) {
		ui.folded.href = apiURL('/api/v1/diff', {...base, base: state.query, compare: state.compare || state.query,
			compare_from: state.compare_from, compare_to: state.compare_to, format: 'folded'});
		ui.folded.textContent = 'folded (diff)';
		ui.folded.setAttribute('download', 'smolder-diff.folded');
		// pprof has no diff: the compare side's profile
		ui.pprof.href = apiURL('/api/v1/query', {query: state.compare || state.query,
			from: state.compare_from || state.from, to: state.compare_to || state.to, format: 'pprof'});
		ui.pprof.textContent = 'pprof (compare)';
	} else {
		ui.folded.href = apiURL('/api/v1/query', {...base, query: state.query, format: 'folded'});
		ui.folded.textContent = 'folded';
		ui.folded.setAttribute('download', 'smolder.folded');
		ui.pprof.href = apiURL('/api/v1/query', {...base, query: state.query, format: 'pprof'});
		ui.pprof.textContent = 'pprof';
	}
	ui.pprof.setAttribute('download', 'smolder.pb.gz');
}

// The test hook (ui/CONTRACT.md): set after every render.
function publish() {
	const z = flame.zoomNode;
	window.__smolder = {
		ready,
		unit: currentUnit(),            // the sample unit of the type shown
		state: {query: state.query, from: state.from, to: state.to, compare: state.compare,
			compare_from: state.compare_from, compare_to: state.compare_to,
			search: state.search, focus: state.focus, sandwich: state.sandwich,
			group_by: state.group_by},
		flame: {total: z ? z.total : 0, frames: flame.frames},
		completeness: completeness(tree),
		timeline: {lines: timeline.lines},
		sandwich: shownSandwich && !ui.sandwich.hidden ? {...shownSandwich,
			callers: {frames: callers.frames, rows: callers.nrows},
			callees: {frames: callees.frames, rows: callees.nrows}} : null,
		zoom: name => focusFunction(name),
		reset: () => { flame.zoomTo(null, true); return true; },
	};
}

// ---- the profile type ----

// The picker lists the types with data in the range (and the selector's
// own, even without data); the values everywhere read in its unit.
let typesKey = '';
async function loadTypes(signal) {
	const cur = typeOf(state.query);
	const key = `${state.from}|${state.to}`;
	let types = null;
	if (key !== typesKey || ![...ui.type.options].some(o => o.value === cur)) {
		try {
			types = await getJSON('/api/v1/types', {from: state.from, to: state.to}, signal);
			typesKey = key;
		} catch (e) {
			if (e.name === 'AbortError') return;
			types = [];
		}
	}
	if (types) {
		if (!types.includes(cur)) types.push(cur);
		ui.type.replaceChildren(...types.sort().map(t => {
			const o = document.createElement('option');
			const p = parseType(t);
			o.value = t;
			o.textContent = p.sample ? `${p.name} · ${p.sample}${p.unit && p.unit !== 'count' ? ` (${p.unit})` : ''}` : t;
			o.title = t;
			return o;
		}));
	}
	ui.type.value = cur;
}

ui.type.addEventListener('change', () => {
	ui.query.value = withType(ui.query.value.trim() || '{}', ui.type.value);
	if (diffOn && ui.compare.value.trim())
		ui.compare.value = withType(ui.compare.value, ui.type.value);
	run();
});

// ---- running a query ----

// The timeline: the base selector over the range; in diff mode the
// compare side too, its lines' labels marked "compare".
async function loadTimeline(signal) {
	const fromS = timeSeconds(state.from), toS = timeSeconds(state.to);
	const q = (query, from, to) => getJSON('/api/v1/range', {query, from, to, by: state.group_by,
		limit: LINES}, signal);
	try {
		const r = await q(state.query, state.from, state.to);
		const sameSide = (state.compare || state.query) === state.query &&
			(state.compare_from || state.from) === state.from && (state.compare_to || state.to) === state.to;
		if (diffOn && !sameSide) {
			const c = await q(state.compare || state.query, state.compare_from || state.from,
				state.compare_to || state.to);
			for (const s of r.series) s.labels = {side: 'base', ...s.labels};
			for (const s of c.series) r.series.push({...s, labels: {side: 'compare', ...s.labels}});
		}
		const cf = diffOn && state.compare_from ? timeSeconds(state.compare_from) : fromS;
		const ct = diffOn && state.compare_to ? timeSeconds(state.compare_to) : toS;
		timeline.render(r, Math.min(fromS, cf), Math.max(toS, ct), diffOn && !sameSide);
		publish();
	} catch (e) {
		if (e.name === 'AbortError') return;
		timeline.clear(`timeline: ${e.message}`);
		publish();
	}
}

async function run() {
	takeInputs();
	showState();
	writeURL();
	downloads();
	if (ctl) ctl.abort();
	ctl = new AbortController();
	const signal = ctl.signal;
	ready = false;
	publish();
	setStatus('loading', 'Loading…');
	setType(typeOf(state.query));
	ui.timelineTitle.textContent = timelineTitle();
	loadTypes(signal);
	loadTimeline(signal);
	try {
		let json, rows, mode, changes = null;
		if (diffOn) {
			mode = 'diff';
			const cmp = state.compare || state.query;
			const cf = state.compare_from || state.from, ct = state.compare_to || state.to;
			const [d, tb, tc, dt] = await Promise.all([
				getJSON('/api/v1/diff', {base: state.query, compare: cmp, from: state.from, to: state.to,
					compare_from: state.compare_from, compare_to: state.compare_to, max_nodes: MAX_NODES}, signal),
				getJSON('/api/v1/top', {query: state.query, from: state.from, to: state.to, limit: TOP_LIMIT}, signal),
				getJSON('/api/v1/top', {query: cmp, from: cf, to: ct, limit: TOP_LIMIT}, signal),
				getJSON('/api/v1/diff', {base: state.query, compare: cmp, from: state.from, to: state.to,
					compare_from: state.compare_from, compare_to: state.compare_to, format: 'top',
					limit: CHANGES_LIMIT + 1}, signal)]);
			json = d;
			rows = mergeTop(tb, tc);
			changes = dt;
		} else {
			mode = 'merge';
			const [q, t] = await Promise.all([
				getJSON('/api/v1/query', {query: state.query, from: state.from, to: state.to,
					max_nodes: MAX_NODES}, signal),
				getJSON('/api/v1/top', {query: state.query, from: state.from, to: state.to, limit: TOP_LIMIT}, signal)]);
			json = q;
			rows = t.rows;
		}
		const empty = mode === 'diff' ? !json.base.total && !json.compare.total : !json.total;
		if (empty) {
			tree = null;
			setStatus('empty', `No samples for this selector in this range (${describeRange()}): ` +
				'widen the range or check the labels.');
		} else {
			tree = buildTree(json, mode);
			if (mode === 'diff' && (!json.base.total || !json.compare.total))
				setStatus('empty', `The ${json.base.total ? 'compare' : 'base'} side has no samples: ` +
					'every frame shows as changed. Check its selector and range.');
			else setStatus('', '');
		}
		flame.setTree(tree);
		renderChanges($('changes'), tree ? changes : null, name => focusFunction(name), CHANGES_LIMIT);
		top.set(tree ? rows : [], mode);
		showShare();
		const f = state.focus && tree ? findFirst(tree.root, state.focus) : null;
		flame.zoomNode = f || (tree ? tree.root : null);
		if (!f) state.focus = '';
		flame.render();
		showCrumbs();
		if (!tree || !findFirst(tree.root, state.sandwich)) state.sandwich = '';
		top.select(state.sandwich || state.focus);
		showSandwich(state.sandwich);
		showLegend();
		showCompleteness();
		writeURL();
	} catch (e) {
		if (e.name === 'AbortError') return;
		tree = null;
		flame.setTree(null);
		flame.render();
		renderChanges($('changes'), null);
		top.set([], diffOn ? 'diff' : 'merge');
		showCrumbs();
		showSandwich('');
		showLegend();
		showCompleteness();
		showError(e);
	}
	ready = true;
	publish();
}

function describeRange() {
	const a = timeSeconds(state.from), b = timeSeconds(state.to);
	return Number.isNaN(a) || Number.isNaN(b) ? `${state.from} to ${state.to}` : `${fmtTime(a)} to ${fmtTime(b)}`;
}

// ---- events ----

// Links cannot carry the Authorization header: with a token, a download is
// fetched and handed over as a blob URL. Without one the plain link works.
for (const a of [ui.folded, ui.pprof]) {
	a.addEventListener('click', async e => {
		if (!authHeaders().Authorization || a.dataset.blob) return;
		e.preventDefault();
		const r = await authFetch(a.href);
		if (!r.ok) { showError(new ApiError(`download failed: ${r.status}`, r.status)); return; }
		const tmp = document.createElement('a');
		tmp.href = URL.createObjectURL(await r.blob());
		tmp.download = a.getAttribute('download') || '';
		tmp.dataset.blob = '1';
		document.body.appendChild(tmp);
		tmp.click();
		tmp.remove();
		setTimeout(() => URL.revokeObjectURL(tmp.href), 60000);
	});
}
ui.form.addEventListener('submit', e => { e.preventDefault(); run(); });
ui.range.addEventListener('change', () => {
	const custom = ui.range.value === 'custom';
	ui.custom.hidden = !custom;
	if (custom) {
		// start from the range shown, as absolute times the user can edit
		const a = timeSeconds(state.from), b = timeSeconds(state.to);
		ui.from.value = new Date(a * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
		ui.to.value = new Date(b * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
		ui.from.focus();
	} else run();
});
for (const i of [ui.from, ui.to, ui.compare, ui.compareFrom, ui.compareTo])
	i.addEventListener('keydown', e => { if (e.key === 'Enter') { e.preventDefault(); run(); } });
ui.diff.addEventListener('click', () => {
	diffOn = !diffOn;
	if (diffOn && !ui.compare.value) ui.compare.value = ui.query.value;
	ui.diffBar.hidden = !diffOn;
	ui.diff.setAttribute('aria-pressed', String(diffOn));
	run();
	if (diffOn) ui.compare.focus();
});
ui.groupBy.addEventListener('keydown', e => {
	if (e.key !== 'Enter') return;
	e.preventDefault();
	state.group_by = ui.groupBy.value.trim();
	writeURL();
	loadTimeline(ctl ? ctl.signal : undefined);
});
ui.groupBy.addEventListener('change', () => {
	if (state.group_by === ui.groupBy.value.trim()) return;
	state.group_by = ui.groupBy.value.trim();
	writeURL();
	loadTimeline();
});
let searchTimer = 0;
ui.search.addEventListener('input', () => {
	clearTimeout(searchTimer);
	// a short pause: a 20 000-frame redraw per key would lag the typing
	searchTimer = setTimeout(applySearch, 120);
});
ui.search.addEventListener('keydown', e => {
	if (e.key === 'Escape') { ui.search.value = ''; applySearch(); }
	if (e.key === 'Enter') { e.preventDefault(); clearTimeout(searchTimer); applySearch(); }
});
function applySearch() {
	state.search = ui.search.value;
	showShare();
	flame.render();
	if (!ui.sandwich.hidden) { callers.render(); callees.render(); }
	writeURL();
	publish();
}
function closeSandwich() {
	ui.sandwich.hidden = true;
	state.sandwich = '';
	writeURL();
	publish();
}
$('sandwich-close').addEventListener('click', closeSandwich);
ui.sandwich.addEventListener('keydown', e => {
	if (e.key === 'Escape') { closeSandwich(); $('flamegraph').focus(); }
});
// the flame graph redraws itself on resize; the hook must follow
new ResizeObserver(() => requestAnimationFrame(publish)).observe($('flame-section'));

readURL();
showState();
run();
