// The page's only way to the server: the HTTP API of `kmemlab serve` (docs/SERVE_API.md).
// Every call returns parsed data or throws an Error carrying the server's JSON message.

/** An error answer of the API: its HTTP status and message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function check(resp) {
  if (resp.ok) return resp;
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    message = body.error || body.message || message;
  } catch (_) { /* not JSON: keep the status line */ }
  throw new ApiError(resp.status, message);
}

/** One machine on the server, owned by this tab. */
export class Session {
  constructor(id, info) {
    this.id = id;
    this.info = info;
    this.base = `/api/sessions/${encodeURIComponent(id)}`;
  }

  /** Boot a machine with `options` (ram, cpus, profile, seed, slab_debug…). */
  static async create(options = {}) {
    const resp = await check(await fetch('/api/sessions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(options),
    }));
    const body = await resp.json();
    return new Session(body.id, body);
  }

  /** GET a JSON resource under the session. */
  async json(path) {
    const resp = await check(await fetch(path ? `${this.base}/${path}` : this.base));
    return resp.json();
  }

  /** GET a text resource under the session. */
  async text(path) {
    const resp = await check(await fetch(`${this.base}/${path}`));
    return resp.text();
  }

  /** GET a binary resource under the session, with its response headers. */
  async bytes(path) {
    const resp = await check(await fetch(`${this.base}/${path}`));
    return { headers: resp.headers, data: new Uint8Array(await resp.arrayBuffer()) };
  }

  /** POST JSON under the session; the answer's JSON. */
  async post(path, body) {
    const resp = await check(await fetch(`${this.base}/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    }));
    const type = resp.headers.get('content-type') || '';
    return type.includes('json') ? resp.json() : resp.text();
  }

  /** POST raw bytes (an uploaded file) under the session. */
  async upload(path, file) {
    const resp = await check(await fetch(`${this.base}/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: file,
    }));
    return resp.json();
  }

  /** Run one shell line; the object `kmemlab shell --json` prints for it. */
  command(line) {
    return this.post('commands', { line });
  }

  /** A /proc file as text, byte-identical to `cat`. */
  proc(file) {
    return this.text(`proc/${file}`);
  }

  /** Server-sent events: `onEvent(type, data)` for hello, change, console, resync, gone. */
  events(onEvent) {
    const source = new EventSource(`${this.base}/events`);
    for (const type of ['hello', 'change', 'console', 'resync', 'gone']) {
      source.addEventListener(type, (e) => onEvent(type, parse(e.data)));
    }
    return source;
  }

  /** End the session (best effort, when the tab closes). */
  close() {
    fetch(this.base, { method: 'DELETE', keepalive: true }).catch(() => {});
  }
}

function parse(text) {
  try { return JSON.parse(text); } catch (_) { return text; }
}

/** The shell's command table: [{name, usage, help, mutates}]. */
export async function commandTable() {
  const resp = await check(await fetch('/api/commands'));
  return resp.json();
}

/** Samples the server was started with (`serve --trace FILE`). */
export async function samples() {
  const resp = await check(await fetch('/api/samples'));
  return resp.json();
}
