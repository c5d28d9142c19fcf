// querybar.js - the selector field's autocompletion: profile types before
// the braces, label names inside them, label values after an operator,
// all from the discovery API (cached per range so typing is not a fetch
// per key). Keyboard: Up/Down move, Enter or Tab accept, Escape closes;
// Enter with nothing chosen runs the query.
import {getJSON} from './api.js';

// Where the cursor is in the selector, from the text before it.
export function context(before) {
	const brace = before.lastIndexOf('{');
	if (brace < 0) {
		const m = before.match(/[\w:]*$/);
		return {kind: 'type', prefix: m[0], start: before.length - m[0].length};
	}
	const inside = before.slice(brace + 1);
	// strip complete matchers: name op "value" (any quote kind) and commas
	const rest = inside.replace(/\s*\w+\s*(=~|!~|!=|=)\s*("(\\.|[^"\\])*"|'(\\.|[^'\\])*'|`[^`]*`)\s*,?/g, '');
	let m = rest.match(/^\s*(\w+)\s*(=~|!~|!=|=)\s*(["'`]?)([^"'`]*)$/);
	if (m) return {kind: 'value', label: m[1], quote: m[3] || '"', hasQuote: !!m[3],
		prefix: m[4], start: before.length - m[4].length};
	m = rest.match(/^\s*(\w*)$/);
	if (m) return {kind: 'label', prefix: m[1], start: before.length - m[1].length};
	return null;
}

export class QueryBar {
	// input: the field; list: the <ul>; getRange(): {from, to}; onRun()
	constructor(input, list, getRange, onRun) {
		this.input = input;
		this.list = list;
		this.getRange = getRange;
		this.onRun = onRun;
		this.items = [];
		this.active = -1;
		this.cache = new Map();
		this.ctx = null;
		this.seq = 0;
		input.setAttribute('role', 'combobox');
		input.setAttribute('aria-autocomplete', 'list');
		input.setAttribute('aria-controls', list.id);
		input.setAttribute('aria-expanded', 'false');
		list.setAttribute('role', 'listbox');
		input.addEventListener('input', () => this.update());
		input.addEventListener('focus', () => this.update());
		input.addEventListener('click', () => this.update());
		input.addEventListener('keydown', e => this.key(e));
		input.addEventListener('blur', () => setTimeout(() => this.close(), 150));
		// mousedown, not click: it comes before the field's blur closes the list
		list.addEventListener('mousedown', e => {
			const li = e.target.closest('li');
			if (!li) return;
			e.preventDefault();
			this.accept(Number(li.dataset.index));
		});
	}

	async fetchList(path) {
		const {from, to} = this.getRange();
		const key = `${path}|${from}|${to}`;
		if (!this.cache.has(key))
			this.cache.set(key, getJSON(path, {from, to}).catch(() => {
				this.cache.delete(key);   // retry next time, e.g. after the server is back
				return [];
			}));
		return this.cache.get(key);
	}

	async update() {
		const pos = this.input.selectionStart ?? this.input.value.length;
		const ctx = context(this.input.value.slice(0, pos));
		const seq = ++this.seq;
		if (!ctx) return this.close();
		let all;
		if (ctx.kind === 'type') all = await this.fetchList('/api/v1/types');
		else if (ctx.kind === 'label') all = await this.fetchList('/api/v1/labels');
		else all = await this.fetchList(`/api/v1/labels/${encodeURIComponent(ctx.label)}/values`);
		if (seq !== this.seq || document.activeElement !== this.input) return;
		const p = ctx.prefix.toLowerCase();
		// prefix matches first, then the rest that contain the text
		const starts = all.filter(v => v.toLowerCase().startsWith(p));
		const has = all.filter(v => !v.toLowerCase().startsWith(p) && v.toLowerCase().includes(p));
		const items = [...starts, ...has].slice(0, 50);
		if (!items.length || (items.length === 1 && items[0] === ctx.prefix)) return this.close();
		this.ctx = ctx;
		this.show(items);
	}

	show(items) {
		this.items = items;
		this.active = -1;
		this.list.replaceChildren(...items.map((v, i) => {
			const li = document.createElement('li');
			li.textContent = v;
			li.dataset.value = v;
			li.dataset.index = i;
			li.id = `${this.list.id}-${i}`;
			li.setAttribute('role', 'option');
			return li;
		}));
		this.list.hidden = false;
		this.input.setAttribute('aria-expanded', 'true');
	}

	close() {
		this.items = [];
		this.active = -1;
		this.list.hidden = true;
		this.list.replaceChildren();
		this.input.setAttribute('aria-expanded', 'false');
		this.input.removeAttribute('aria-activedescendant');
	}

	setActive(i) {
		this.active = i;
		[...this.list.children].forEach((li, k) => li.setAttribute('aria-selected', String(k === i)));
		const li = this.list.children[i];
		if (li) {
			li.scrollIntoView({block: 'nearest'});
			this.input.setAttribute('aria-activedescendant', li.id);
		}
	}

	// Puts item i in place of what was typed, with what makes the selector
	// whole again: a type gets "{}" to fill, a label name `="`, a value its
	// closing quote and, when missing, the closing brace.
	accept(i) {
		const v = this.items[i];
		const ctx = this.ctx;
		if (v === undefined || !ctx) return;
		const s = this.input.value;
		const pos = this.input.selectionStart ?? s.length;
		let after = s.slice(pos);
		let insert, caret;
		if (ctx.kind === 'type') {
			after = after.replace(/^[\w:]*/, '');
			insert = after.startsWith('{') ? v : `${v}{}`;
			caret = ctx.start + v.length + (after.startsWith('{') ? 0 : 1);
		} else if (ctx.kind === 'label') {
			after = after.replace(/^\w*/, '');
			insert = /^\s*(=|!=|=~|!~)/.test(after) ? v : `${v}="`;
			caret = ctx.start + insert.length;
		} else {
			const q = ctx.quote;
			const esc = q === '`' ? v : v.replace(/\\/g, '\\\\').replace(new RegExp(q, 'g'), `\\${q}`);
			after = after.replace(/^[^"'`,}]*/, '');
			if (after.startsWith(q)) after = after.slice(1);
			insert = `${esc}${q}`;
			caret = ctx.start + insert.length;
			if (!/^\s*(,|\})/.test(after) && !s.slice(0, ctx.start).includes('}'))
				after = `}${after}`;
		}
		this.input.value = s.slice(0, ctx.start) + insert + after;
		this.input.setSelectionRange(caret, caret);
		this.close();
		this.input.dispatchEvent(new Event('change'));
		if (ctx.kind !== 'value') this.update();   // go on: names want values
	}

	key(e) {
		const open = !this.list.hidden && this.items.length;
		if (e.key === 'ArrowDown' && open) {
			e.preventDefault();
			this.setActive((this.active + 1) % this.items.length);
		} else if (e.key === 'ArrowUp' && open) {
			e.preventDefault();
			this.setActive((this.active - 1 + this.items.length) % this.items.length);
		} else if ((e.key === 'Enter' || e.key === 'Tab') && open && this.active >= 0) {
			e.preventDefault();
			this.accept(this.active);
		} else if (e.key === 'Escape' && open) {
			e.preventDefault();
			this.close();
		} else if (e.key === 'Enter') {
			e.preventDefault();
			this.close();
			this.onRun();
		}
	}
}
