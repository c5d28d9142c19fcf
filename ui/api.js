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

export async function getJSON(path, params, signal) {
	let r;
	try {
		r = await fetch(apiURL(path, params), {signal, headers: {Accept: 'application/json'}});
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
