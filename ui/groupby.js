// groupby.js - the timeline's label picker: the label names the selected
// series carry (discovery API), each a checkbox that adds it to or takes
// it from the group-by list. `pid` is there only where agents run with
// --pid-label, never ticked by default and set apart: one line per
// process is what tells two processes of one executable apart, and too
// many lines for anything else.
import {getJSON} from './api.js';

export const PID = 'pid';

export class GroupByPicker {
	// input: the group-by text field; button: opens the list; panel: the
	// list's container; getScope(): {query, from, to}; onChange(value)
	constructor(input, button, panel, getScope, onChange) {
		Object.assign(this, {input, button, panel, getScope, onChange});
		button.setAttribute('aria-expanded', 'false');
		button.setAttribute('aria-controls', panel.id);
		button.addEventListener('click', () => (panel.hidden ? this.open() : this.close()));
		panel.addEventListener('keydown', e => {
			if (e.key === 'Escape') { this.close(); button.focus(); }
		});
		document.addEventListener('mousedown', e => {
			if (!panel.hidden && !panel.contains(e.target) && e.target !== button) this.close();
		});
	}

	chosen() {
		return this.input.value.split(',').map(s => s.trim()).filter(Boolean);
	}

	close() {
		this.panel.hidden = true;
		this.button.setAttribute('aria-expanded', 'false');
	}

	async open() {
		const {query, from, to} = this.getScope();
		this.panel.replaceChildren('loading labels…');
		this.panel.hidden = false;
		this.button.setAttribute('aria-expanded', 'true');
		let names = [];
		try {
			names = await getJSON('/api/v1/labels', {query, from, to});
		} catch (e) {
			this.panel.replaceChildren(`labels: ${e.message}`);
			return;
		}
		const chosen = this.chosen();
		const item = (name, note) => {
			const l = document.createElement('label');
			l.className = 'pick';
			const c = document.createElement('input');
			c.type = 'checkbox';
			c.dataset.label = name;
			c.setAttribute('data-testid', 'group-by-label');
			c.checked = chosen.includes(name);
			c.addEventListener('change', () => this.toggle(name, c.checked));
			l.append(c, ` ${name}`);
			if (note) {
				const n = document.createElement('span');
				n.className = 'hint';
				n.textContent = ` ${note}`;
				l.append(n);
			}
			return l;
		};
		const list = names.filter(n => n !== PID).map(n => item(n));
		if (!list.length && !names.includes(PID)) list.push('no labels on these series');
		this.panel.replaceChildren(...list);
		if (names.includes(PID)) {
			const sep = document.createElement('div');
			sep.className = 'pick-sep';
			sep.textContent = 'per process (opt-in)';
			this.panel.append(sep, item(PID, '— a line per process: tells apart processes of one ' +
				'executable (agents with --pid-label)'));
		}
	}

	toggle(name, on) {
		let v = this.chosen().filter(n => n !== name);
		if (on) v.push(name);
		this.input.value = v.join(',');
		this.onChange(this.input.value);
	}
}
