// Node search for the canvas search box and the node library: ranks node types by how well a
// query matches their display name, class name and category (exact, prefix, word start,
// substring, then letters in order), optionally only types that accept or produce a socket
// type. Pure: the entries come from the caller.

function subsequence(q, s) {
  let i = 0;
  for (const ch of s) if (ch === q[i]) i++;
  return i === q.length;
}

function fieldScore(q, text) {
  if (!text) return 0;
  const t = text.toLowerCase();
  if (t === q) return 100;
  if (t.startsWith(q)) return 80;
  if (t.split(/[\s_/()-]+/).some((w) => w.startsWith(q))) return 60;
  if (t.includes(q)) return 40;
  if (q.length > 1 && subsequence(q, t.replace(/\s+/g, ''))) return 10;
  return 0;
}

/** Score of one entry {type, title, category} for `query` (0: no match). Every word of the
 * query must match somewhere. */
export function scoreEntry(query, e) {
  const words = query.toLowerCase().trim().split(/\s+/).filter(Boolean);
  if (!words.length) return 1;
  let total = 0;
  for (const w of words) {
    const s = Math.max(fieldScore(w, e.title) * 1.2, fieldScore(w, e.type), fieldScore(w, e.category) * 0.5);
    if (!s) return 0;
    total += s;
  }
  // A query equal to the whole title beats word-by-word matches.
  if (e.title && e.title.toLowerCase() === query.toLowerCase().trim()) total += 200;
  return total;
}

/**
 * Entries matching `query`, best first. opts.input / opts.output: keep only types with an input
 * (output) socket of that type; opts.limit.
 */
export function searchNodes(entries, query, opts = {}) {
  const hits = [];
  for (const e of entries) {
    if (opts.input && !(e.inputs || []).some((t) => t === opts.input || t === '*')) continue;
    if (opts.output && !(e.outputs || []).some((t) => t === opts.output || t === '*')) continue;
    const s = scoreEntry(query, e);
    if (s > 0) hits.push({ e, s });
  }
  hits.sort((a, b) => b.s - a.s || a.e.title.localeCompare(b.e.title));
  return hits.slice(0, opts.limit || hits.length).map((x) => x.e);
}

/** Search entries for the registered litegraph node types. */
export function entriesFromTypes(registered) {
  const out = [];
  for (const [type, C] of Object.entries(registered)) {
    const def = C.nodeData;
    const inputs = def ? Object.values({ ...(def.input?.required || {}), ...(def.input?.optional || {}) })
      .map((s) => (Array.isArray(s[0]) ? 'COMBO' : String(s[0]))) : type === 'Reroute' ? ['*'] : [];
    const outputs = def ? (def.output || []).map((t) => (Array.isArray(t) ? 'COMBO' : String(t))) : type === 'Reroute' || type === 'PrimitiveNode' ? ['*'] : [];
    out.push({ type, title: C.title || type, category: C.category || '', description: C.description || '', inputs, outputs });
  }
  return out;
}
