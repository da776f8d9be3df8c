// A throwaway development server: serves the UI from the source tree and answers the admin
// API with a synthetic matrix, so the UI can be worked on without the Rust server. The e2e
// tests do NOT use it; they run against the real admin router (see fixture.mjs).
// Usage: node dev-server.mjs [port]
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const UI = fileURLToPath(new URL('../../crates/keyviz-admin/ui/', import.meta.url));
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
const STEP = 10_000;

function matrix(series, from, to, rowsWanted) {
  const now = Date.now();
  const end = Math.floor((to || now) / STEP) * STEP;
  const start = Math.max(Math.floor((from || now - 3600_000) / STEP) * STEP, end - 360 * STEP);
  const cols = [];
  for (let t = start; t < end; t += STEP) cols.push(t);
  const rows = [];
  const n = Math.min(rowsWanted || 64, 64);
  for (let r = 0; r < n; r++) {
    const key = Buffer.from(`user:${String(r).padStart(4, '0')}`);
    const next = r + 1 < n ? Buffer.from(`user:${String(r + 1).padStart(4, '0')}`) : null;
    const values = cols.map((t, j) => {
      const hot = r >= 20 && r < 24 ? 500 : 0;
      const diag = (Math.floor(t / STEP) % n) === r ? 300 : 0;
      const base = series.startsWith('read') ? (r % 7) * 3 : (r % 5 === 0 ? 0 : 2);
      return hot * (series.startsWith('read') ? 0.2 : 1) + diag + base + (j % 3);
    }).map(Math.round);
    rows.push({
      bucket_id: `route:${r}`, start: r === 0 ? null : key.toString('base64'), end: next ? next.toString('base64') : null,
      aggregate: false, route_count: 1, values, raft_group_ids: cols.map(() => 1 + (r % 3)), leader_terms: cols.map(() => 4),
      ...(r === 30 ? { conflict: true, conflicts: cols.map((_, j) => j % 17 === 0) } : {}),
      ...(r === 40 ? { conflict: true } : {}),
    });
  }
  return {
    column_unix_ms: cols, rows, series, generated_at: new Date().toISOString(), step_ms: STEP, node_id: 'n1',
    fanout: { nodes: [
      { node: '127.0.0.1:1', node_id: 'n1', ok: true, warnings: [] },
      { node: '127.0.0.1:2', node_id: 'n2', ok: true, warnings: [{ code: 'catalog_divergence', bucket_id: 'route:3', detail: 'end key differs' }] },
      { node: '127.0.0.1:3', node_id: 'n3', ok: false, error: 'connect: connection refused' },
    ], responded: 2, expected: 3 },
  };
}

const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
};

createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  if (p === '/admin/api/v1/auth/login') {
    return json(res, 200, { role: 'full', expires_at: new Date(Date.now() + 3600_000).toISOString() }, {
      'set-cookie': ['admin_session=dev; Path=/admin; HttpOnly; SameSite=Strict', 'admin_csrf=devcsrf; Path=/admin; SameSite=Strict'],
    });
  }
  if (p === '/admin/api/v1/auth/logout') { res.writeHead(204); return res.end(); }
  if (p === '/admin/api/v1/keyviz/matrix') {
    if (!/admin_session=/.test(req.headers.cookie || '')) return json(res, 401, { error: 'unauthenticated' });
    const q = url.searchParams;
    return json(res, 200, matrix(q.get('series') || 'writes', Number(q.get('from_unix_ms')), Number(q.get('to_unix_ms')), Number(q.get('rows'))));
  }
  if (p.startsWith('/admin/assets/')) {
    const file = normalize(join(UI, p.slice('/admin/assets/'.length)));
    if (!file.startsWith(UI)) { res.writeHead(404); return res.end(); }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream' });
      return res.end(body);
    } catch { res.writeHead(404); return res.end(); }
  }
  if (p === '/admin' || p.startsWith('/admin/')) {
    res.writeHead(200, { 'content-type': TYPES['.html'] });
    return res.end(await readFile(join(UI, 'index.html')));
  }
  res.writeHead(404);
  res.end();
}).listen(Number(process.argv[2] || 8099), '127.0.0.1', () => console.log('dev server on', process.argv[2] || 8099));
