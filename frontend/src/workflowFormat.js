// What a dropped or opened file holds: an editor graph ("ui", litegraph schema 0.4 or 1), an API
// prompt ("api"), or a saved POST /prompt body (its workflow when it carries one, else its
// prompt). PNGs are read through their text chunks (ComfyUI's and weft's "workflow"/"prompt").
import { isPng, pngText } from './png.js';

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function isUiWorkflow(v) {
  return isObject(v) && Array.isArray(v.nodes) && (Array.isArray(v.links) || isObject(v.links) || v.links === undefined) &&
    (v.version !== undefined || v.last_node_id !== undefined || v.state !== undefined || Array.isArray(v.links));
}

export function isApiPrompt(v) {
  if (!isObject(v)) return false;
  const entries = Object.values(v);
  return entries.length > 0 && entries.every((n) => isObject(n) && typeof n.class_type === 'string' && n.class_type &&
    (n.inputs === undefined || isObject(n.inputs)));
}

/** {kind: "ui", graph} | {kind: "api", prompt} | null for anything else. */
export function classifyWorkflow(v) {
  if (isUiWorkflow(v)) return { kind: 'ui', graph: v };
  if (isObject(v) && isObject(v.prompt)) {
    const wf = v.extra_data?.extra_pnginfo?.workflow ?? v.workflow;
    if (isUiWorkflow(wf)) return { kind: 'ui', graph: wf };
    if (isApiPrompt(v.prompt)) return { kind: 'api', prompt: v.prompt };
  }
  if (isObject(v) && isUiWorkflow(v.workflow)) return { kind: 'ui', graph: v.workflow };
  if (isApiPrompt(v)) return { kind: 'api', prompt: v };
  return null;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Classifies the bytes of a file (PNG or JSON). Throws an Error with a message for people. */
export async function workflowFromBytes(bytes) {
  if (isPng(bytes)) {
    const text = await pngText(bytes);
    const wf = text.workflow !== undefined ? parseJson(text.workflow) : undefined;
    if (isUiWorkflow(wf)) return { kind: 'ui', graph: wf };
    const prompt = text.prompt !== undefined ? parseJson(text.prompt) : undefined;
    if (isApiPrompt(prompt)) return { kind: 'api', prompt };
    throw new Error('This PNG carries no workflow (no "workflow" or "prompt" text chunk).');
  }
  const v = parseJson(new TextDecoder('utf-8').decode(bytes));
  if (v === undefined) throw new Error('The file is neither a PNG nor JSON.');
  const c = classifyWorkflow(v);
  if (!c) throw new Error('The JSON is not a workflow (neither an editor graph nor an API prompt).');
  return c;
}
