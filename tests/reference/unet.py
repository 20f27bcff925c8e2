#!/usr/bin/python3
"""Independent reference for the UNet forward pass (tests/unit/test_nodes_sd_unet.c).

Written from ../shared/docs/sd15-reference.md §2 with torch.nn.functional; it shares no code
with weft. The block structure is read from the tensor names of the file (which kind of
module each input_blocks.<i>.<j> is), not from a config, so it also checks weft's layout.

Usage: WEFT_UNET_DUMP=/tmp/unetdump build/tests/test_nodes_sd_unet   (writes the .safetensors)
       /usr/bin/python3 tests/reference/unet.py /tmp/unetdump/tiny.safetensors ...
Each file holds the UNet weights (no prefix), metadata "unet.num_heads" or
"unet.num_head_channels", and inputs named "case.<k>.x", "case.<k>.t", "case.<k>.context"
(whole forward passes) and "block.<k>.x", "block.<k>.context" with metadata
"block.<k>.prefix" (one module alone).
Prints, per case, eps at a few flat indices and the sum / abs-sum of eps (float64), in the
form the C test hard-codes. Needs torch (Debian python3-torch 1.13) and numpy.
"""
import json
import math
import re
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

PROBES = [0, 1, 2, 37, 100, 251, 255, 256, 300, 511]


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", name
        b, end = e["data_offsets"]
        a = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out, meta


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Unet:
    def __init__(self, w, meta):
        self.w = w
        self.head_channels = int(meta["unet.num_head_channels"]) if "unet.num_head_channels" in meta else None
        self.num_heads = int(meta.get("unet.num_heads", "8"))

    def has(self, prefix):
        return any(k.startswith(prefix) for k in self.w)

    def heads(self, c):
        return c // self.head_channels if self.head_channels else self.num_heads

    def res(self, p, x, emb):
        w = self.w
        h = F.group_norm(x, 32, w[p + "in_layers.0.weight"], w[p + "in_layers.0.bias"], 1e-5)
        h = F.conv2d(F.silu(h), w[p + "in_layers.2.weight"], w[p + "in_layers.2.bias"], padding=1)
        e = F.linear(F.silu(emb), w[p + "emb_layers.1.weight"], w[p + "emb_layers.1.bias"])
        h = h + e[:, :, None, None]
        h = F.group_norm(h, 32, w[p + "out_layers.0.weight"], w[p + "out_layers.0.bias"], 1e-5)
        h = F.conv2d(F.silu(h), w[p + "out_layers.3.weight"], w[p + "out_layers.3.bias"], padding=1)
        if p + "skip_connection.weight" in w:
            x = F.conv2d(x, w[p + "skip_connection.weight"], w[p + "skip_connection.bias"])
        return x + h

    def attn(self, p, x, ctx, heads):
        w = self.w
        q = F.linear(x, w[p + "to_q.weight"])
        k = F.linear(ctx, w[p + "to_k.weight"])
        v = F.linear(ctx, w[p + "to_v.weight"])
        b, n, c = q.shape
        m = k.shape[1]
        d = c // heads
        q = q.reshape(b, n, heads, d).permute(0, 2, 1, 3)
        k = k.reshape(b, m, heads, d).permute(0, 2, 1, 3)
        v = v.reshape(b, m, heads, d).permute(0, 2, 1, 3)
        s = torch.matmul(q, k.transpose(-1, -2)) * (d ** -0.5)
        a = torch.matmul(torch.softmax(s, dim=-1), v)
        a = a.permute(0, 2, 1, 3).reshape(b, n, c)
        return F.linear(a, w[p + "to_out.0.weight"], w[p + "to_out.0.bias"])

    def st(self, p, x, ctx):
        w = self.w
        b, c, hh, ww = x.shape
        heads = self.heads(c)
        linear = w[p + "proj_in.weight"].dim() == 2
        h = F.group_norm(x, 32, w[p + "norm.weight"], w[p + "norm.bias"], 1e-6)
        if not linear:
            h = F.conv2d(h, w[p + "proj_in.weight"], w[p + "proj_in.bias"])
        h = h.permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        if linear:
            h = F.linear(h, w[p + "proj_in.weight"], w[p + "proj_in.bias"])
        i = 0
        while self.has(p + "transformer_blocks.%d." % i):
            bp = p + "transformer_blocks.%d." % i
            ln = lambda t, k: F.layer_norm(t, (c,), w[bp + k + ".weight"], w[bp + k + ".bias"], 1e-5)
            n1 = ln(h, "norm1")
            h = self.attn(bp + "attn1.", n1, n1, heads) + h
            h = self.attn(bp + "attn2.", ln(h, "norm2"), ctx, heads) + h
            pr = F.linear(ln(h, "norm3"), w[bp + "ff.net.0.proj.weight"], w[bp + "ff.net.0.proj.bias"])
            val, gate = pr.chunk(2, dim=-1)
            h = F.linear(val * F.gelu(gate), w[bp + "ff.net.2.weight"], w[bp + "ff.net.2.bias"]) + h
            i += 1
        if linear:
            h = F.linear(h, w[p + "proj_out.weight"], w[p + "proj_out.bias"])
        h = h.reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        if not linear:
            h = F.conv2d(h, w[p + "proj_out.weight"], w[p + "proj_out.bias"])
        return h + x

    def module(self, p, h, emb, ctx, out_size):
        """One numbered sub-module, its kind told by its tensor names."""
        w = self.w
        if p + "in_layers.0.weight" in w:
            return self.res(p, h, emb)
        if p + "norm.weight" in w:
            return self.st(p, h, ctx)
        if p + "op.weight" in w:
            return F.conv2d(h, w[p + "op.weight"], w[p + "op.bias"], stride=2, padding=1)
        if p + "conv.weight" in w:
            h = F.interpolate(h, size=out_size, mode="nearest")
            return F.conv2d(h, w[p + "conv.weight"], w[p + "conv.bias"], padding=1)
        if p + "weight" in w:
            return F.conv2d(h, w[p + "weight"], w[p + "bias"], padding=1)
        raise KeyError(p)

    def block(self, p, h, emb, ctx, out_size=None):
        j = 0
        while self.has(p + "%d." % j):
            h = self.module(p + "%d." % j, h, emb, ctx, out_size)
            j += 1
        return h

    def forward(self, x, t, ctx):
        w = self.w
        mc = w["input_blocks.0.0.weight"].shape[0]
        emb = timestep_embedding(t, mc)
        emb = F.linear(emb, w["time_embed.0.weight"], w["time_embed.0.bias"])
        emb = F.linear(F.silu(emb), w["time_embed.2.weight"], w["time_embed.2.bias"])
        hs = []
        h = x
        i = 0
        while self.has("input_blocks.%d." % i):
            h = self.block("input_blocks.%d." % i, h, emb, ctx)
            hs.append(h)
            i += 1
        h = self.block("middle_block.", h, emb, ctx)
        i = 0
        while self.has("output_blocks.%d." % i):
            h = torch.cat([h, hs.pop()], dim=1)
            size = tuple(hs[-1].shape[-2:]) if hs else None
            h = self.block("output_blocks.%d." % i, h, emb, ctx, size)
            i += 1
        assert not hs
        h = F.group_norm(h, 32, w["out.0.weight"], w["out.0.bias"], 1e-5)
        return F.conv2d(F.silu(h), w["out.2.weight"], w["out.2.bias"], padding=1)


def main():
    torch.set_grad_enabled(False)
    e = timestep_embedding(torch.tensor([999.0]), 320)[0]
    print("# timestep_embedding(999, 320) [0,1,2,160,161,162,319]: %s" %
          ", ".join("%.6f" % e[i].item() for i in (0, 1, 2, 160, 161, 162, 319)))
    for path in sys.argv[1:]:
        tensors, meta = read_safetensors(path)
        weights = {k: v for k, v in tensors.items() if not k.startswith(("case.", "block."))}
        cases = sorted({re.match(r"case\.(\w+)\.", k).group(1) for k in tensors if k.startswith("case.")})
        blocks = sorted({re.match(r"block\.(\w+)\.", k).group(1) for k in tensors if k.startswith("block.")})
        net = Unet(weights, meta)
        params = sum(v.numel() for v in weights.values())
        print("# %s: %d tensors, %d parameters" % (path, len(weights), params))
        for c in cases:
            x, t, ctx = (tensors["case.%s.%s" % (c, n)] for n in ("x", "t", "context"))
            eps = net.forward(x, t, ctx)
            flat = eps.reshape(-1).double()
            probes = [i for i in PROBES if i < flat.numel()]
            print("# case %s: x %s, t %s, context %s -> eps %s" %
                  (c, list(x.shape), t.tolist(), list(ctx.shape), list(eps.shape)))
            print("    {%s}," % ", ".join("{%d, %.8g}" % (i, flat[i].item()) for i in probes))
            print("    sum %.10g abs_sum %.10g" % (flat.sum().item(), flat.abs().sum().item()))
        # One module alone (e.g. a SpatialTransformer on a low-variance input, where the
        # GroupNorm eps matters): metadata "block.<k>.prefix" names it.
        for c in blocks:
            x, ctx = tensors["block.%s.x" % c], tensors["block.%s.context" % c]
            prefix = meta["block.%s.prefix" % c]
            y = net.module(prefix, x, None, ctx, None)
            flat = y.reshape(-1).double()
            probes = [i for i in PROBES if i < flat.numel()]
            print("# block %s: %s on x %s -> %s" % (c, prefix, list(x.shape), list(y.shape)))
            print("    {%s}," % ", ".join("{%d, %.8g}" % (i, flat[i].item()) for i in probes))
            print("    sum %.10g abs_sum %.10g" % (flat.sum().item(), flat.abs().sum().item()))


if __name__ == "__main__":
    main()
