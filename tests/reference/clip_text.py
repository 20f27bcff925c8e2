#!/usr/bin/python3
"""Independent reference for weft's CLIP text encoder (nodes/sd/clip_text.c), written from
shared/docs/sd15-reference.md §4.3-4.5 with torch.nn.functional (not ComfyUI code).

Reads the .safetensors file that tests/unit/test_nodes_sd_clip.c writes on every run
(build-*/tests/tmp/test_nodes_sd_clip/ref/clip_ref.safetensors): the tiny text encoder's
weights under "text_model.*" names. The token rows, weights and layer indices of the cases
below are repeated in the C test. Prints the check values hard-coded there.

Run: /usr/bin/python3 tests/reference/clip_text.py <path to clip_ref.safetensors>
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

LAYERS, HIDDEN, HEADS = 2, 32, 2
BOS, EOS, ROW = 49406, 49407, 77


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", name
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[8 + n + b:8 + n + end], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy()).double()
    return out


W = {}


def p(name):
    return W["text_model." + name]


def ln(x, name):
    return F.layer_norm(x, (HIDDEN,), p(name + ".weight"), p(name + ".bias"), eps=1e-5)


def lin(x, name):
    return F.linear(x, p(name + ".weight"), p(name + ".bias"))


def forward(ids):
    """Hidden states after each layer (before the final layer norm), ids [R, 77]."""
    r = ids.shape[0]
    x = p("embeddings.token_embedding.weight")[ids] + p("embeddings.position_embedding.weight")[:ROW]
    mask = torch.full((ROW, ROW), float("-inf"), dtype=torch.float64).triu(1)  # key j > query i
    d = HIDDEN // HEADS
    states = []
    for i in range(LAYERS):
        pre = "encoder.layers.%d." % i
        h = ln(x, pre + "layer_norm1")

        def heads(t):
            return t.reshape(r, ROW, HEADS, d).permute(0, 2, 1, 3)

        q, k, v = (heads(lin(h, pre + "self_attn.%s_proj" % n)) for n in "qkv")
        s = q @ k.transpose(-1, -2) / d ** 0.5 + mask
        a = (torch.softmax(s, dim=-1) @ v).permute(0, 2, 1, 3).reshape(r, ROW, HIDDEN)
        x = x + lin(a, pre + "self_attn.out_proj")
        h = lin(ln(x, pre + "layer_norm2"), pre + "mlp.fc1")
        h = h * torch.sigmoid(1.702 * h)  # quick_gelu
        x = x + lin(h, pre + "mlp.fc2")
        states.append(x)
    return states


def encode(rows, weights, layer_idx):
    """ComfyUI's encode_token_weights as described in §4.3: rows of 77 ids and weights."""
    weighted = any(w != 1.0 for row in weights for w in row)
    batch = [list(r) for r in rows]
    if weighted:
        batch.append([BOS] + [EOS] * (ROW - 1))
    states = forward(torch.tensor(batch, dtype=torch.long))
    last = ln(states[-1], "final_layer_norm")
    z = ln(states[LAYERS + layer_idx], "final_layer_norm")
    eos = batch[0].index(EOS) if EOS in batch[0] else 0
    pooled = last[0, eos][None]
    out = []
    for k in range(len(rows)):
        zk = z[k].clone()
        for j in range(ROW):
            w = weights[k][j]
            if w != 1.0:
                zk[j] = (zk[j] - z[-1][j]) * w + z[-1][j]
        out.append(zk)
    return torch.cat(out, dim=0)[None], pooled


def row(tokens):
    return [BOS] + tokens + [EOS] * (ROW - 1 - len(tokens))


def report(label, t, idx):
    flat = t.reshape(-1)
    print("%s shape %s sum %.9g abs_sum %.9g" % (label, list(t.shape), flat.sum().item(), flat.abs().sum().item()))
    print("  " + ", ".join("[%d] %.9g" % (i, flat[i].item()) for i in idx))


def main():
    W.update(read_safetensors(sys.argv[1]))
    cat = row([320, 1125, 539, 320, 2368])  # "a photo of a cat"
    red = row([736])                          # "red"
    ones = [1.0] * ROW
    w_cat = list(ones)
    w_cat[2] = 1.5                            # (photo:1.5)
    w_red = list(ones)
    w_red[1] = 0.5
    cases = [
        ("A last", [cat], [ones], -1),
        ("B skip", [cat], [ones], -2),
        ("C weighted", [cat], [w_cat], -1),
        ("D two rows", [cat, red], [ones, ones], -1),
        ("E two rows weighted skip", [cat, red], [ones, w_red], -2),
    ]
    with torch.no_grad():
        for label, rows, weights, layer in cases:
            cond, pooled = encode(rows, weights, layer)
            # Element 70 is token 2 (weighted in C), 2500 token 78 = row 2 token 1 (in E).
            report(label + " cond", cond, [0, 70, 777, 2463] if len(rows) == 1 else [70, 777, 2500, 4927])
            report(label + " pooled", pooled, [0, 1, 9, 31])


if __name__ == "__main__":
    main()
