// toptable.js - the top functions table: flat and cumulative samples and
// shares, or in diff mode both sides' shares and the change. Sorting is
// client side (every column, both ways); a row's click or Enter hands its
// function to the page, which opens its sandwich. The function column is
// as wide as the user drags it (kept for the tab); a cut name is whole in
// its title and in the selected row.
import {fmtValue} from './units.js';

const NAME_MIN = 120;            // px: the function column at its narrowest
const OTHER_COL = 62;            // px a number column needs
const WIDTH_KEY = 'smolder.topNameWidth';

const pct = v => `${v.toFixed(2)}%`;
const signed = v => `${v > 0 ? '+' : ''}${v.toFixed(2)}`;

const MERGE_COLS = [
	{key: 'name', label: 'function', fmt: v => v},
	{key: 'flat', label: 'flat', fmt: v => fmtValue(v)},
	{key: 'flat_pct', label: 'flat %', fmt: pct},
	{key: 'cum', label: 'cum', fmt: v => fmtValue(v)},
	{key: 'cum_pct', label: 'cum %', fmt: pct},
];
// both sides in a narrow column: one decimal, short headers with titles
const pct1 = v => `${v.toFixed(1)}%`;
const signed1 = v => `${v > 0 ? '+' : ''}${v.toFixed(1)}`;
const DIFF_COLS = [
	{key: 'name', label: 'function', fmt: v => v},
	{key: 'base_flat_pct', label: 'flat b', title: 'flat % in base', fmt: pct1},
	{key: 'flat_pct', label: 'flat c', title: 'flat % in compare', fmt: pct1},
	{key: 'delta_flat', label: 'Δflat', title: 'change of flat %, in points', fmt: signed1, delta: true},
	{key: 'base_cum_pct', label: 'cum b', title: 'cum % in base', fmt: pct1},
	{key: 'cum_pct', label: 'cum c', title: 'cum % in compare', fmt: pct1},
	{key: 'delta_cum', label: 'Δcum', title: 'change of cum %, in points', fmt: signed1, delta: true},
];

// One row per function from both sides' /api/v1/top answers.
export function mergeTop(base, compare) {
	const m = new Map();
	const get = r => {
		if (!m.has(r.name)) m.set(r.name, {name: r.name, kernel: !!r.kernel, base_flat_pct: 0, base_cum_pct: 0,
			flat_pct: 0, cum_pct: 0, flat: 0, cum: 0, base_flat: 0, base_cum: 0});
		return m.get(r.name);
	};
	for (const r of base.rows) Object.assign(get(r), {base_flat_pct: r.flat_pct, base_cum_pct: r.cum_pct,
		base_flat: r.flat, base_cum: r.cum});
	for (const r of compare.rows) Object.assign(get(r), {flat_pct: r.flat_pct, cum_pct: r.cum_pct,
		flat: r.flat, cum: r.cum});
	for (const r of m.values()) {
		r.delta_flat = r.flat_pct - r.base_flat_pct;
		r.delta_cum = r.cum_pct - r.base_cum_pct;
	}
	return [...m.values()];
}

export class TopTable {
	constructor(table, onPick) {
		this.table = table;
		this.onPick = onPick;
		this.rows = [];
		this.mode = 'merge';
		this.sort = {key: 'flat', desc: true};
		this.selected = '';
		this.nameWidth = 0;      // px; 0: the stylesheet's share
		try { this.nameWidth = Number(sessionStorage.getItem(WIDTH_KEY)) || 0; } catch { /* off */ }
	}

	// The function column at w px (0: back to the stylesheet's share); the
	// table grows past its box (which scrolls) rather than squeeze numbers.
	setNameWidth(w) {
		const th = this.table.tHead?.rows[0]?.cells[0];
		if (!th) return;
		const ncols = this.table.tHead.rows[0].cells.length;
		this.nameWidth = w ? Math.max(NAME_MIN, Math.round(w)) : 0;
		th.style.width = this.nameWidth ? `${this.nameWidth}px` : '';
		this.table.style.minWidth = this.nameWidth ? `${this.nameWidth + (ncols - 1) * OTHER_COL}px` : '';
		try { sessionStorage.setItem(WIDTH_KEY, String(this.nameWidth)); } catch { /* off */ }
	}

	// A handle on the function column's right edge: drag it, or focus it
	// and press the arrow keys; a double click fits the longest name shown.
	resizer(th) {
		const h = document.createElement('span');
		h.className = 'col-resize';
		h.setAttribute('data-testid', 'top-name-resize');
		h.setAttribute('role', 'separator');
		h.setAttribute('aria-orientation', 'vertical');
		h.setAttribute('aria-label', 'function column width: drag, or arrow keys');
		h.tabIndex = 0;
		h.addEventListener('pointerdown', e => {
			e.preventDefault();
			e.stopPropagation();
			h.setPointerCapture(e.pointerId);
			const x0 = e.clientX, w0 = th.getBoundingClientRect().width;
			const move = ev => this.setNameWidth(w0 + ev.clientX - x0);
			const up = () => {
				h.removeEventListener('pointermove', move);
				h.removeEventListener('pointerup', up);
			};
			h.addEventListener('pointermove', move);
			h.addEventListener('pointerup', up);
		});
		h.addEventListener('click', e => e.stopPropagation());
		h.addEventListener('dblclick', e => {
			e.stopPropagation();
			let widest = 0;
			for (const td of this.table.querySelectorAll('td.fn')) widest = Math.max(widest, td.scrollWidth);
			this.setNameWidth(widest + 12);
		});
		h.addEventListener('keydown', e => {
			if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
			e.preventDefault();
			const w = th.getBoundingClientRect().width;
			this.setNameWidth(w + (e.key === 'ArrowRight' ? 40 : -40));
		});
		return h;
	}

	set(rows, mode) {
		if (mode !== this.mode)
			this.sort = mode === 'diff' ? {key: 'delta_flat', desc: true, abs: true} : {key: 'flat', desc: true};
		this.mode = mode;
		this.rows = rows;
		this.render();
	}

	select(name) {
		this.selected = name || '';
		for (const tr of this.table.tBodies[0]?.rows || [])
			tr.classList.toggle('selected', tr.dataset.name === this.selected);
	}

	sortBy(key) {
		if (this.sort.key === key) this.sort = {key, desc: !this.sort.desc};
		else this.sort = {key, desc: key !== 'name'};
		this.render();
	}

	render() {
		const cols = this.mode === 'diff' ? DIFF_COLS : MERGE_COLS;
		const {key, desc, abs} = this.sort;
		const val = r => (abs ? Math.abs(r[key]) : r[key]);
		const rows = [...this.rows].sort((a, b) => {
			const c = key === 'name' ? a.name.localeCompare(b.name) : val(a) - val(b);
			return desc ? -c : c;
		});
		const thead = document.createElement('thead');
		const htr = thead.insertRow();
		for (const c of cols) {
			const th = document.createElement('th');
			th.scope = 'col';
			if (c.key !== 'name') th.className = 'num';
			th.setAttribute('aria-sort', c.key === key ? (desc ? 'descending' : 'ascending') : 'none');
			const b = document.createElement('button');
			b.type = 'button';
			b.dataset.sort = c.key;
			b.textContent = c.label + (c.key === key ? (desc ? ' ▼' : ' ▲') : '');
			b.title = `sort by ${c.title || c.label}`;
			b.addEventListener('click', () => this.sortBy(c.key));
			th.append(b);
			if (c.key === 'name') th.append(this.resizer(th));
			htr.append(th);
		}
		const tbody = document.createElement('tbody');
		for (const r of rows.slice(0, 500)) {
			const tr = tbody.insertRow();
			tr.dataset.testid = 'top-row';
			tr.setAttribute('data-testid', 'top-row');
			tr.dataset.name = r.name;
			// one tab stop for the whole table (arrows move between rows), so
			// Tab reaches the flame graph without crossing 500 rows
			tr.tabIndex = -1;
			if (r.name === this.selected) tr.classList.add('selected');
			for (const c of cols) {
				const td = tr.insertCell();
				td.textContent = c.fmt(r[c.key]);
				if (c.key === 'name') {
					// the whole name on hover, however narrow the column
					td.title = r.file ? `${r.name}\n${r.file}${r.line ? `:${r.line}` : ''}` : r.name;
					if (r.lang) td.title += `\n${r.lang}`;
					td.className = 'fn';
					// kernel functions carry the mark the flame graph gives them
					if (r.kernel) td.textContent += ' [k]';
				}
				else td.className = 'num';
				if (c.delta) td.classList.add(r[c.key] > 0 ? 'grew' : r[c.key] < 0 ? 'shrank' : 'same');
			}
			tr.addEventListener('click', () => this.onPick(r.name));
			tr.addEventListener('keydown', e => {
				if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); this.onPick(r.name); }
				else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
					e.preventDefault();
					const to = e.key === 'ArrowDown' ? tr.nextElementSibling : tr.previousElementSibling;
					if (!to) return;
					tr.tabIndex = -1;
					to.tabIndex = 0;
					to.focus();
				}
			});
		}
		const stop = [...tbody.rows].find(tr => tr.dataset.name === this.selected) || tbody.rows[0];
		if (stop) stop.tabIndex = 0;
		this.table.classList.toggle('diff', this.mode === 'diff');
		this.table.replaceChildren(thead, tbody);
		if (this.nameWidth) this.setNameWidth(this.nameWidth);
	}
}
