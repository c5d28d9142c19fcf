// api.js - the query API as the UI uses it (docs/api.md): relative URLs
// only, so no request leaves the origin, and errors turned into messages
// that say what to do next.

export class ApiError extends Error {
	constructor(message, status, body) {
		super(message);
		this.status = status;
		this.body = body || {};
	}
}

// "/api/v1/query?query=...&from=..." from params, skipping empty ones.
export function apiURL(path, params = {}) {
	const q = new URLSearchParams();
	for (const [k, v] of Object.entries(params))
		if (v !== undefined && v !== null && v !== '') q.set(k, v);
	const s = q.toString();
	return s ? `${path}?${s}` : path;
}

// The server's --auth-token-file (docs/api.md, Auth): asked for on the
// first 401, kept for this tab only (sessionStorage, not localStorage: it
// goes when the tab does), sent on every request.
const TOKEN_KEY = 'smolder.token';
let asking = null;   // the dialog's promise while it is open: one for all 401s

export function authHeaders() {
	let t = null;
	try { t = sessionStorage.getItem(TOKEN_KEY); } catch { /* storage off */ }
	return t ? {Authorization: `Bearer ${t}`} : {};
}

// A modal <dialog> asking for the token; resolves with it, or null when
// cancelled. Built here so index.html needs nothing for it.
function askToken(message) {
	if (asking) return asking;
	asking = new Promise(resolve => {
		const d = document.createElement('dialog');
		d.id = 'token-dialog';
		d.setAttribute('aria-labelledby', 'token-title');
		d.setAttribute('aria-describedby', 'token-why');
		d.innerHTML = `<form method="dialog">
			<h2 id="token-title">Token needed</h2>
			<p id="token-why"></p>
			<label for="token-input">Token</label>
			<input id="token-input" type="password" autocomplete="current-password" required>
			<div><button type="submit" value="ok">Use token</button>
			<button type="button" value="cancel">Cancel</button></div></form>`;
		d.querySelector('#token-why').textContent =
			`The server asks for a token (${message}). It is kept for this tab only.`;
		const input = d.querySelector('input');
		let value = null;
		d.querySelector('form').addEventListener('submit', () => { value = input.value.trim(); });
		d.querySelector('button[value=cancel]').addEventListener('click', () => d.close());
		d.addEventListener('close', () => {
			d.remove();
			asking = null;
			resolve(value || null);
		});
		document.body.appendChild(d);
		d.showModal();
		input.focus();
	});
	return asking;
}

// fetch with the token; on a 401 asks once and tries again with the answer.
export async function authFetch(url, init = {}) {
	const go = () => fetch(url, {...init, headers: {...(init.headers || {}), ...authHeaders()}});
	let r = await go();
	if (r.status !== 401) return r;
	let msg = 'this endpoint needs a token';
	try { msg = (await r.clone().json()).error || msg; } catch { /* not JSON */ }
	const t = await askToken(msg);
	if (!t) return r;
	try { sessionStorage.setItem(TOKEN_KEY, t); } catch { /* storage off: this request only */ }
	r = await go();
	// a wrong token must not stick: the next request asks again
	if (r.status === 401) try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* */ }
	return r;
}

export async function getJSON(path, params, signal) {
	let r;
	try {
		r = await authFetch(apiURL(path, params), {signal, headers: {Accept: 'application/json'}});
	} catch (e) {
		if (e.name === 'AbortError') throw e;
		throw new ApiError('the server cannot be reached: is smolder-server running?', 0);
	}
	const text = await r.text();
	let body = null;
	try { body = JSON.parse(text); } catch { /* an error page, not JSON */ }
	if (!r.ok) {
		const msg = body && body.error ? body.error : `${r.status} ${r.statusText}`;
		throw new ApiError(msg, r.status, body);
	}
	if (body === null) throw new ApiError(`${path} answered something that is not JSON`, r.status);
	return body;
}
