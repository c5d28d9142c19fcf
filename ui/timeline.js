// timeline.js - samples over time, one line per series or group (uPlot,
// vendored: ui/vendor/uplot), the ten heaviest and one "other" when there
// are more. Dragging across it selects a range; the page then shows the
// profile of that range.
import uPlot from './vendor/uplot/uPlot.esm.js';
import {hash32, hslToRgb, rgb, fmtTime} from './util.js';
import {fmtValue, fmtAmount} from './units.js';

const HEIGHT = 150;
export const LINES = 10;    // the heaviest lines drawn; the server sums the rest as "other"

// Legend text for each line: only the labels whose values differ between
// the lines (a fleet's 200 series differ in their hostname, not in their
// type or service), every label when there is one line; the server's
// "other" line says how many lines it holds.
function lineLabels(series) {
	const real = series.filter(s => !s.other);
	const keys = new Set(real.flatMap(s => Object.keys(s.labels || {})));
	keys.delete('__name__');
	const differ = [...keys].filter(k => real.some(s => (s.labels || {})[k] !== (real[0].labels || {})[k]));
	const shown = real.length > 1 ? differ : [...keys];
	return series.map(s => {
		if (s.other) return `other (${s.other} series)`;
		const kv = shown.filter(k => (s.labels || {})[k] !== undefined).map(k => `${k}=${s.labels[k]}`);
		return kv.length ? kv.join(', ') : 'all';
	});
}

export class Timeline {
	// onSelect(fromS, toS): a range dragged out, in unix seconds
	constructor(container, onSelect) {
		this.el = container;
		this.onSelect = onSelect;
		this.plot = null;
		this.lines = [];     // what the legend shows: [{label, total, other}]
		new ResizeObserver(() => {
			if (this.plot) this.plot.setSize({width: this.width(), height: HEIGHT});
		}).observe(container);
	}

	width() { return Math.max(300, this.el.clientWidth - 2); }

	clear(message) {
		if (this.plot) { this.plot.destroy(); this.plot = null; }
		this.lines = [];
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
		const labels = lineLabels(series);
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
				...series.map((s, i) => {
					const label = labels[i];
					const stroke = s.other ? 'rgb(150, 150, 150)' :
						rgb(hslToRgb(hash32(JSON.stringify(s.labels || {})) % 360, 65, 45));
					return {label, stroke, width: s.other ? 1 : 1.5, dash: s.other ? [4, 3] : undefined,
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
			this.lines.push({label: s.label, total, other: series[i].other || 0});
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
