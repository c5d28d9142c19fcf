// units.js - what the values of the profile shown are, and how they read:
// sample counts as counts, nanoseconds as durations (ms, s, min), bytes as
// bytes. The unit is the third field of the profile type
// (name:sample_type:sample_unit:period_type:period_unit[:delta]), and the
// type is the selector's prefix. The page sets the type once per query;
// the flame graph, the top table and the timeline format through here.
import {fmtCount} from './util.js';

// a selector without a type prefix means this (query/parse.h)
export const DEFAULT_TYPE = 'process_cpu:samples:count:cpu:nanoseconds:delta';

// The profile type a selector names: the text before its '{', or the
// default when there is none.
export function typeOf(selector) {
	const s = String(selector ?? '').trim();
	const i = s.indexOf('{');
	const t = (i < 0 ? s : s.slice(0, i)).trim();
	return t || DEFAULT_TYPE;
}

// The selector with its type replaced (the matchers kept).
export function withType(selector, type) {
	const s = String(selector ?? '').trim();
	const i = s.indexOf('{');
	return `${type}${i < 0 ? '{}' : s.slice(i)}`;
}

// {name, sample, unit} of a type; unit '' when the type has no such field.
export function parseType(type) {
	const f = String(type).split(':');
	return {name: f[0] || '', sample: f[1] || '', unit: f[2] || ''};
}

// "1.23", "12.3", "123": three significant digits, no exponent
function sig3(v) {
	return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

// A duration in nanoseconds: "850 ns", "12.3 µs", "4.56 ms", "1.23 s",
// "2.50 min", "1.20 h", "3.00 d".
export function fmtDuration(ns) {
	const a = Math.abs(ns), sign = ns < 0 ? '-' : '';
	if (a === 0) return '0 s';
	const steps = [[86400e9, 'd'], [3600e9, 'h'], [60e9, 'min'], [1e9, 's'], [1e6, 'ms'], [1e3, 'µs']];
	for (const [k, u] of steps)
		if (a >= k) return `${sign}${sig3(a / k)} ${u}`;
	return `${sign}${Math.round(a)} ns`;
}

// A size in bytes: "512 B", "1.50 KiB", "12.3 MiB", "1.20 GiB".
export function fmtBytes(b) {
	const a = Math.abs(b), sign = b < 0 ? '-' : '';
	const steps = [[2 ** 50, 'PiB'], [2 ** 40, 'TiB'], [2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']];
	for (const [k, u] of steps)
		if (a >= k) return `${sign}${sig3(a / k)} ${u}`;
	return `${sign}${Math.round(a)} B`;
}

let current = parseType(DEFAULT_TYPE);

// The type of the profile shown from now on.
export function setType(type) {
	current = parseType(type);
}

export function currentUnit() {
	return current.unit;
}

// A value of the current type: a duration, a size or a count.
export function fmtValue(v) {
	if (current.unit === 'nanoseconds') return fmtDuration(v);
	if (current.unit === 'bytes') return fmtBytes(v);
	return fmtCount(v);
}

// What the values are, for headings: "Samples", "Time", "Bytes", or the
// sample type ("Alloc_objects").
export function valueNoun() {
	if (current.unit === 'nanoseconds') return 'Time';
	if (current.unit === 'bytes') return 'Bytes';
	const s = current.sample || 'samples';
	return s[0].toUpperCase() + s.slice(1);
}

// The timeline's heading: "Samples over time", "Time spent, per step",
// "Bytes, per step".
export function timelineTitle() {
	if (current.unit === 'nanoseconds') return 'Time spent, per step';
	if (current.unit === 'bytes') return 'Bytes, per step';
	return `${valueNoun()} over time`;
}

// A value with what it counts when it is a count: "1,234 samples",
// "4.56 s", "12.3 MiB".
export function fmtAmount(v) {
	if (current.unit === 'nanoseconds' || current.unit === 'bytes') return fmtValue(v);
	return `${fmtCount(v)} ${valueNoun().toLowerCase()}`;
}
