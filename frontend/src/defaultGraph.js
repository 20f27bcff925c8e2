// The graph a new user starts with: text to image (checkpoint → two prompts → KSampler → VAE
// decode → save), laid out like ComfyUI's default, using the first checkpoint the server lists.
import { LiteGraph } from '@comfyorg/litegraph';

function node(graph, type, pos, values = {}) {
  const n = LiteGraph.createNode(type);
  if (!n) return null;
  n.pos = pos;
  for (const [k, v] of Object.entries(values)) {
    const w = n.widgets?.find((x) => x.name === k);
    if (w) w.value = v;
  }
  graph.add(n);
  return n;
}

/** Fills `graph` with the default text-to-image workflow; false when a type is missing. */
export function buildDefaultGraph(graph) {
  const ck = node(graph, 'CheckpointLoaderSimple', [26, 474]);
  const pos = node(graph, 'CLIPTextEncode', [415, 186], { text: 'beautiful scenery nature glass bottle landscape, , purple galaxy bottle,' });
  const neg = node(graph, 'CLIPTextEncode', [413, 389], { text: 'text, watermark' });
  const lat = node(graph, 'EmptyLatentImage', [473, 609], { width: 512, height: 512, batch_size: 1 });
  const ks = node(graph, 'KSampler', [863, 186], { seed: 156680208700286, steps: 20, cfg: 8, sampler_name: 'euler', scheduler: 'normal' });
  const dec = node(graph, 'VAEDecode', [1209, 188]);
  const save = node(graph, 'SaveImage', [1451, 189]);
  if (![ck, pos, neg, lat, ks, dec, save].every(Boolean)) return false;
  const slot = (n, name) => n.inputs.findIndex((i) => i.name === name);
  ck.connect(0, ks, slot(ks, 'model'));
  ck.connect(1, pos, slot(pos, 'clip'));
  ck.connect(1, neg, slot(neg, 'clip'));
  pos.connect(0, ks, slot(ks, 'positive'));
  neg.connect(0, ks, slot(ks, 'negative'));
  lat.connect(0, ks, slot(ks, 'latent_image'));
  ks.connect(0, dec, slot(dec, 'samples'));
  ck.connect(2, dec, slot(dec, 'vae'));
  dec.connect(0, save, slot(save, 'images'));
  pos.size = [422, 164];
  neg.size = [425, 180];
  return true;
}
