#!/usr/bin/python3
"""Independent reference for weft's VAE (nodes/sd/vae.c), written from
shared/docs/sd15-reference.md §3 with torch.nn.functional (not ComfyUI code).

Reads the .safetensors file that tests/unit/test_nodes_sd_vae.c writes on every run
(build-*/tests/tmp/test_nodes_sd_vae/ref/vae_ref.safetensors): the tiny VAE's weights under
their state-dict names plus the inputs "input.z" [2,4,4,4] and "input.image" [2,3,32,32].
Prints the check values hard-coded in the C test.

Run: /usr/bin/python3 tests/reference/vae.py <path to vae_ref.safetensors>
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

CH, MULT, NRB, Z, EMBED = 32, [1, 2, 4, 4], 1, 4, 4
EPS = 1e-6


def read_safetensors(path):
    """The whole file: 8-byte little-endian header length, JSON header, raw data."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", name
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[base + b:base + end], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy()).double()
    return out


W = {}


def conv(x, name, stride=1, pad=1):
    return F.conv2d(x, W[name + ".weight"], W[name + ".bias"], stride=stride, padding=pad)


def gn(x, name):
    return F.group_norm(x, 32, W[name + ".weight"], W[name + ".bias"], eps=EPS)


def res(x, p):
    h = conv(F.silu(gn(x, p + ".norm1")), p + ".conv1")
    h = conv(F.silu(gn(h, p + ".norm2")), p + ".conv2")
    if p + ".nin_shortcut.weight" in W:
        x = conv(x, p + ".nin_shortcut", pad=0)
    return x + h


def attn(x, p):
    b, c, hh, ww = x.shape
    h = gn(x, p + ".norm")
    q = conv(h, p + ".q", pad=0).reshape(b, c, hh * ww).permute(0, 2, 1)  # [b, n, c]
    k = conv(h, p + ".k", pad=0).reshape(b, c, hh * ww)                   # [b, c, n]
    v = conv(h, p + ".v", pad=0).reshape(b, c, hh * ww)                   # [b, c, n]
    s = torch.softmax(torch.bmm(q, k) / c ** 0.5, dim=2)                 # [b, n(q), n(k)]
    o = torch.bmm(v, s.permute(0, 2, 1)).reshape(b, c, hh, ww)            # sum_k v[c,k] s[q,k]
    return x + conv(o, p + ".proj_out", pad=0)


def mid(x, coder):
    x = res(x, coder + ".mid.block_1")
    x = attn(x, coder + ".mid.attn_1")
    return res(x, coder + ".mid.block_2")


def encode(img):
    x = conv(img, "encoder.conv_in")
    for lvl in range(len(MULT)):
        for b in range(NRB):
            x = res(x, "encoder.down.%d.block.%d" % (lvl, b))
        if lvl != len(MULT) - 1:
            x = F.pad(x, (0, 1, 0, 1))  # right and bottom only
            x = conv(x, "encoder.down.%d.downsample.conv" % lvl, stride=2, pad=0)
    x = mid(x, "encoder")
    x = conv(F.silu(gn(x, "encoder.norm_out")), "encoder.conv_out")
    moments = conv(x, "quant_conv", pad=0)
    return moments[:, :EMBED]


def decode(z):
    x = conv(z, "post_quant_conv", pad=0)
    x = conv(x, "decoder.conv_in")
    x = mid(x, "decoder")
    for lvl in reversed(range(len(MULT))):
        for b in range(NRB + 1):
            x = res(x, "decoder.up.%d.block.%d" % (lvl, b))
        if lvl != 0:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = conv(x, "decoder.up.%d.upsample.conv" % lvl)
    return conv(F.silu(gn(x, "decoder.norm_out")), "decoder.conv_out")


def report(label, t):
    flat = t.reshape(-1)
    idx = [0, 1, 777 % flat.numel(), flat.numel() - 1]
    print("%s shape %s sum %.9g abs_sum %.9g" % (label, list(t.shape), flat.sum().item(), flat.abs().sum().item()))
    print("  " + ", ".join("[%d] %.9g" % (i, flat[i].item()) for i in idx))


def main():
    W.update(read_safetensors(sys.argv[1]))
    with torch.no_grad():
        report("decode", decode(W["input.z"]))
        report("encode", encode(W["input.image"]))


if __name__ == "__main__":
    main()
