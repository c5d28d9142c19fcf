// util.js - small helpers shared by the UI's modules: times as the API
// writes them, number formatting, and the stable colours frames get.

// Seconds of a duration ("15m", "1h30m", "7d"); NaN when it is not one.
const UNIT_S = {s: 1, m: 60, h: 3600, d: 86400, w: 604800};
export function durationSeconds(s) {
	const parts = String(s).match(/\d+[smhdw]/g);
	if (!parts || parts.join('') !== s) return NaN;
	return parts.reduce((t, p) => t + parseInt(p, 10) * UNIT_S[p.at(-1)], 0);
}

// A time as the API takes it (now, now-1h, -15m, unix s or ms, RFC 3339)
// in unix seconds, relative to nowS; NaN when the UI cannot read it (the
// server is the judge: the UI only needs numbers to draw the timeline).
export function timeSeconds(t, nowS = Date.now() / 1000) {
	t = String(t ?? '').trim();
	if (t === 'now' || t === '') return nowS;
	let m = t.match(/^(?:now)?-(.+)$/);
	if (m) return nowS - durationSeconds(m[1]);
	if (/^\d+(\.\d+)?$/.test(t)) {
		const v = parseFloat(t);
		return v > 1e11 ? v / 1000 : v;   // milliseconds when that large
	}
	const d = Date.parse(t);
	return Number.isNaN(d) ? NaN : d / 1000;
}

export function fmtCount(n) {
	return Math.round(n).toLocaleString('en-US');
}

export function fmtPct(x, digits = 2) {
	return `${(x * 100).toFixed(digits)}%`;
}

// A local date-time for tooltips and custom-range fields.
export function fmtTime(s) {
	const d = new Date(s * 1000);
	const p = n => String(n).padStart(2, '0');
	return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
		`${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// FNV-1a: a stable hash so a package keeps its colour across reloads and
// between the flame graph, the sandwich view and the timeline.
export function hash32(s) {
	let h = 0x811c9dc5;
	for (let i = 0; i < s.length; i++) {
		h ^= s.charCodeAt(i);
		h = Math.imul(h, 0x01000193);
	}
	return h >>> 0;
}

export function hslToRgb(h, s, l) {
	s /= 100; l /= 100;
	const k = n => (n + h / 30) % 12;
	const a = s * Math.min(l, 1 - l);
	const f = n => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
	return [f(0), f(8), f(4)].map(v => Math.round(v * 255));
}

export const rgb = c => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

export function mix(a, b, t) {
	return a.map((v, i) => Math.round(v + (b[i] - v) * t));
}

// What a frame belongs to, for colour: the UI only gets names and files,
// so the binary or package is guessed from them. The file's directory
// when there is one; else "[unknown] libc.so.6+0x1d20" gives its object;
// Go "encoding/json.Marshal" and "checkout.(*Handler).Serve" their
// package; C++/Rust "std::vector<...>::push_back" their first namespace;
// a plain C name its first "_"-separated word (do_syscall_64 -> "do"),
// which groups a library's prefixed functions (uv_run, uv__io_poll).
export function packageOf(name, file) {
	if (file) {
		const i = file.lastIndexOf('/');
		if (i > 0) return file.slice(0, i);
	}
	let m = name.match(/^\[unknown\] ([^+]+)/);
	if (m) return m[1];
	m = name.match(/^((?:[\w.-]+\/)*[\w-]+)\.[\w(*]/);
	if (m && !name.includes('::')) return m[1];
	m = name.match(/^([\w]+)::/) || name.match(/^<([\w]+)/);
	if (m) return m[1];
	m = name.match(/^([A-Za-z0-9]+)_/);
	return m ? m[1] : name;
}

// The flame graph's palette. Frames a runtime named (the JSON's "lang":
// Python's, and by the same rule JIT code's) get a hue band of their
// language, so interpreted code stands apart from the native code around
// it; kernel frames a blue band; native user code, by package, the hues
// that are left. ui/CONTRACT.md lists the bands.
export const LANG_HUES = {python: [45, 68], js: [95, 118], java: [14, 34], dotnet: [270, 290]};
const OTHER_LANG = [300, 325];          // a language not listed above
const RESERVED = [[14, 34], [45, 68], [95, 118], [180, 240], [270, 290], [300, 325]];
const NATIVE = [];                      // [from, to) hues for native code
for (let h = 0, i = 0; h < 360; i++) {
	const [a, b] = i < RESERVED.length ? RESERVED[i] : [360, 360];
	if (a > h) NATIVE.push([h, a]);
	h = b;
}
const NATIVE_LEN = NATIVE.reduce((t, [a, b]) => t + b - a, 0);

export function frameColor(name, file, kernel, lang) {
	const h = hash32(packageOf(name, file));
	if (kernel) return hslToRgb(200 + (h % 30), 55, 62 + (h >> 8) % 10);
	if (name === 'other' || name === 'total') return [200, 200, 200];
	if (lang) {
		const [a, b] = LANG_HUES[lang] || OTHER_LANG;
		return hslToRgb(a + h % (b - a), 75, 60 + (h >> 12) % 8);
	}
	let x = h % NATIVE_LEN;
	for (const [a, b] of NATIVE) {
		if (x < b - a) return hslToRgb(a + x, 60, 68 + (h >> 12) % 8);
		x -= b - a;
	}
	return hslToRgb(0, 60, 70);
}

export function el(tag, attrs = {}, ...kids) {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs)) {
		if (v == null || v === false) continue;
		if (k === 'class') e.className = v;
		else if (k === 'text') e.textContent = v;
		else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
		else e.setAttribute(k, v === true ? '' : v);
	}
	for (const k of kids) if (k != null) e.append(k);
	return e;
}
