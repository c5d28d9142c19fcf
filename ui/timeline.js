// timeline.js - samples over time, one line per series or group (uPlot,
// vendored: ui/vendor/uplot). Dragging across it selects a range; the page
// then shows the profile of that range.
import uPlot from './vendor/uplot/uPlot.esm.js';
import {hash32, hslToRgb, rgb, fmtTime} from './util.js';
import {fmtValue, fmtAmount} from './units.js';

const HEIGHT = 150;

function seriesLabel(labels) {
	const kv = Object.entries(labels || {}).filter(([k]) => k !== '__name__');
	return kv.length ? kv.map(([k, v]) => `${k}=${v}`).join(', ') : 'all';
}

export class Timeline {
	// onSelect(fromS, toS): a range dragged out, in unix seconds
	constructor(container, onSelect) {
		this.el = container;
		this.onSelect = onSelect;
		this.plot = null;
		new ResizeObserver(() => {
			if (this.plot) this.plot.setSize({width: this.width(), height: HEIGHT});
		}).observe(container);
	}

	width() { return Math.max(300, this.el.clientWidth - 2); }

	clear(message) {
		if (this.plot) { this.plot.destroy(); this.plot = null; }
		this.el.replaceChildren();
		if (message) {
			const p = document.createElement('p');
			p.className = 'timeline-empty';
			p.textContent = message;
			this.el.append(p);
		}
	}

	// json: /api/v1/range's answer; fromS/toS: the range asked for;
	// spanGaps: join points across steps without samples (two answers
	// merged: their steps need not line up)
	render(json, fromS, toS, spanGaps = false) {
		this.clear();
		const series = json.series || [];
		if (!series.length) return this.clear('no samples in this range');
		// uPlot wants one x array and aligned y arrays: the union of steps
		const xs = [...new Set(series.flatMap(s => s.values.map(v => v[0])))].sort((a, b) => a - b);
		const at = new Map(xs.map((x, i) => [x, i]));
		const ys = series.map(s => {
			const y = new Array(xs.length).fill(null);
			for (const [t, v] of s.values) y[at.get(t)] = v;
			return y;
		});
		const opts = {
			width: this.width(), height: HEIGHT,
			scales: {x: {time: true, range: () => [fromS, toS]}},
			// uPlot's own legend is a table that grows with long label sets;
			// a compact one of chips is drawn below instead
			legend: {show: false},
			cursor: {drag: {x: true, y: false, setScale: false}},
			// durations and sizes are wider than counts: "12.3 min"
			axes: [{}, {size: 64, values: (u, v) => v.map(fmtValue)}],
			series: [{value: (u, v) => (v == null ? '' : fmtTime(v))},
				...series.map(s => {
					const label = seriesLabel(s.labels);
					return {label, stroke: rgb(hslToRgb(hash32(label) % 360, 65, 45)), width: 1.5,
						spanGaps, points: {show: xs.length < 80, size: 5}, value: (u, v) => (v == null ? '-' : fmtValue(v))};
				})],
			hooks: {setSelect: [u => {
				if (u.select.width < 3) return;
				const a = u.posToVal(u.select.left, 'x');
				const b = u.posToVal(u.select.left + u.select.width, 'x');
				u.setSelect({left: 0, width: 0, top: 0, height: 0}, false);
				this.onSelect(Math.floor(a), Math.ceil(b));
			}]},
		};
		this.plot = new uPlot(opts, [xs, ...ys], this.el);
		const legend = document.createElement('div');
		legend.className = 'timeline-legend';
		opts.series.slice(1, 41).forEach((s, i) => {
			const item = document.createElement('span');
			const chip = document.createElement('i');
			chip.style.background = s.stroke;
			const total = ys[i].reduce((a, v) => a + (v || 0), 0);
			item.append(chip, `${s.label} `);
			const n = document.createElement('b');
			n.textContent = fmtValue(total);
			item.append(n);
			item.title = `${s.label}: ${fmtAmount(total)} in the range`;
			legend.append(item);
		});
		if (opts.series.length > 41) legend.append(`… and ${opts.series.length - 41} more`);
		this.el.append(legend);
	}
}
