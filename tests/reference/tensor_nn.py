#!/usr/bin/python3
"""Expected values for tests/unit/test_tensor_nn.c, computed independently with PyTorch
(Debian python3-torch 1.13, float64 where it matters, rounded to float32 at the end).
Run with /usr/bin/python3; prints C initialisers to paste into the test. Not run by CI."""
import torch
import torch.nn.functional as F

torch.set_printoptions(precision=10)
D = torch.float64


def c_array(name, t):
    vals = ", ".join("%.9g" % v for v in t.flatten().tolist())
    print("static const float %s[%d] = {%s};" % (name, t.numel(), vals))


def pattern(n, mod, off, scale):
    return ((torch.arange(n, dtype=D) % mod) - off) * scale


# --- generator: torch.Generator().manual_seed(42), two successive draws of 16
g = torch.Generator().manual_seed(42)
c_array("GEN42_DRAW1", torch.randn(16, generator=g))
c_array("GEN42_DRAW2", torch.randn(16, generator=g))
g = torch.Generator().manual_seed(42)
c_array("GEN42_SMALL5", torch.randn(5, generator=g))
c_array("GEN42_AFTER_SMALL5", torch.randn(16, generator=g))

# --- unary
x = torch.tensor([-3, -1.5, -0.5, 0, 0.25, 1, 2, 4], dtype=D)
c_array("UN_EXP", torch.exp(x))
c_array("UN_SIGMOID", torch.sigmoid(x))
c_array("UN_SILU", F.silu(x))
c_array("UN_GELU", F.gelu(x))
c_array("UN_QUICK_GELU", x * torch.sigmoid(1.702 * x))
pos = torch.tensor([0.25, 1, 2, 4], dtype=D)
c_array("UN_LOG", torch.log(pos))
c_array("UN_SQRT", torch.sqrt(pos))

# --- softmax of [[1,2,3],[-1,0,4]]
s = torch.tensor([[1, 2, 3], [-1, 0, 4]], dtype=D)
c_array("SOFTMAX_D1", torch.softmax(s, 1))
c_array("SOFTMAX_D0", torch.softmax(s, 0))

# --- conv2d
cx = pattern(50, 7, 3, 0.5).view(1, 2, 5, 5)
cw = pattern(54, 5, 2, 0.25).view(3, 2, 3, 3)
cb = torch.tensor([0.5, -1, 2], dtype=D)
c_array("CONV_S2P1", F.conv2d(cx, cw, cb, stride=2, padding=1))
c_array("CONV_S1P0_NOBIAS", F.conv2d(cx, cw, None, stride=1, padding=0))
gw = pattern(18, 4, 1, 0.5).view(2, 1, 3, 3)
c_array("CONV_GROUPS2", F.conv2d(cx, gw, None, stride=2, padding=0, groups=2))

# --- group_norm x [1,4,2,2]
gx = pattern(16, 9, 2, 0.75).view(1, 4, 2, 2)
gnw = torch.tensor([1, 2, 0.5, -1], dtype=D)
gnb = torch.tensor([0, 1, -1, 0.5], dtype=D)
c_array("GN_EPS1E6", F.group_norm(gx, 2, gnw, gnb, 1e-6))
c_array("GN_EPS1", F.group_norm(gx, 2, gnw, gnb, 1.0))
c_array("GN_NOAFFINE", F.group_norm(gx, 4, None, None, 1e-5))

# --- layer_norm x [2,4]
lx = torch.tensor([[1, 2, 3, 6], [-2, 0.5, 0.5, 4]], dtype=D)
lw = torch.tensor([1, -1, 0.5, 2], dtype=D)
lb = torch.tensor([0.25, 0, -0.5, 1], dtype=D)
c_array("LN_AFFINE", F.layer_norm(lx, (4,), lw, lb, 1e-5))
c_array("LN_PLAIN_EPS1", F.layer_norm(lx, (4,), None, None, 1.0))

# --- batch_norm with eps 1e-3
bx = pattern(8, 8, 3, 1.0).view(1, 2, 2, 2)
c_array("BN_EPS1E3", F.batch_norm(bx, torch.tensor([1, -1], dtype=D), torch.tensor([4, 0.25], dtype=D),
                                  torch.tensor([2, 1], dtype=D), torch.tensor([0.5, 0], dtype=D),
                                  False, 0.0, 1e-3))

# --- max_pool2d x [1,1,4,4]
mx = torch.tensor([-1, 4, 0, 2, 3, -2, 5, -3, 0, 1, -4, 6, 7, -5, 2, 1], dtype=D).view(1, 1, 4, 4)
c_array("MAXPOOL_K2S2", F.max_pool2d(mx, 2, 2, 0))
c_array("MAXPOOL_K3S1P1", F.max_pool2d(mx, 3, 1, 1))
c_array("MAXPOOL_K3S2P1", F.max_pool2d(mx, 3, 2, 1))

# --- attention: q [1,3,4], k, v [1,5,4], 2 heads of d = 2
aq = pattern(12, 5, 2, 0.5).view(1, 3, 4)
ak = pattern(20, 7, 3, 0.25).view(1, 5, 4)
av = pattern(20, 6, 2, 1.0).view(1, 5, 4)


def attn(q, k, v, heads, causal):
    B, N, C = q.shape
    M = k.shape[1]
    d = C // heads
    qh = q.view(B, N, heads, d).transpose(1, 2)
    kh = k.view(B, M, heads, d).transpose(1, 2)
    vh = v.view(B, M, heads, d).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) * d ** -0.5
    if causal:
        mask = torch.arange(M)[None, :] > torch.arange(N)[:, None]
        s = s.masked_fill(mask, float("-inf"))
    return (torch.softmax(s, -1) @ vh).transpose(1, 2).reshape(B, N, C)


c_array("ATTN_SMALL", attn(aq, ak, av, 2, False))
c_array("ATTN_SMALL_CAUSAL", attn(aq, ak, av, 2, True))
c_array("ATTN_SMALL_1HEAD", attn(aq, ak, av, 1, False))
