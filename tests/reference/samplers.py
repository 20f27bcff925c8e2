#!/usr/bin/python3
"""Reference values for tests/unit/test_nodes_sd_sched.c and test_nodes_sd_samplers.c.

An independent re-implementation (numpy float64 for the samplers, torch float32 where
ComfyUI computes schedules with float32 tensors, scipy for beta.ppf) of the formulas in
../shared/docs/sd15-reference.md §5; not run by CI. Run with Debian's python3 (torch 1.13,
numpy, scipy):  /usr/bin/python3 tests/reference/samplers.py

The "Gaussian toy" model: data ~ N(0, 1) has the exact denoiser D(x, s) = x / (1 + s^2); the
probability-flow ODE carries x(s0) = sqrt(1 + s0^2) to exactly 1 at s = 0.
"""
import math

import numpy as np
import scipy.stats
import torch

# ---------------------------------------------------------------- schedule (float64 -> float32)

betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
ac = torch.cumprod(1.0 - betas, dim=0)
sig64 = ((1 - ac) / ac) ** 0.5
SIG = sig64.float()
LOGSIG = sig64.log().float()
SMIN, SMAX = float(SIG[0]), float(SIG[-1])


def sigma_to_t(sigma):
    d = (torch.tensor(sigma, dtype=torch.float32).log() - LOGSIG).abs()
    return int(d.argmin())


def t_to_sigma(t):
    t = torch.clamp(torch.tensor(float(t), dtype=torch.float32), 0, 999)
    lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
    return float(((1 - w) * LOGSIG[lo] + w * LOGSIG[hi]).exp())


# ---------------------------------------------------------------- schedulers


def sch_simple(n):
    ss = 1000 / n
    return [float(SIG[-(1 + int(k * ss))]) for k in range(n)] + [0.0]


def sch_normal(n, sgm=False):
    start, end = sigma_to_t(SMAX), sigma_to_t(SMIN)
    if sgm:
        ts = torch.linspace(start, end, n + 1)[:-1]
    else:
        ts = torch.linspace(start, end, n)
    return [t_to_sigma(float(t)) for t in ts] + [0.0]


def sch_karras(n, rho=7.0):
    ramp = torch.linspace(0, 1, n)
    lo, hi = SMIN ** (1 / rho), SMAX ** (1 / rho)
    return [float(v) for v in (hi + ramp * (lo - hi)) ** rho] + [0.0]


def sch_exponential(n):
    return [float(v) for v in torch.linspace(math.log(SMAX), math.log(SMIN), n).exp()] + [0.0]


def sch_ddim_uniform(n):
    ss = max(1000 // n, 1)
    out = [0.0] + [float(SIG[x]) for x in range(1, 1000, ss)]
    return out[::-1]


def sch_beta(n, a=0.6, b=0.6):
    ts = np.rint(scipy.stats.beta.ppf(1 - np.linspace(0, 1, n, endpoint=False), a, b) * 999)
    out, last = [], -1
    for t in ts:
        if t != last:
            out.append(float(SIG[int(t)]))
        last = t
    return out + [0.0]


def sch_linear_quadratic(n, thr=0.025):
    if n == 1:
        v = [1.0, 0.0]
    else:
        ls = n // 2
        lin = [i * thr / ls for i in range(ls)]
        diff = ls - thr * n
        qs = n - ls
        qc = diff / (ls * qs ** 2)
        lc = thr / ls - 2 * diff / (qs ** 2)
        c = qc * ls ** 2
        v = lin + [qc * i ** 2 + lc * i + c for i in range(ls, n)] + [1.0]
        v = [1.0 - x for x in v]
    return [float(x) for x in torch.tensor(v, dtype=torch.float32) * SIG[-1]]


def sch_kl_optimal(n):
    w = torch.arange(n, dtype=torch.float32) / (n - 1)
    v = (w * math.atan(SMIN) + (1 - w) * math.atan(SMAX)).tan()
    return [float(x) for x in v] + [0.0]


SCHEDULERS = {
    "simple": sch_simple, "sgm_uniform": lambda n: sch_normal(n, True), "karras": sch_karras,
    "exponential": sch_exponential, "ddim_uniform": sch_ddim_uniform, "beta": sch_beta,
    "normal": sch_normal, "linear_quadratic": sch_linear_quadratic, "kl_optimal": sch_kl_optimal,
}


def linspace_model(a, b, n, i):
    """How torch 1.13's AVX2 CPU kernel computes torch.linspace(a, b, n)[i] in float32 (what
    nodes/sd/schedulers.c reproduces): halves counted from each end with a fused multiply-add,
    two 8-float vectors per block of 16 continuing by unfused k*step, scalar tail."""
    from fractions import Fraction

    f = np.float32

    def fma(x, y, z):
        return f(float(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))))

    a, b = f(a), f(b)
    if n == 1:
        return a
    step, half = f((b - a) / f(n - 1)), n // 2
    if i < n - n % 16:
        i0 = i - i % 8
        base = fma(step, f(i0), a) if i0 < half else fma(-step, f(n - i0 - 1), b)
        return f(base + f(f(i - i0) * step))
    return fma(step, f(i), a) if i < half else fma(-step, f(n - i - 1), b)


def check_linspace_model():
    bad = 0
    for a, b in [(0, 1), (math.log(SMAX), math.log(SMIN)), (999, 0), (2.5, -7.25)]:
        for n in list(range(1, 150)) + [250, 333, 501, 1000, 2000]:
            t = torch.linspace(a, b, n).numpy()
            bad += int(any(t[i] != linspace_model(a, b, n, i) for i in range(n)))
    return bad


def discard_penultimate(s):
    return s[:-2] + s[-1:]


# ---------------------------------------------------------------- toy samplers (float64)


def D(x, s):
    return x / (1 + s * s)


def euler(sig, x):
    for i in range(len(sig) - 1):
        d = (x - D(x, sig[i])) / sig[i]
        x = x + d * (sig[i + 1] - sig[i])
    return x


def heun(sig, x):
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        d = (x - D(x, s)) / s
        xe = x + d * (s1 - s)
        if s1 == 0:
            x = xe
        else:
            d2 = (xe - D(xe, s1)) / s1
            x = x + (d + d2) / 2 * (s1 - s)
    return x


def dpm_2(sig, x):
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        d = (x - D(x, s)) / s
        if s1 == 0:
            x = x + d * (s1 - s)
        else:
            sm = math.exp(0.5 * (math.log(s) + math.log(s1)))
            x2 = x + d * (sm - s)
            x = x + (x2 - D(x2, sm)) / sm * (s1 - s)
    return x


def lagrange_integral(ts, j, a, b):
    """Exact integral over [a, b] of the Lagrange basis polynomial j through ts."""
    num = np.poly1d([1.0])
    for k, tk in enumerate(ts):
        if k != j:
            num = num * np.poly1d([1.0, -tk]) / (ts[j] - tk)
    P = num.integ()
    return P(b) - P(a)


def lms(sig, x, order=4):
    ds = []
    for i in range(len(sig) - 1):
        den = D(x, sig[i])
        ds.append((x - den) / sig[i])
        ds = ds[-order:]
        if sig[i + 1] == 0:
            x = den
        else:
            o = min(i + 1, order)
            ts = [sig[i - k] for k in range(o)]
            x = x + sum(lagrange_integral(ts, j, sig[i], sig[i + 1]) * ds[-1 - j] for j in range(o))
    return x


def dpmpp_2m(sig, x):
    old = None
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        if s1 == 0:
            x = den
        else:
            h = math.log(s / s1)
            if old is None:
                dd = den
            else:
                r = math.log(sig[i - 1] / s) / h
                dd = (1 + 1 / (2 * r)) * den - 1 / (2 * r) * old
            x = s1 / s * x - math.expm1(-h) * dd
        old = den
    return x


def ipndm(sig, x):
    hist = []
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        d = (x - den) / s
        o = min(4, i + 1)
        if s1 == 0:
            x = den
        else:
            if o == 1:
                dd = d
            elif o == 2:
                dd = (3 * d - hist[-1]) / 2
            elif o == 3:
                dd = (23 * d - 16 * hist[-1] + 5 * hist[-2]) / 12
            else:
                dd = (55 * d - 59 * hist[-1] + 37 * hist[-2] - 9 * hist[-3]) / 24
            x = x + (s1 - s) * dd
        hist = (hist + [d])[-3:]
    return x


def gradient_estimation(sig, x, gamma=2.0):
    old = None
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        d = (x - den) / s
        if s1 == 0:
            x = den
        else:
            x = x + d * (s1 - s)
            if i >= 1:
                x = x + (gamma - 1) * (d - old) * (s1 - s)
        old = d
    return x


def uni_pc(sig, x, variant="bh1"):
    """UniPC multistep with data prediction (Zhao et al. 2023), written from the paper's
    algorithm: predictor UniP-p and corrector UniC-p with B(h) = h (bh1) or e^h - 1 (bh2),
    warm-up orders 1..p-1, lower orders at the end, the last sigma 0 replaced by 0.001."""
    sig = list(sig)
    if sig[-1] == 0:
        sig[-1] = 0.001
    n = len(sig) - 1
    p = max(1, min(3, n - 1))
    lam = [-math.log(s) for s in sig]
    ms, idx = [D(x, sig[0])], [0]
    for k in range(1, n + 1):
        o = k if k < p else min(p, n + 1 - k)
        j0 = idx[-1]
        h = lam[k] - lam[j0]
        rks = [(lam[idx[-1 - i]] - lam[j0]) / h for i in range(1, o)] + [1.0]
        D1 = [(ms[-1 - i] - ms[-1]) / rks[i - 1] for i in range(1, o)]
        hh = -h
        B = hh if variant == "bh1" else math.expm1(hh)
        # b_i = i! * phi_{i+1}(hh) / B with phi via the recursion g_{i+1} = g_i/hh - 1/(i+1)!
        g, b = math.expm1(hh) / hh - 1, []
        for i in range(1, o + 1):
            b.append(g * math.factorial(i) / B)
            g = g / hh - 1 / math.factorial(i + 1)
        R = np.array([[r ** (i - 1) for r in rks] for i in range(1, o + 1)])
        base = sig[k] / sig[j0] * x - math.expm1(hh) * ms[-1]
        if o == 1:
            pred = 0.0
        elif o == 2:
            pred = 0.5 * D1[0]
        else:
            rp = np.linalg.solve(R[:-1, :-1], np.array(b[:-1]))
            pred = sum(rp[i] * D1[i] for i in range(o - 1))
        xt = base - B * pred
        if k < n:
            mt = D(xt, sig[k])
            rc = [0.5] if o == 1 else list(np.linalg.solve(R, np.array(b)))
            corr = sum(rc[i] * D1[i] for i in range(o - 1))
            xt = base - B * (corr + rc[-1] * (mt - ms[-1]))
            ms.append(mt)
            idx.append(k)
            ms, idx = ms[-p:], idx[-p:]
        x = xt
    return x


def uni_pc_comfy_f32(sig, x, variant="bh1"):
    """ComfyUI's own arithmetic for the same toy (VP latent, float32 tensors), to measure
    how far the float64 VE version above is from it."""
    t = torch.tensor(sig, dtype=torch.float32)
    if float(t[-1]) == 0:
        t[-1] = 0.001
    lmc = lambda s: 0.5 * torch.log(1 / (s * s + 1))
    alpha = lambda s: torch.exp(lmc(s))
    std = lambda s: torch.sqrt(1.0 - torch.exp(2.0 * lmc(s)))
    lam = lambda s: lmc(s) - 0.5 * torch.log(1.0 - torch.exp(2.0 * lmc(s)))
    model = lambda xv, s: D(xv * (s * s + 1) ** 0.5, s)  # x0 prediction from the VP latent
    n = len(sig) - 1
    order = max(1, min(3, n - 1))
    xv = torch.tensor(x, dtype=torch.float32) / torch.sqrt(1.0 + t[0] ** 2)
    ms, ts = [model(xv, t[0])], [t[0]]
    for k in range(1, n + 1):
        o = k if k < order else min(order, n + 1 - k)
        tk = t[k]
        h = lam(tk) - lam(ts[-1])
        rks = [((lam(ts[-1 - i]) - lam(ts[-1])) / h) for i in range(1, o)] + [torch.tensor(1.0)]
        D1 = [(ms[-1 - i] - ms[-1]) / rks[i - 1] for i in range(1, o)]
        rks = torch.stack(rks)
        hh = -h
        hp1 = torch.expm1(hh)
        hpk = hp1 / hh - 1
        B = hh if variant == "bh1" else torch.expm1(hh)
        fact, R, b = 1, [], []
        for i in range(1, o + 1):
            R.append(torch.pow(rks, i - 1))
            b.append(hpk * fact / B)
            fact *= i + 1
            hpk = hpk / hh - 1 / fact
        R, b = torch.stack(R), torch.stack(b)
        base = std(tk) / std(ts[-1]) * xv - alpha(tk) * hp1 * ms[-1]
        if o >= 2:
            rp = torch.tensor([0.5]) if o == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1])
            pred = sum(rp[i] * D1[i] for i in range(o - 1))
        else:
            pred = 0
        xt = base - alpha(tk) * B * pred
        if k < n:
            mt = model(xt, tk)
            rc = torch.tensor([0.5]) if o == 1 else torch.linalg.solve(R, b)
            corr = sum(rc[i] * D1[i] for i in range(o - 1)) if o > 1 else 0
            xt = base - alpha(tk) * B * (corr + rc[-1] * (mt - ms[-1]))
            if len(ms) == order:
                ms, ts = ms[1:], ts[1:]
            ms.append(mt)
            ts.append(tk)
        xv = xt
    return float(xv / alpha(t[-1]))


def heunpp2(sig, x):
    end = sig[-1]
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        d = (x - D(x, s)) / s
        dt = s1 - s
        if s1 == end:
            x = x + d * dt
            continue
        x2 = x + d * dt
        d2 = (x2 - D(x2, s1)) / s1
        if sig[i + 2] == end:
            w2 = s1 / (2 * sig[0])
            x = x + (d * (1 - w2) + d2 * w2) * dt
        else:
            s2 = sig[i + 2]
            x3 = x2 + d2 * (s2 - s1)
            d3 = (x3 - D(x3, s2)) / s2
            w2, w3 = s1 / (3 * sig[0]), s2 / (3 * sig[0])
            x = x + ((1 - w2 - w3) * d + w2 * d2 + w3 * d3) * dt
    return x


def ipndm_v(sig, x):
    """iPNDM with variable steps, from the closed-form weights diff-sampler publishes (and
    ComfyUI uses). For orders 1 and 2 they are the exact variable-step Adams-Bashforth
    weights (the integrals of the Lagrange polynomials, as in lms); for orders 3 and 4 they
    are not, so this is NOT lms(sig, x)."""
    hist = []
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        d = (x - den) / s
        o = min(4, i + 1)
        h = s1 - s
        if s1 == 0:
            x = den
        elif o == 1:
            x = x + h * d
        else:
            h1 = s - sig[i - 1]
            c = [(2 + h / h1) / 2, -(h / h1) / 2]
            if o >= 3:
                h2 = sig[i - 1] - sig[i - 2]
                t1 = (1 - h / (3 * (h + h1)) * (h * (h + h1)) / (h1 * (h1 + h2))) / 2
                c = [c[0] + t1, c[1] - (1 + h1 / h2) * t1, t1 * h1 / h2]
            if o == 4:
                h3 = sig[i - 2] - sig[i - 3]
                g = h1 * (h1 + h2) / (h2 * (h2 + h3))
                t2 = ((1 - h / (3 * (h + h1))) / 2 + (1 - h / (2 * (h + h1))) * h / (6 * (h + h1 + h2))) \
                    * (h * (h + h1) * (h + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3))
                c = [c[0] + t2, c[1] - (1 + h1 / h2 + g) * t2,
                     c[2] + (h1 / h2 + g * (1 + h2 / h3)) * t2, -t2 * g * h1 / h2]
            x = x + h * sum(cj * dj for cj, dj in zip(c, [d] + hist[::-1]))
        hist = (hist + [d])[-3:]
    return x


def deis(sig, x, order_max=3, N=10000):
    eps, smin, smax = 1e-3, 0.002, 80.0
    bd = 2 * (math.log(smin ** 2 + 1) / eps - math.log(smax ** 2 + 1)) / (eps - 1)
    bmin = math.log(smax ** 2 + 1) - 0.5 * bd
    tt = [(math.sqrt(bmin ** 2 + 2 * bd * math.log(s * s + 1)) - bmin) / bd for s in sig]
    hist = []
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        d = (x - den) / s
        o = 1 if s1 <= 0 else min(order_max, i + 1)
        if o == 1:
            x = x + (s1 - s) * d
        else:
            taus = np.linspace(tt[i], tt[i + 1], N)
            alpha = np.exp(-0.5 * taus ** 2 * bd - taus * bmin)
            integrand = 0.5 * (taus * bd + bmin) / np.sqrt(alpha * (1 - alpha))
            prev = [tt[i - k] for k in range(o)]
            ds = [d] + hist[::-1][:o - 1]
            for j in range(o):
                poly = np.ones_like(taus)
                for k in range(o):
                    if k != j:
                        poly *= (taus - prev[k]) / (prev[j] - prev[k])
                x = x + float(np.sum(integrand * poly) * (tt[i + 1] - tt[i]) / N) * ds[j]
        hist = (hist + [d])[-2:]
    return x


def ancestral(a, b, eta=1.0):
    if eta == 0:
        return b, 0.0
    up = min(b, eta * math.sqrt(b * b * (a * a - b * b) / (a * a)))
    return math.sqrt(b * b - up * up), up


def res_multistep(sig, x, eta=0.0, noise=None):
    old, old_down = None, None
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        down, up = ancestral(s, s1, eta)
        if down == 0 or old is None:
            x = x + (x - den) / s * (down - s)
        else:
            lt = lambda v: -math.log(v)
            h = lt(down) - lt(s)
            c2 = (lt(sig[i - 1]) - lt(old_down)) / h
            p1 = math.expm1(-h) / -h
            p2 = (p1 - 1) / -h
            x = math.exp(-h) * x + h * ((p1 - p2 / c2) * den + (p2 / c2) * old)
        if s1 > 0 and up > 0:
            x = x + noise() * up
        old, old_down = den, down
    return x


# ---- stochastic samplers: noise() is the next float32 draw of one torch CPU generator


def euler_ancestral(sig, x, noise):
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        down, up = ancestral(s, s1)
        if down == 0:
            x = den
        else:
            x = x + (x - den) / s * (down - s) + noise() * up
    return x


def dpm_2_ancestral(sig, x, noise):
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        down, up = ancestral(s, s1)
        d = (x - den) / s
        if down == 0:
            x = x + d * (down - s)
        else:
            sm = math.exp(0.5 * (math.log(s) + math.log(down)))
            x2 = x + d * (sm - s)
            x = x + (x2 - D(x2, sm)) / sm * (down - s)
            x = x + noise() * up
    return x


def dpmpp_2s_ancestral(sig, x, noise):
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        down, up = ancestral(s, s1)
        if down == 0:
            x = den
        else:
            h = math.log(s / down)
            sm = s * math.exp(-h / 2)
            x2 = sm / s * x - math.expm1(-h / 2) * den
            x = down / s * x - math.expm1(-h) * D(x2, sm)
        if s1 > 0:
            x = x + noise() * up
    return x


def dpmpp_sde(sig, x, noise):
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        if s1 == 0:
            x = den
            continue
        h = math.log(s / s1)
        sm = s * math.exp(-h / 2)
        down, up = ancestral(s, sm)
        x2 = down / s * x - math.expm1(-math.log(s / down)) * den + noise() * up
        d2 = D(x2, sm)
        down, up = ancestral(s, s1)
        x = down / s * x - math.expm1(-math.log(s / down)) * d2 + noise() * up
    return x


def dpmpp_2m_sde(sig, x, noise, heun=False):
    old, h_last = None, None
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        if s1 == 0:
            x = den
        else:
            h = math.log(s / s1)
            x = s1 / s * math.exp(-h) * x - math.expm1(-2 * h) * den
            if old is not None:
                r = h_last / h
                if heun:
                    x = x + (-math.expm1(-2 * h) / (-2 * h) + 1) / r * (den - old)
                else:
                    x = x - 0.5 * math.expm1(-2 * h) / r * (den - old)
            x = x + noise() * s1 * math.sqrt(-math.expm1(-2 * h))
            h_last = h
        old = den
    return x


def dpmpp_3m_sde(sig, x, noise):
    dens, hs = [], []
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        if s1 == 0:
            x = den
        else:
            h = math.log(s / s1)
            he = 2 * h
            x = s1 / s * math.exp(-h) * x - math.expm1(-he) * den
            phi2 = math.expm1(-he) / he + 1
            if len(hs) >= 2:
                r0, r1 = hs[-1] / h, hs[-2] / h
                a0 = (den - dens[-1]) / r0
                a1 = (dens[-1] - dens[-2]) / r1
                d1 = a0 + (a0 - a1) * r0 / (r0 + r1)
                d2 = (a0 - a1) / (r0 + r1)
                x = x + phi2 * d1 - (phi2 / he - 0.5) * d2
            elif len(hs) == 1:
                x = x + phi2 * (den - dens[-1]) / (hs[-1] / h)
            x = x + noise() * s1 * math.sqrt(-math.expm1(-2 * h))
            hs.append(h)
        dens.append(den)
    return x


def ddpm(sig, x, noise):
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        eps = (x - den) / s
        ab, abp = 1 / (1 + s * s), 1 / (1 + s1 * s1)
        a = ab / abp
        mu = (x / math.sqrt(1 + s * s) - (1 - a) * eps / math.sqrt(1 - ab)) / math.sqrt(a)
        if s1 > 0:
            mu = mu + math.sqrt((1 - a) * (1 - abp) / (1 - ab)) * noise()
            x = mu * math.sqrt(1 + s1 * s1)
        else:
            x = mu
    return x


def lcm(sig, x, noise):
    for i in range(len(sig) - 1):
        x = D(x, sig[i])
        if sig[i + 1] > 0:
            x = x + sig[i + 1] * noise()
    return x


def er_sde(sig, x, noise):
    ns = lambda v: v * (np.exp(v ** 0.3) + 10.0)
    old, old_dd = None, None
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        stage = min(3, i + 1)
        if s1 == 0:
            x = den
        else:
            r = ns(s1) / ns(s)
            x = r * x + (1 - r) * den
            if stage >= 2:
                dt = s1 - s
                step = -dt / 200
                pos = s1 + np.arange(200) * step
                sint = float(np.sum(1 / ns(pos)) * step)
                dd = (den - old) / (s - sig[i - 1])
                x = x + (dt + sint * ns(s1)) * dd
                if stage >= 3:
                    su = float(np.sum((pos - s) / ns(pos)) * step)
                    du = (dd - old_dd) / ((s - sig[i - 2]) / 2)
                    x = x + (dt * dt / 2 + su * ns(s1)) * du
                old_dd = dd
            x = x + noise() * math.sqrt(max(s1 * s1 - s * s * r * r, 0.0))
        old = den
    return x


def seeds(sig, x, noise, rs):
    """SEEDS-2 (rs = [1/2]) and SEEDS-3 (rs = [1/3, 2/3]), eta = 1, data prediction."""
    phi1 = math.expm1
    phi2 = lambda h: (math.expm1(h) - h) / h
    for i in range(len(sig) - 1):
        s, s1 = sig[i], sig[i + 1]
        den = D(x, s)
        if s1 == 0:
            x = den
            continue
        h = math.log(s / s1)
        he = 2 * h
        r1 = rs[0]
        sa = s * math.exp(-r1 * h)
        x2 = sa / s * math.exp(-r1 * h) * x - phi1(-r1 * he) * den
        z = math.sqrt(-math.expm1(-2 * r1 * h)) * noise()
        x2 = x2 + z * sa
        d2 = D(x2, sa)
        if len(rs) == 1:
            x = s1 / s * math.exp(-h) * x - phi1(-he) * d2  # lerp(den, d2, 1/(2r)) = d2
            seg = (r1 - 1) * h
            z = z * math.exp(seg) + math.sqrt(-math.expm1(2 * seg)) * noise()
            x = x + z * s1
        else:
            r2 = rs[1]
            sb = s * math.exp(-r2 * h)
            a32 = r2 / r1 * phi2(-r2 * he)
            a31 = phi1(-r2 * he) - a32
            x3 = sb / s * math.exp(-r2 * h) * x - (a31 * den + a32 * d2)
            seg = (r1 - r2) * h
            z = z * math.exp(seg) + math.sqrt(-math.expm1(2 * seg)) * noise()
            x3 = x3 + z * sb
            d3 = D(x3, sb)
            b3 = phi2(-he) / r2
            b1 = phi1(-he) - b3
            x = s1 / s * math.exp(-h) * x - (b1 * den + b3 * d3)
            seg = (r2 - 1) * h
            z = z * math.exp(seg) + math.sqrt(-math.expm1(2 * seg)) * noise()
            x = x + z * s1
    return x


STOCHASTIC = {
    "euler_ancestral": euler_ancestral, "dpm_2_ancestral": dpm_2_ancestral,
    "dpmpp_2s_ancestral": dpmpp_2s_ancestral, "dpmpp_sde": dpmpp_sde,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_2m_sde_heun": lambda s, x, n: dpmpp_2m_sde(s, x, n, heun=True),
    "dpmpp_3m_sde": dpmpp_3m_sde, "ddpm": ddpm, "lcm": lcm,
    "res_multistep_ancestral": lambda s, x, n: res_multistep(s, x, 1.0, n),
    "er_sde": er_sde, "seeds_2": lambda s, x, n: seeds(s, x, n, [0.5]),
    "seeds_3": lambda s, x, n: seeds(s, x, n, [1 / 3, 2 / 3]),
}


def noise_stream(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda: float(torch.randn(1, generator=g)[0])


SAMPLERS = {"euler": euler, "heun": heun, "dpmpp_2m": dpmpp_2m, "lms": lms, "ipndm": ipndm,
            "gradient_estimation": gradient_estimation, "uni_pc": uni_pc,
            "uni_pc_bh2": lambda s, x: uni_pc(s, x, "bh2"), "dpm_2": dpm_2,
            "heunpp2": heunpp2, "ipndm_v": ipndm_v, "deis": deis,
            "res_multistep": lambda s, x: res_multistep(s, x, 0.0)}


def main():
    print("linspace model: %d mismatching (a, b, n) against this torch" % check_linspace_model())
    print("sigma_min %.12g sigma_max %.12g sigma_1 %.9g sigma_500 %.9g" %
          (SMIN, SMAX, float(SIG[1]), float(SIG[500])))
    print("t(smax) %d t(smin) %d t(1.0) %d sigma(500.5) %.9g" %
          (sigma_to_t(SMAX), sigma_to_t(SMIN), sigma_to_t(1.0), t_to_sigma(500.5)))
    for name, fn in SCHEDULERS.items():
        s = fn(20)
        print("%-17s n=%d  %s" % (name, len(s), ", ".join("%.9g" % v for v in s)))
    for n in (7, 50, 200):
        print("ddim_uniform(%d): %d values; beta(%d): %d values" %
              (n, len(sch_ddim_uniform(n)), n, len(sch_beta(n))))
    print("beta(200):", ", ".join("%.9g" % v for v in sch_beta(200)[:6]), "...",
          ", ".join("%.9g" % v for v in sch_beta(200)[-4:]))
    print("linear_quadratic(1), kl_optimal(2):", sch_linear_quadratic(1), sch_kl_optimal(2))
    print("denoise 0.5: normal(40)[19:] %s; karras(40)[19:] %s" %
          (sch_normal(40)[19:22], sch_karras(40)[19:22]))
    print("dpm_2 karras 20:", discard_penultimate(sch_karras(21))[-3:])
    for sched in ("karras", "normal"):
        for name, fn in SAMPLERS.items():
            s = SCHEDULERS[sched](21 if name in ("dpm_2", "uni_pc", "uni_pc_bh2") else 20)
            if name in ("dpm_2", "uni_pc", "uni_pc_bh2"):
                s = discard_penultimate(s)
            x0 = math.sqrt(1 + s[0] ** 2)
            extra = ""
            if name.startswith("uni_pc"):
                extra = "  (ComfyUI float32 arithmetic: %.9f)" % uni_pc_comfy_f32(
                    s, x0, "bh2" if name.endswith("bh2") else "bh1")
            print("toy %-7s %-20s %.9f%s" % (sched, name, fn(s, x0), extra))
    for name, fn in STOCHASTIC.items():
        s = sch_karras(20)
        x0 = math.sqrt(1 + s[0] ** 2)
        print("toy karras seed 42 %-24s %.9f  seed 7 %.9f" %
              (name, fn(s, x0, noise_stream(42)), fn(s, x0, noise_stream(7))))
    # short schedules exercise the warm-up and final-order paths of uni_pc
    for n in (1, 2, 3, 4, 5):
        s = discard_penultimate(sch_karras(n + 1))
        x0 = math.sqrt(1 + s[0] ** 2)
        print("toy karras %d steps uni_pc %.9f bh2 %.9f (ComfyUI f32: %.9f %.9f)" %
              (n, uni_pc(s, x0), uni_pc(s, x0, "bh2"),
               uni_pc_comfy_f32(s, x0) if n > 1 else float("nan"),
               uni_pc_comfy_f32(s, x0, "bh2") if n > 1 else float("nan")))


if __name__ == "__main__":
    main()
