#!/usr/bin/python3
"""Independent reference for weft's image classifier (nodes/classify/), written from
shared/docs/sd15-reference.md §8 Option A with torch.nn.functional and torchvision (not weft's
code). Prints the check values hard-coded in tests/unit/test_nodes_classify.c (png_probs: in
tests/unit/test_engine_classify.c).

What it does:
- rebuilds the random weights of nodes/classify/demo.c (per-tensor seeds: splitmix64 of the
  run seed and the tensor's index in state-dict order; torch.randn; then the recipe below),
- checks its layout against torchvision's resnet18/resnet50/resnext50_32x4d state dicts
  (names, shapes, order, entry and parameter counts),
- checks its own functional forward pass against torchvision's modules on those weights,
- computes, in float64, the stem / layer1 / logits check values for the small configs the C
  test uses and the logits of real-width ResNet-18 on a 32x32 input,
- computes the preprocessing (torchvision.transforms.functional resize with antialias,
  center_crop, normalize) of fixed test images, and the demo classifier's probabilities.

Needs torch and torchvision (Debian python3-torch, python3-torchvision); CI does not run it.
Run: /usr/bin/python3 tests/reference/resnet.py
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

M64 = (1 << 64) - 1


def tensor_seed(seed, index):
    z = (seed + 0x9E3779B97F4A7C15 * (index + 1)) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def randn(shape, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.randn(shape, generator=g)


# ------------------------------------------------------------------ layout


def std_config(depth, classes):
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[depth]
    bott = depth >= 50
    return dict(bottleneck=bott, stem=64, blocks=blocks, inner=[64 << l for l in range(4)],
                out=[(64 << l) * (4 if bott else 1) for l in range(4)], groups=1, classes=classes)


def keys(c):
    """(name, shape) in torchvision's state-dict order."""
    out = []

    def bn(p, ch):
        for part in ("weight", "bias", "running_mean", "running_var"):
            out.append((f"{p}.{part}", [ch]))
        out.append((f"{p}.num_batches_tracked", []))

    out.append(("conv1.weight", [c["stem"], 3, 7, 7]))
    bn("bn1", c["stem"])
    cin = c["stem"]
    for l in range(4):
        for b in range(c["blocks"][l]):
            p = f"layer{l + 1}.{b}."
            mid, o = c["inner"][l], c["out"][l]
            if c["bottleneck"]:
                out.append((p + "conv1.weight", [mid, cin, 1, 1]))
                bn(p + "bn1", mid)
                out.append((p + "conv2.weight", [mid, mid // c["groups"], 3, 3]))
                bn(p + "bn2", mid)
                out.append((p + "conv3.weight", [o, mid, 1, 1]))
                bn(p + "bn3", o)
            else:
                out.append((p + "conv1.weight", [o, cin, 3, 3]))
                bn(p + "bn1", o)
                out.append((p + "conv2.weight", [o, o, 3, 3]))
                bn(p + "bn2", o)
            if b == 0 and (l > 0 or cin != o):
                out.append((p + "downsample.0.weight", [o, cin, 1, 1]))
                bn(p + "downsample.1", o)
            cin = o
    out.append(("fc.weight", [c["classes"], cin]))
    out.append(("fc.bias", [c["classes"]]))
    return out


def weights(c, seed):
    """The demo recipe, in float32 exactly as demo.c computes it."""
    sd = {}
    for i, (name, shape) in enumerate(keys(c)):
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(0, dtype=torch.int64)
            continue
        r = randn(shape, tensor_seed(seed, i)).numpy()
        bn = "bn" in name or "downsample.1" in name
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            v = r * np.float32(math.sqrt(2.0 / fan_in))
        elif bn and name.endswith(".weight"):
            v = np.float32(1.0) + np.float32(0.1) * r
        elif bn and name.endswith(".running_var"):
            v = np.float32(1.0) + np.float32(0.5) * np.abs(r)
        else:
            v = np.float32(0.1) * r
        sd[name] = torch.from_numpy(v.astype(np.float32))
    return sd


# ------------------------------------------------------------------ forward (float64)


def bn(x, W, p):
    return F.batch_norm(x, W[p + ".running_mean"], W[p + ".running_var"], W[p + ".weight"], W[p + ".bias"],
                        training=False, eps=1e-5)


def conv(x, W, name, stride, pad):
    w = W[name]
    groups = x.shape[1] // w.shape[1]
    return F.conv2d(x, w, None, stride=stride, padding=pad, groups=groups)


def block(x, W, c, l, b):
    p = f"layer{l + 1}.{b}."
    s = 2 if (b == 0 and l > 0) else 1
    if c["bottleneck"]:
        y = F.relu(bn(conv(x, W, p + "conv1.weight", 1, 0), W, p + "bn1"))
        y = F.relu(bn(conv(y, W, p + "conv2.weight", s, 1), W, p + "bn2"))
        y = bn(conv(y, W, p + "conv3.weight", 1, 0), W, p + "bn3")
    else:
        y = F.relu(bn(conv(x, W, p + "conv1.weight", s, 1), W, p + "bn1"))
        y = bn(conv(y, W, p + "conv2.weight", 1, 1), W, p + "bn2")
    if p + "downsample.0.weight" in W:
        x = bn(conv(x, W, p + "downsample.0.weight", s, 0), W, p + "downsample.1")
    return F.relu(y + x)


def forward(W, c, x):
    """Returns {stage: tensor}: 0 stem, 1..4 layers, 5 pooled, 6 logits."""
    W = {k: v.double() for k, v in W.items() if not k.endswith("num_batches_tracked")}
    x = x.double()
    st = {}
    y = F.relu(bn(conv(x, W, "conv1.weight", 2, 3), W, "bn1"))
    y = F.max_pool2d(y, 3, 2, 1)
    st[0] = y
    for l in range(4):
        for b in range(c["blocks"][l]):
            y = block(y, W, c, l, b)
        st[l + 1] = y
    y = y.mean(dim=(2, 3))
    st[5] = y
    st[6] = F.linear(y, W["fc.weight"], W["fc.bias"])
    return st


# ------------------------------------------------------------------ checks against torchvision


def check_torchvision():
    cases = [("resnet18", torchvision.models.resnet18, std_config(18, 1000), 122, 11689512),
             ("resnet50", torchvision.models.resnet50, std_config(50, 1000), 320, 25557032)]
    rx = std_config(50, 1000)
    rx["groups"] = 32
    rx["inner"] = [128 << l for l in range(4)]  # width_per_group 4 x 32 groups
    cases.append(("resnext50_32x4d", torchvision.models.resnext50_32x4d, rx, 320, None))
    for name, ctor, c, n_entries, n_params in cases:
        m = ctor().eval()
        ref = [(k, list(v.shape)) for k, v in m.state_dict().items()]
        mine = keys(c)
        assert ref == mine, name
        assert len(mine) == n_entries, (name, len(mine))
        params = sum(p.numel() for p in m.parameters())
        if n_params is not None:
            assert params == n_params, (name, params)
        W = weights(c, 5)
        m.load_state_dict(W, strict=True)
        x = randn([2, 3, 32, 40], 99)
        with torch.no_grad():
            want = m.double()(x.double())
        got = forward(W, c, x)[6]
        err = (want - got).abs().max().item()
        assert err < 1e-9, (name, err)
        print(f"// torchvision {name}: layout identical ({n_entries} entries, {params} parameters), forward max diff {err:.1e}")


# ------------------------------------------------------------------ printing


def carr(name, vals, fmt="%.9g"):
    vals = [float(v) for v in vals]
    body = ", ".join(fmt % v for v in vals)
    print(f"static const double {name}[{len(vals)}] = {{{body}}};")


def sample(t, n=6):
    """n values spread over the flattened tensor (indices i * numel / n)."""
    f = t.flatten()
    idx = [i * f.numel() // n + (i * 7) % max(1, f.numel() // n) for i in range(n)]
    return idx, [f[i].item() for i in idx]


def stage_checks(tag, st, stages):
    for s in stages:
        t = st[s]
        idx, vals = sample(t, 12)
        print(f"// {tag} stage {s}: shape {list(t.shape)}")
        print(f"static const int64_t {tag}_s{s}_idx[{len(idx)}] = {{{', '.join(str(i) for i in idx)}}};")
        carr(f"{tag}_s{s}_val", vals)
        print(f"static const double {tag}_s{s}_sum = {t.sum().item():.12g};")


# ------------------------------------------------------------------ preprocessing


def test_image(h, w, b=1):
    """((x*3 + y*5 + c*71 + b*11) % 97) / 96 as float32, [B, H, W, 3] (an IMAGE)."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    imgs = [(((x * 3 + y * 5 + c * 71 + k * 11) % 97).astype(np.float32) / np.float32(96.0)) for k in range(b)]
    return torch.from_numpy(np.stack(imgs))


def preprocess(img, resize=256, crop=224):
    x = img.permute(0, 3, 1, 2)
    x = TF.resize(x, [resize], interpolation=InterpolationMode.BILINEAR, antialias=True)
    x = TF.center_crop(x, [crop, crop])
    return TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def main():
    torch.set_grad_enabled(False)
    check_torchvision()

    # Small configs. demo: ResNet-18 keys, widths 8..64, 10 classes (nodes/classify/demo.c).
    demo = std_config(18, 10)
    demo.update(stem=8, inner=[8 << l for l in range(4)], out=[8 << l for l in range(4)])
    r50s = std_config(50, 6)
    r50s.update(stem=8, inner=[8 << l for l in range(4)], out=[32 << l for l in range(4)])
    rxs = dict(bottleneck=True, stem=8, blocks=[1, 2, 1, 1], inner=[16 << l for l in range(4)],
               out=[32 << l for l in range(4)], groups=4, classes=5)
    print(f"// entries: demo {len(keys(demo))}, r50 small {len(keys(r50s))}, resnext small {len(keys(rxs))}")

    x = randn([2, 3, 64, 48], 11)
    st = forward(weights(demo, 7), demo, x)
    print("// demo config, seed 7, input randn seed 11 [2,3,64,48]")
    stage_checks("demo", st, [0, 1])
    carr("demo_logits", st[6].flatten())
    for tag, c, seed in (("r50s", r50s, 8), ("rxs", rxs, 9)):
        st = forward(weights(c, seed), c, x)
        print(f"// {tag}, seed {seed}, same input")
        carr(f"{tag}_logits", st[6].flatten())

    # Real ResNet-18 widths on 32x32.
    r18 = std_config(18, 1000)
    x32 = randn([1, 3, 32, 32], 12)
    lg = forward(weights(r18, 3), r18, x32)[6].flatten()
    print("// resnet18 (real widths), seed 3, input randn seed 12 [1,3,32,32]")
    carr("r18_logits_first", lg[:8])
    print(f"static const int r18_argmax = {int(lg.argmax())};")
    print(f"static const double r18_sum = {lg.sum().item():.12g}, r18_abs = {lg.abs().sum().item():.12g};")

    # Resampling alone: full outputs of two small cases.
    for tag, (h, w, oh, ow) in (("down", (7, 10, 3, 4)), ("up", (5, 3, 8, 11))):
        img = test_image(h, w).permute(0, 3, 1, 2)
        out = F.interpolate(img, size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)
        print(f"// interpolate antialias {h}x{w} -> {oh}x{ow}, HWC order")
        carr(f"aa_{tag}", out[0].permute(1, 2, 0).flatten())

    # Whole preprocessing of three images.
    for tag, (h, w) in (("land", (300, 400)), ("port", (517, 300)), ("small", (40, 50))):
        p = preprocess(test_image(h, w))
        print(f"// preprocess {tag} {h}x{w} -> {list(p.shape)}")
        idx, vals = sample(p, 8)
        print(f"static const int64_t pre_{tag}_idx[8] = {{{', '.join(str(i) for i in idx)}}};")
        carr(f"pre_{tag}_val", vals)
        print(f"static const double pre_{tag}_sum = {p.double().sum().item():.12g};")

    # A resize below the crop size: torchvision pads with zeros before normalising.
    p = preprocess(test_image(300, 400), resize=200, crop=224)
    print(f"// preprocess pad 300x400, resize 200, crop 224 -> {list(p.shape)}")
    idx, vals = sample(p, 8)
    print(f"static const int64_t pre_pad_idx[8] = {{{', '.join(str(i) for i in idx)}}};")
    carr("pre_pad_val", vals)
    print(f"static const double pre_pad_sum = {p.double().sum().item():.12g};")

    # The demo classifier file (seed 1, as the test and the workflows write it) on a batch of
    # two 300x400 images.
    img = test_image(300, 400, 2)
    p = preprocess(img)
    probs = torch.softmax(forward(weights(demo, 1), demo, p)[6], dim=1)
    print("// demo classifier seed 1 on test_image(300, 400, batch 2)")
    carr("demo_probs", probs.flatten())

    # The same classifier on the 8-bit PNG that tests/unit/test_engine_classify.c writes as
    # input/example.png: byte ((x*3 + y*5 + c*71) % 97) * 2, loaded as byte / 255.
    y, x, c = np.meshgrid(np.arange(300), np.arange(400), np.arange(3), indexing="ij")
    png = (((x * 3 + y * 5 + c * 71) % 97) * 2).astype(np.float32) / np.float32(255.0)
    p = preprocess(torch.from_numpy(png[None]))
    probs = torch.softmax(forward(weights(demo, 1), demo, p)[6], dim=1)
    print("// demo classifier seed 1 on the example PNG")
    carr("png_probs", probs.flatten())


if __name__ == "__main__":
    main()
