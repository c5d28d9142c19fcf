// flame.js - an icicle graph (root on top; or a flame graph, root at the
// bottom, for the sandwich's callers) drawn on one <canvas>. Built for big
// trees: a frame narrower than half a pixel is skipped with its whole
// subtree, labels are drawn only where they fit, and hit testing is a
// binary search in the row under the pointer.
import {frameColor, mix, rgb, fmtPct} from './util.js';
import {fmtValue, fmtAmount} from './units.js';
import {pathTo} from './tree.js';

const ROW = 18;             // CSS px per frame row
const MIN_W = 0.5;          // frames narrower than this are not drawn
const FONT = '11px ui-monospace, "DejaVu Sans Mono", Menlo, monospace';
const NEUTRAL = [214, 214, 214];
const GREW = [224, 52, 44];
const SHRANK = [40, 164, 72];
const DIM = [236, 236, 236];
export const DIFF_FLOOR = 0.01;   // one point of share

export class FlameGraph {
	// opts: {direction: 'down' | 'up', tooltip: element, onZoom(node),
	// onSelect(node), label: aria label}
	constructor(canvas, opts = {}) {
		this.canvas = canvas;
		this.opts = opts;
		this.tree = null;
		this.zoomNode = null;
		this.match = null;
		this.frames = [];        // what the last render drew, for the test hook
		this.rows = [];          // per depth: drawn {n, x, w}, left to right
		this.cursor = null;      // the keyboard's frame
		this.nrows = 0;          // rows the last render drew
		canvas.tabIndex = 0;
		canvas.addEventListener('mousemove', e => this.hover(e));
		canvas.addEventListener('mouseleave', () => this.hideTip());
		canvas.addEventListener('click', e => {
			const hit = this.hit(e);
			if (hit) this.zoomTo(hit.n, true);
		});
		canvas.addEventListener('keydown', e => this.key(e));
		canvas.addEventListener('blur', () => { this.cursor = null; this.hideTip(); this.render(); });
		new ResizeObserver(() => this.render()).observe(canvas.parentElement);
	}

	setTree(tree) {
		this.tree = tree;
		this.zoomNode = tree ? tree.root : null;
		this.cursor = null;
	}

	setSearch(match) { this.match = match; }

	// Zooms to node (null: the root). user: from a click or key, so the
	// page updates its URL.
	zoomTo(node, user = false) {
		if (!this.tree) return;
		this.zoomNode = node || this.tree.root;
		this.render();
		if (this.opts.onZoom) this.opts.onZoom(this.zoomNode, user);
	}

	colorOf(n) {
		let c;
		if (this.tree.mode === 'diff') {
			// normalized change: the largest change in share gets full
			// colour (but never less than DIFF_FLOOR, so two profiles that
			// differ only by noise stay pale); sqrt so small but real
			// changes still show
			const m = Math.max(this.tree.maxAbsDelta, DIFF_FLOOR);
			const t = m > 0 ? Math.sqrt(Math.min(1, Math.abs(n.delta) / m)) : 0;
			// only a significant change gets colour: noise stays grey
			c = !n.significant ? NEUTRAL : n.delta > 0 ? mix(NEUTRAL, GREW, t) :
				n.delta < 0 ? mix(NEUTRAL, SHRANK, t) : NEUTRAL;
		} else {
			c = frameColor(n.name, n.file, n.kernel, n.lang);
		}
		if (this.match && !this.match(n)) c = mix(c, DIM, 0.75);
		return c;
	}

	render() {
		const cv = this.canvas;
		const W = Math.max(100, cv.parentElement.clientWidth);
		const dpr = window.devicePixelRatio || 1;
		this.frames = [];
		this.rows = [];
		if (!this.tree) {
			cv.width = W * dpr; cv.height = 0; cv.style.width = `${W}px`; cv.style.height = '0px';
			return;
		}
		const z = this.zoomNode;
		// as many rows as frames are drawn: a deep path too narrow to draw
		// (a one-off stack) must not make the canvas tall and empty
		const nrows = this.visibleDepth(z, W) + 1;
		this.nrows = nrows;
		const H = nrows * ROW;
		cv.width = Math.round(W * dpr);
		cv.height = Math.round(H * dpr);
		cv.style.width = `${W}px`;
		cv.style.height = `${H}px`;
		const ctx = cv.getContext('2d');
		ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
		ctx.clearRect(0, 0, W, H);
		ctx.font = FONT;
		ctx.textBaseline = 'middle';
		const charW = ctx.measureText('m').width || 7;
		const up = this.opts.direction === 'up';
		const yOf = d => (up ? nrows - 1 - d : d) * ROW;
		const draw = (n, x, w) => {
			const c = this.colorOf(n);
			const y = yOf(n.depth);
			const hl = !!(this.match && this.match(n));
			ctx.fillStyle = rgb(c);
			ctx.fillRect(x, y, w > 2 ? w - 1 : w, ROW - 1);
			if (n === this.cursor) {
				ctx.strokeStyle = '#000';
				ctx.lineWidth = 2;
				ctx.strokeRect(x + 1, y + 1, Math.max(1, w - 3), ROW - 3);
			}
			if (w > 3 * charW + 6) {
				const label = n.kernel ? `${n.name} [k]` : n.name;
				const fit = Math.floor((w - 6) / charW);
				const text = label.length <= fit ? label : `${label.slice(0, Math.max(1, fit - 1))}…`;
				ctx.fillStyle = hl ? '#000' : (this.match ? '#777' : '#111');
				ctx.fillText(text, x + 3, y + ROW / 2);
			}
			(this.rows[n.depth] ||= []).push({n, x, w});
			this.frames.push({name: n.name, depth: n.depth, x, w, self: n.self, total: n.total,
				kernel: n.kernel, lang: n.lang, highlighted: hl, color: rgb(c),
				delta: this.tree.mode === 'diff' ? n.delta : 0,
				significant: this.tree.mode === 'diff' && n.significant});
		};
		// the zoomed node's ancestors span the width, as context
		for (const a of pathTo(z).slice(0, -1)) draw(a, 0, W);
		const scale = W / (z.w || 1);
		const st = [z];
		while (st.length) {
			const n = st.pop();
			const w = n.w * scale;
			if (w < MIN_W) continue;             // and its subtree: narrower still
			draw(n, (n.x - z.x) * scale, w);
			for (let i = n.children.length - 1; i >= 0; i--) st.push(n.children[i]);
		}
		// rows were filled in DFS order, which is left to right within a row
		cv.setAttribute('aria-label', `${this.opts.label || 'flame graph'}: ${z.name}, ` +
			`${fmtAmount(z.total)}; arrow keys move, Enter zooms, Escape zooms out`);
	}

	// The deepest depth with a frame at least MIN_W wide under z (whose
	// ancestors are drawn too), at W pixels for z's width.
	visibleDepth(z, W) {
		const scale = W / (z.w || 1);
		let max = z.depth;
		const st = [z];
		while (st.length) {
			const n = st.pop();
			if (n.w * scale < MIN_W) continue;
			if (n.depth > max) max = n.depth;
			for (const c of n.children) st.push(c);
		}
		return max;
	}

	hit(e) {
		const r = this.canvas.getBoundingClientRect();
		const x = e.clientX - r.left, y = e.clientY - r.top;
		const nrows = this.rows.length;
		let d = Math.floor(y / ROW);
		if (this.opts.direction === 'up' && this.zoomNode)
			d = this.nrows - 1 - d;
		const row = this.rows[d];
		if (!row || d < 0 || d >= Math.max(nrows, 1) + 1) return null;
		let lo = 0, hi = row.length - 1;
		while (lo <= hi) {
			const m = (lo + hi) >> 1, f = row[m];
			if (x < f.x) hi = m - 1;
			else if (x >= f.x + f.w) lo = m + 1;
			else return f;
		}
		return null;
	}

	hover(e) {
		const f = this.hit(e);
		if (!f) return this.hideTip();
		this.showTip(f.n, e.clientX, e.clientY);
		this.canvas.style.cursor = 'pointer';
	}

	showTip(n, cx, cy) {
		const tip = this.opts.tooltip;
		if (!tip) return;
		const rootTotal = this.tree.root.total || 1;
		const lines = [[n.kernel ? `${n.name} [k]` : n.name, 'tt-name']];
		if (this.tree.mode === 'diff') {
			const B = this.tree.baseTotal || 1, C = this.tree.total || 1;
			lines.push([`base: total ${fmtValue(n.base_total)} (${fmtPct(n.base_total / B)}), self ${fmtValue(n.base_self)}`]);
			lines.push([`compare: total ${fmtValue(n.total)} (${fmtPct(n.total / C)}), self ${fmtValue(n.self)}`]);
			lines.push([`change in share: ${n.delta >= 0 ? '+' : ''}${(n.delta * 100).toFixed(2)} points`,
				n.significant && n.delta > 0 ? 'tt-grew' : n.significant && n.delta < 0 ? 'tt-shrank' : '']);
			lines.push([n.significant ? `significant (p ${n.p < 0.001 ? '< 0.001' : `= ${n.p.toFixed(3)}`})` :
				n.p === null ? 'too few samples to tell' : `not significant (p = ${n.p.toFixed(3)})`]);
		} else {
			lines.push([`self: ${fmtValue(n.self)} (${fmtPct(n.self / rootTotal)})`]);
			lines.push([`total: ${fmtValue(n.total)} (${fmtPct(n.total / rootTotal)} of total)`]);
		}
		if (n.truncated || n.base_truncated) {
			const t = this.tree.mode === 'diff' ?
				`incomplete stacks: base ${fmtPct(n.base_truncated / (n.base_total || 1))}, ` +
				`compare ${fmtPct(n.truncated / (n.total || 1))}` :
				`${fmtPct(n.truncated / (n.total || 1))} of its samples have incomplete stacks`;
			lines.push([t, 'tt-file']);
		}
		lines.push([n.file ? `${n.file}${n.line ? `:${n.line}` : ''}` : 'file unknown', 'tt-file']);
		if (n.kernel) lines.push(['kernel frame', 'tt-file']);
		if (n.lang) lines.push([`${n.lang} frame`, 'tt-file']);
		tip.replaceChildren(...lines.map(([t, c]) => {
			const d = document.createElement('div');
			d.textContent = t;
			if (c) d.className = c;
			return d;
		}));
		tip.hidden = false;
		// keep it on screen at 1280x800: flip left/up near the edges
		const tw = tip.offsetWidth, th = tip.offsetHeight;
		const x = cx + 14 + tw > window.innerWidth ? cx - tw - 10 : cx + 14;
		const y = cy + 16 + th > window.innerHeight ? cy - th - 10 : cy + 16;
		tip.style.left = `${Math.max(0, x)}px`;
		tip.style.top = `${Math.max(0, y)}px`;
	}

	hideTip() {
		if (this.opts.tooltip) this.opts.tooltip.hidden = true;
		this.canvas.style.cursor = '';
	}

	// Keyboard: arrows move a cursor frame, Enter zooms to it, Escape
	// zooms out a level; the tooltip follows the cursor.
	key(e) {
		if (!this.tree) return;
		const up = this.opts.direction === 'up';
		let c = this.cursor || this.zoomNode;
		const row = d => this.rows[d] || [];
		const idx = r => r.findIndex(f => f.n === c);
		let moved = true;
		switch (e.key) {
		case 'ArrowDown': case 'ArrowUp': {
			const deeper = (e.key === 'ArrowDown') !== up;
			if (deeper) { const k = c.children.find(k => row(k.depth).some(f => f.n === k)); if (k) c = k; }
			else if (c.parent) c = c.parent;
			break;
		}
		case 'ArrowLeft': case 'ArrowRight': {
			const r = row(c.depth), i = idx(r);
			const j = i + (e.key === 'ArrowRight' ? 1 : -1);
			if (i >= 0 && j >= 0 && j < r.length) c = r[j].n;
			break;
		}
		case 'Enter': this.zoomTo(c, true); moved = false; break;
		case 'Escape':
			if (this.zoomNode.parent) { this.zoomTo(this.zoomNode.parent, true); moved = false; break; }
			return;
		default: return;
		}
		e.preventDefault();
		this.cursor = c;
		this.render();
		const f = row(c.depth).find(f => f.n === c);
		if (f && moved) {
			const r = this.canvas.getBoundingClientRect();
			const y = (up ? this.nrows - 1 - c.depth : c.depth) * ROW;
			this.showTip(c, r.left + f.x + Math.min(f.w, 40), r.top + y + ROW);
		}
		if (this.opts.onSelect) this.opts.onSelect(c);
	}
}
