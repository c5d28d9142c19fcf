// pprof.mjs - a small encoder of pprof's profile.proto (wire/profile.proto)
// for the browser tests: named frames with file and line, so the data the
// UI shows is known exactly. Not gzip'd (the server takes plain protobuf).
//
//   encodeProfile({stacks: [{frames: ['main', 'a', 'b'], value: 5}, ...],
//                  timeNanos: 1767225600000000000n, durationNanos: 10000000000n,
//                  binary: '/usr/bin/app', files: {a: ['a.go', 12]}})
//
// frames are root first (as folded stacks write them); pprof wants them
// leaf first, which this file does. Sample type samples/count, period type
// cpu/nanoseconds by default: the server stores them as
// process_cpu:samples:count:cpu:nanoseconds:delta; sampleType, periodType
// ([type, unit]) and period make other types.

class Writer {
	constructor() { this.bytes = []; }
	varint(v) {
		let n = BigInt.asUintN(64, BigInt(v));
		while (n >= 0x80n) {
			this.bytes.push(Number(n & 0x7fn) | 0x80);
			n >>= 7n;
		}
		this.bytes.push(Number(n));
	}
	tag(field, wire) { this.varint((field << 3) | wire); }
	int(field, v) {                     // varint field, skipped when 0 (proto3)
		if (BigInt(v) === 0n) return;
		this.tag(field, 0);
		this.varint(v);
	}
	bytesField(field, buf) {
		this.tag(field, 2);
		this.varint(buf.length);
		for (const b of buf) this.bytes.push(b);
	}
	message(field, fn) {
		const w = new Writer();
		fn(w);
		this.bytesField(field, w.bytes);
	}
	packed(field, values) {
		const w = new Writer();
		for (const v of values) w.varint(v);
		this.bytesField(field, w.bytes);
	}
	string(field, s) { this.bytesField(field, [...new TextEncoder().encode(s)]); }
}

export function encodeProfile({stacks, timeNanos, durationNanos, binary = '/usr/bin/app',
                               files = {}, sampleType = ['samples', 'count'],
                               periodType = ['cpu', 'nanoseconds'], period = 52631578}) {
	const strings = [''];
	const strIndex = new Map([['', 0]]);
	const str = s => {
		if (!strIndex.has(s)) {
			strIndex.set(s, strings.length);
			strings.push(s);
		}
		return strIndex.get(s);
	};
	const functions = new Map();        // name -> {id, name, file, line}
	const fn = name => {
		if (!functions.has(name)) {
			const [file, line] = files[name] || ['', 0];
			functions.set(name, {id: functions.size + 1, name: str(name),
			                     file: file ? str(file) : 0, line});
		}
		return functions.get(name);
	};
	// one location per (function, caller position) is enough: one per function
	const locations = new Map();        // name -> {id, fid, line, address}
	const loc = name => {
		if (!locations.has(name)) {
			const f = fn(name);
			const id = locations.size + 1;
			locations.set(name, {id, fid: f.id, line: f.line ? f.line + 3 : 0,
			                     address: 0x401000 + 0x40 * id});
		}
		return locations.get(name).id;
	};
	for (const s of [...sampleType, ...periodType, binary]) str(s);
	const samples = stacks.map(s => ({ids: [...s.frames].reverse().map(loc), value: s.value}));
	const w = new Writer();
	w.message(1, v => { v.int(1, str(sampleType[0])); v.int(2, str(sampleType[1])); });
	for (const s of samples)
		w.message(2, v => { v.packed(1, s.ids); v.packed(2, [s.value]); });
	w.message(3, v => {
		v.int(1, 1); v.int(2, 0x400000); v.int(3, 0x800000);
		v.int(5, str(binary)); v.int(7, 1); v.int(8, 1); v.int(9, 1);
	});
	for (const l of locations.values())
		w.message(4, v => {
			v.int(1, l.id); v.int(2, 1); v.int(3, l.address);
			v.message(4, x => { x.int(1, l.fid); x.int(2, l.line); });
		});
	for (const f of functions.values())
		w.message(5, v => {
			v.int(1, f.id); v.int(2, f.name); v.int(3, f.name);
			v.int(4, f.file); v.int(5, f.line);
		});
	for (const s of strings) w.string(6, s);
	w.int(9, timeNanos);
	w.int(10, durationNanos);
	w.message(11, v => { v.int(1, str(periodType[0])); v.int(2, str(periodType[1])); });
	w.int(12, period);
	return Buffer.from(w.bytes);
}
