// nomatch.js - a selector that selects no series (the API's 404 with
// `no_match`, docs/api.md): the server's sentence, and one button per
// close value, label name or type that puts it into the selector, so a
// typo is one click from fixed rather than an empty page.

const quoteRe = s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// The selector text with one matcher's value, label name or the type
// replaced; null when the text does not hold what the server named.
export function fixSelector(text, m, to) {
	if (m.label === '__name__') {
		const brace = text.indexOf('{');
		return brace > 0 ? to + text.slice(brace) : to + (brace === 0 ? text : '{}');
	}
	const lab = quoteRe(m.label), op = quoteRe(m.op);
	if (!m.label_exists) {
		const re = new RegExp(`([{,]\\s*)${lab}(\\s*(?:=~|!~|!=|=))`);
		return re.test(text) ? text.replace(re, `$1${to}$2`) : null;
	}
	const re = new RegExp(`(${lab}\\s*${op}\\s*)("(?:[^"\\\\]|\\\\.)*"|'(?:[^'\\\\]|\\\\.)*'|\`[^\`]*\`)`);
	if (!re.test(text)) return null;
	return text.replace(re, (_, head) => `${head}${JSON.stringify(to)}`);
}

// The fixes to offer: [{label, text}] for the closest names of every
// matcher that matches nothing on its own (all = matchers when none does).
export function fixes(noMatch, text) {
	const ms = noMatch.matchers || [];
	const blamed = ms.filter(m => !m.matches_alone);
	const out = [];
	for (const m of blamed.length ? blamed : ms.filter(m => m.op === '=' && m.label !== '__name__')) {
		for (const c of m.closest || []) {
			const t = fixSelector(text, m, c);
			if (!t || t === text) continue;
			const label = m.label === '__name__' ? c : !m.label_exists ? `${c}${m.op}"${m.value}"` :
				`${m.label}${m.op}"${c}"`;
			out.push({label, text: t, best: c === m.did_you_mean});
		}
	}
	return out;
}

// The status line's content: the sentence, then "did you mean" buttons;
// onPick(text) runs the fixed selector.
export function noMatchNodes(body, text, onPick) {
	const nodes = [body.error || 'no series match this selector'];
	const fx = fixes(body.no_match || {}, text);
	if (fx.length) {
		const div = document.createElement('div');
		div.className = 'fixes';
		div.append('Did you mean ');
		fx.forEach((f, i) => {
			const b = document.createElement('button');
			b.type = 'button';
			b.className = f.best ? 'fix best' : 'fix';
			b.setAttribute('data-testid', 'no-match-fix');
			b.textContent = f.label;
			b.title = `run ${f.text}`;
			b.addEventListener('click', () => onPick(f.text));
			if (i) div.append(' ');
			div.append(b);
		});
		div.append('?');
		nodes.push(div);
	}
	return nodes;
}
