// tree.js - the call tree the API sends, made ready to draw: each node
// gets its parent, depth, and its place as fractions of the root's width
// (x, w), so zooming and redrawing never walk the JSON again. Also the
// client-side views built from it: search share and the sandwich.

// From /api/v1/query JSON (mode "merge") or /api/v1/diff JSON ("diff").
// In a diff a node's width is the mean of its shares of the two sides, so
// a frame only one side has stays visible; total/self are the compare
// side's, base_total/base_self the base's, delta the change in share, and
// significant whether the server found that change significant.
// truncated (base_truncated) counts the node's samples whose stacks were
// cut short: their callers are missing (the API leaves out zero).
export function buildTree(json, mode) {
	const diff = mode === 'diff';
	const B = diff ? json.base.total || 1 : 0;
	const C = diff ? json.compare.total || 1 : 0;
	const R = diff ? 1 : json.total || 1;
	let count = 0, maxAbsDelta = 0;
	const make = (j, parent, depth) => {
		count++;
		const n = {name: j.name, kernel: !!j.kernel, file: j.file || '', line: j.line || 0,
			lang: j.lang || '',
			parent, depth, children: [], x: 0, w: 0, height: 0};
		if (diff) {
			n.base_total = j.base.total; n.base_self = j.base.self;
			n.total = j.compare.total; n.self = j.compare.self;
			n.base_truncated = j.base.truncated || 0; n.truncated = j.compare.truncated || 0;
			n.delta = j.compare.total / C - j.base.total / B;
			n.w = (j.base.total / B + j.compare.total / C) / 2;
			// the server's test (docs/query-language.md): only these get colour
			n.significant = !!j.significant;
			n.p = j.p ?? null;
			if (n.significant && Math.abs(n.delta) > maxAbsDelta) maxAbsDelta = Math.abs(n.delta);
		} else {
			n.total = j.total; n.self = j.self; n.w = j.total / R;
			n.truncated = j.truncated || 0;
		}
		return n;
	};
	// iterative: a deep stack (recursion, JIT frames) must not overflow JS's
	const root = make(json, null, 0);
	const todo = [[json, root]];
	while (todo.length) {
		const [j, n] = todo.pop();
		let x = n.x;
		for (const cj of j.children || []) {
			const c = make(cj, n, n.depth + 1);
			c.x = x;
			x += c.w;
			n.children.push(c);
			todo.push([cj, c]);
		}
	}
	// heights bottom-up, for the canvas's size when zoomed
	const order = [];
	const st = [root];
	while (st.length) { const n = st.pop(); order.push(n); for (const c of n.children) st.push(c); }
	for (let i = order.length - 1; i >= 0; i--) {
		const n = order[i];
		if (n.parent && n.parent.height < n.height + 1) n.parent.height = n.height + 1;
	}
	return {root, mode, count, maxAbsDelta, baseTotal: diff ? json.base.total : 0,
		total: diff ? json.compare.total : json.total,
		baseTruncated: diff ? json.base.truncated || 0 : 0,
		truncated: (diff ? json.compare.truncated : json.truncated) || 0};
}

// How complete the stacks of a tree are, and what to tell the user: the
// share of samples whose stacks were cut short (one per side in a diff),
// a note when it passes NOTE_PCT, a warning when a diff's sides differ by
// more than WARN_POINTS (frames near the root then grow or shrink for
// that reason alone).
export const NOTE_PCT = 1;
export const WARN_POINTS = 3;   // the server's Q_TRUNCATED_WARN_POINTS
export function completeness(t) {
	if (!t) return null;
	const pct = (n, d) => d ? 100 * n / d : 0;
	const f = x => `${x.toFixed(1)} %`;
	const out = {pct: pct(t.truncated, t.total), text: '', warn: false};
	if (t.mode !== 'diff') {
		if (out.pct > NOTE_PCT)
			out.text = `${f(out.pct)} of these samples have incomplete stacks: their walk ` +
				'stopped before the outermost frame, so frames near the root are undercounted.';
		return out;
	}
	out.base_pct = pct(t.baseTruncated, t.baseTotal);
	out.compare_pct = out.pct;
	if (Math.abs(out.compare_pct - out.base_pct) > WARN_POINTS) {
		out.warn = true;
		out.text = `Base and compare differ in completeness: ${f(out.base_pct)} and ` +
			`${f(out.compare_pct)} of their samples have incomplete stacks. Frames near the ` +
			'root grow or shrink by up to that much for this reason alone.';
	} else if (out.base_pct > NOTE_PCT || out.compare_pct > NOTE_PCT) {
		out.text = `${f(out.base_pct)} (base) and ${f(out.compare_pct)} (compare) of these ` +
			'samples have incomplete stacks.';
	}
	return out;
}

// The shallowest, then heaviest, node of that name (children come sorted
// by total), or null.
export function findFirst(root, name) {
	let level = [root];
	while (level.length) {
		for (const n of level) if (n.name === name) return n;
		level = level.flatMap(n => n.children);
	}
	return null;
}

export function pathTo(n) {
	const p = [];
	for (; n; n = n.parent) p.push(n);
	return p.reverse();
}

// A search predicate: case-insensitive substring, or null for no search.
export function matcher(text) {
	if (!text) return null;
	const t = text.toLowerCase();
	return n => n.name.toLowerCase().includes(t);
}

// Samples with a matching frame anywhere on the stack, over the root's:
// the outermost match of each stack counts, so recursion counts once.
export function searchShare(root, match) {
	let hit = 0;
	const st = [root];
	while (st.length) {
		const n = st.pop();
		if (match(n)) { hit += n.total; continue; }
		for (const c of n.children) st.push(c);
	}
	return root.total ? hit / root.total : 0;
}

// The sandwich of the function `name`: callers (an inverted tree rooted
// at the function, each level one caller further up) and callees (the
// subtrees under it merged). Only outermost occurrences count, so a
// recursive function's samples are not counted twice.
export function sandwich(root, name) {
	const outer = [];
	const st = [root];
	while (st.length) {
		const n = st.pop();
		if (n.name === name) { outer.push(n); continue; }
		for (const c of n.children) st.push(c);
	}
	if (!outer.length) return null;
	const mk = (src) => ({name: src.name, kernel: src.kernel, file: src.file, line: src.line,
		lang: src.lang,
		total: 0, self: 0, children: [], byName: new Map()});
	const child = (p, src) => {
		let c = p.byName.get(src.name);
		if (!c) { c = mk(src); p.byName.set(src.name, c); p.children.push(c); }
		return c;
	};
	const callers = mk(outer[0]);
	const callees = mk(outer[0]);
	for (const o of outer) {
		callers.total += o.total; callers.self += o.self;
		let c = callers;
		for (let p = o.parent; p && p.parent; p = p.parent) {   // up to, not incl., the root
			c = child(c, p);
			c.total += o.total;
		}
		if (c !== callers) c.self += o.total;   // the outermost caller is where stacks start
		callees.total += o.total; callees.self += o.self;
		const todo = [[o, callees]];
		while (todo.length) {
			const [s, d] = todo.pop();
			for (const sc of s.children) {
				const dc = child(d, sc);
				dc.total += sc.total; dc.self += sc.self;
				todo.push([sc, dc]);
			}
		}
	}
	const finish = (r) => {
		const toJSON = n => ({name: n.name, kernel: n.kernel, file: n.file, line: n.line, lang: n.lang,
			total: n.total, self: n.self,
			children: n.children.sort((a, b) => b.total - a.total).map(toJSON)});
		return buildTree(toJSON(r), 'merge');
	};
	return {callers: finish(callers), callees: finish(callees), total: callers.total};
}
