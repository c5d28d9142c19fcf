// changes.js - "what changed" above a diff's flame graph: the functions
// whose share changed significantly (GET /api/v1/diff?format=top), largest
// first, as `smolder diff` prints them ("+9.8 pp render (p < 0.001)"), then
// "no other significant change": the rows the server marks listed (a
// function whose own share held but whose share with its callees moved,
// unexplained by the changes beneath it, with that change). Warnings about
// the comparison itself come first. A click focuses the function.

const pText = p => (p === null || p === undefined || p < 0.001) ? 'p < 0.001' : `p = ${p.toFixed(3)}`;

// The lines of the list from the top JSON: [{name, kernel, delta, p, callees}].
export function changeLines(top, limit = 20) {
	const out = [];
	for (const r of top.rows) {
		if (out.length >= limit) break;
		if (!r.listed) continue;
		const own = r.significant;
		out.push({name: r.name, kernel: !!r.kernel, delta: own ? r.delta : r.cum_delta,
			p: own ? r.p : r.cum_p, callees: !own});
	}
	return out;
}

export function renderChanges(el, top, onPick, limit = 20) {
	el.replaceChildren();
	if (!top) { el.hidden = true; return; }
	el.hidden = false;
	const head = document.createElement('h2');
	head.textContent = 'What changed';
	head.title = 'functions whose share of samples changed significantly from base to compare ' +
		`(${top.significance.method} test, false discovery rate ${top.significance.alpha * 100} %)`;
	el.append(head);
	for (const w of top.warnings || []) {
		const p = document.createElement('p');
		p.className = 'warning';
		p.dataset.testid = 'diff-warning';
		p.textContent = `warning: ${w}`;
		el.append(p);
	}
	const ul = document.createElement('ul');
	for (const c of changeLines(top, limit)) {
		const li = document.createElement('li');
		li.dataset.testid = 'change';
		li.dataset.name = c.name;
		li.dataset.delta = String(c.delta);
		li.className = c.delta > 0 ? 'grew' : 'shrank';
		li.tabIndex = 0;
		li.textContent = `${c.delta > 0 ? '+' : ''}${c.delta.toFixed(1)} pp ${c.name}` +
			`${c.kernel ? ' [k]' : ''}${c.callees ? ' with callees' : ''} (${pText(c.p)})`;
		li.addEventListener('click', () => onPick(c.name));
		li.addEventListener('keydown', e => { if (e.key === 'Enter') onPick(c.name); });
		ul.append(li);
	}
	el.append(ul);
	const end = document.createElement('p');
	end.dataset.testid = 'changes-end';
	const shown = ul.children.length, more = top.listed_rows - shown;
	end.textContent = top.significance.method === 'none' ? 'no change can be tested: a side has no samples' :
		more > 0 ? `${more} more significant changes` :
		shown ? 'no other significant change' : 'no significant change';
	el.append(end);
}
