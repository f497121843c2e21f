"""PyTorch reference fixtures for every op of include/elbo/ops.h (read by tests/test_torch_ops.c).

Usage: /usr/bin/python3 tools/gen_fixtures.py tests/fixtures   (or `make fixtures`)

One file per case, tests/fixtures/op_<case>.bin (format: tools/fixture_io.py), holding
  the inputs (float32; int32 for ids/labels/axes), "args" (int32) / "fargs" (float32) for small
  op parameters, the output "y", a random upstream gradient "gy" of y's shape, and
  "grad_<input>" = d<y, gy>/d input (torch.autograd.grad(y, inputs, gy)) for every
  differentiable input.
Inputs are drawn in float32 (torch.manual_seed per case, from the case name) and the reference
is evaluated in float64 from those exact values, then rounded to float32: the C tests measure
the float32 error of elbo's kernels alone, not the sum of elbo's and PyTorch's float32 errors.
Dropout is random and has no fixture.
"""
import math
import os
import sys
import zlib

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

CASES = []  # (name, builder)


def case(name):
    def reg(fn):
        CASES.append((name, fn))
        return fn
    return reg


# ---- input helpers (float32 draws) -----------------------------------------------------
def rn(*shape, std=1.0):
    return torch.randn(*shape, dtype=torch.float32) * std


def ru(lo, hi, *shape):
    return torch.rand(*shape, dtype=torch.float32) * (hi - lo) + lo


def away(x, points, d=0.05):
    """Moves values within d of any kink in `points` out to distance d..2d (same side)."""
    x = x.clone()
    for p in points:
        r = x - p
        near = r.abs() < d
        side = torch.where(r >= 0, torch.ones_like(r), -torch.ones_like(r))
        x = torch.where(near, p + side * (d + r.abs()), x)
    return x


def i32(v):
    return torch.tensor(v, dtype=torch.int32)


def f32(v):
    return torch.tensor(v, dtype=torch.float32)


# A builder returns (inputs, fn, extra):
#   inputs: list of (name, float32 tensor, differentiable)
#   fn(*float64 tensors) -> y (float64)
#   extra: dict of further entries (ids, labels, args, fargs)

# ---- linear algebra --------------------------------------------------------------------
def mm_case(name, M, K, N, ta, tb):
    @case(name)
    def _():
        a = rn(K, M) if ta else rn(M, K)
        b = rn(N, K) if tb else rn(K, N)
        b = b / math.sqrt(K)

        def f(a, b):
            return (a.T if ta else a) @ (b.T if tb else b)
        return [("a", a, 1), ("b", b, 1)], f, {"args": i32([ta, tb])}


mm_case("matmul", 5, 7, 4, 0, 0)
mm_case("matmul_ta", 5, 7, 4, 1, 0)
mm_case("matmul_tb", 5, 7, 4, 0, 1)
mm_case("matmul_tatb", 5, 7, 4, 1, 1)
mm_case("matmul_k256", 3, 256, 5, 0, 0)


def bmm_case(name, B, M, K, N, ta, tb):
    @case(name)
    def _():
        a = rn(B, K, M) if ta else rn(B, M, K)
        b = (rn(B, N, K) if tb else rn(B, K, N)) / math.sqrt(K)

        def f(a, b):
            return torch.bmm(a.transpose(1, 2) if ta else a, b.transpose(1, 2) if tb else b)
        return [("a", a, 1), ("b", b, 1)], f, {"args": i32([ta, tb])}


bmm_case("bmm", 2, 3, 5, 4, 0, 0)
bmm_case("bmm_ta", 2, 3, 5, 4, 1, 0)
bmm_case("bmm_tb", 2, 3, 5, 4, 0, 1)
bmm_case("bmm_tatb", 3, 4, 6, 2, 1, 1)


@case("linear_3d")
def _():
    x, w, b = rn(2, 3, 5), rn(4, 5) / math.sqrt(5), rn(4)
    return [("x", x, 1), ("w", w, 1), ("b", b, 1)], F.linear, {}


@case("linear_nobias")
def _():
    x, w = rn(2, 3, 6), rn(5, 6) / math.sqrt(6)
    return [("x", x, 1), ("w", w, 1)], lambda x, w: F.linear(x, w), {}


# ---- convolution and resampling --------------------------------------------------------
def conv_case(name, xs, ws, stride, pad, bias=True):
    """stride, pad: (h, w); args = [stride_h, stride_w, pad_h, pad_w]."""
    @case(name)
    def _():
        x = rn(*xs)
        w = rn(*ws) / math.sqrt(ws[1] * ws[2] * ws[3])
        ins = [("x", x, 1), ("w", w, 1)]
        if bias:
            ins.append(("b", rn(ws[0]), 1))

        def f(x, w, b=None):
            return F.conv2d(x, w, b, stride=stride, padding=pad)
        return ins, f, {"args": i32([stride[0], stride[1], pad[0], pad[1]])}


conv_case("conv2d_k3s1p1", (2, 3, 6, 6), (4, 3, 3, 3), (1, 1), (1, 1))
conv_case("conv2d_k3s2p1", (2, 3, 7, 7), (4, 3, 3, 3), (2, 2), (1, 1))
conv_case("conv2d_k1", (2, 5, 4, 4), (3, 5, 1, 1), (1, 1), (0, 0), bias=False)
conv_case("conv2d_k5p2", (2, 3, 5, 8), (6, 3, 5, 5), (1, 1), (2, 2))
conv_case("conv2d_k16c16", (1, 16, 4, 4), (8, 16, 3, 3), (1, 1), (1, 1))  # K = 144
conv_case("conv2d_ex", (2, 3, 6, 7), (4, 3, 3, 2), (1, 2), (0, 1))  # conv2d_ex: non-square
# Shapes that reach elbo's other conv paths: several batch chunks of uneven size (P = 128
# output pixels: chunks of 1,1,1,2 images), the same with dX as a transposed convolution
# (stride 1, OC <= C), and a 1x1 convolution run as one GEMM per image (P >= 256).
conv_case("conv2d_chunks", (5, 1, 8, 16), (2, 1, 3, 3), (1, 1), (1, 1))
conv_case("conv2d_chunks_tdx", (5, 2, 8, 16), (1, 2, 3, 3), (1, 1), (1, 1))
conv_case("conv2d_k1_direct", (2, 2, 16, 16), (2, 2, 1, 1), (1, 1), (0, 0))


@case("upsample2x")
def _():
    return [("x", rn(2, 3, 3, 4), 1)], \
        lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), {}


def pool_case(name, xs, k, s):
    @case(name)
    def _():
        return [("x", rn(*xs), 1)], lambda x: F.avg_pool2d(x, k, s), {"args": i32([k, s])}


pool_case("avg_pool_k2s2", (2, 3, 6, 6), 2, 2)
pool_case("avg_pool_k3s1", (2, 2, 5, 6), 3, 1)
pool_case("avg_pool_k2s2_odd", (1, 2, 5, 7), 2, 2)  # the last row/column is dropped


# ---- normalisation ---------------------------------------------------------------------
def gn_case(name, xs, G, affine, silu=False):
    @case(name)
    def _():
        x = rn(*xs) * 1.5 + 0.3
        ins = [("x", x, 1)]
        if affine:
            ins += [("gamma", 1 + 0.3 * rn(xs[1]), 1), ("beta", 0.2 * rn(xs[1]), 1)]

        def f(x, g=None, b=None):
            y = F.group_norm(x, G, g, b, 1e-5)
            return F.silu(y) if silu else y
        return ins, f, {"args": i32([G]), "fargs": f32([1e-5])}


gn_case("group_norm_g2", (2, 4, 3, 3), 2, True)
gn_case("group_norm_g4", (2, 8, 2, 3), 4, True)
gn_case("group_norm_3d_noaffine", (3, 6, 5), 3, False)
# elbo_group_norm_silu: F.silu(F.group_norm(...))
gn_case("group_norm_silu_g2", (2, 4, 3, 3), 2, True, silu=True)
gn_case("group_norm_silu_3d_noaffine", (3, 6, 5), 3, False, silu=True)


@case("layer_norm")
def _():
    x = rn(2, 3, 8) * 2 - 0.5
    g, b = 1 + 0.3 * rn(8), 0.2 * rn(8)
    return [("x", x, 1), ("gamma", g, 1), ("beta", b, 1)], \
        lambda x, g, b: F.layer_norm(x, (8,), g, b, 1e-5), {"fargs": f32([1e-5])}


@case("layer_norm_noaffine")
def _():
    return [("x", rn(5, 6), 1)], lambda x: F.layer_norm(x, (6,), None, None, 1e-5), \
        {"fargs": f32([1e-5])}


# ---- indexing and shape ----------------------------------------------------------------
@case("embedding")
def _():
    ids = [1, 3, 1, 5, 0, 3, 3]
    return [("weight", rn(6, 4), 1)], \
        lambda w: F.embedding(torch.tensor(ids, dtype=torch.int64), w), {"ids": i32(ids)}


@case("concat")
def _():
    return [("x0", rn(2, 1, 3), 1), ("x1", rn(2, 3, 3), 1), ("x2", rn(2, 2, 3), 1)], \
        lambda a, b, c: torch.cat([a, b, c], 1), {"args": i32([1])}


@case("cat2")
def _():
    return [("a", rn(3, 2), 1), ("b", rn(3, 4), 1)], lambda a, b: torch.cat([a, b], -1), \
        {"args": i32([-1])}


@case("slice")
def _():
    return [("x", rn(2, 5, 3), 1)], lambda x: x[:, 1:4], {"args": i32([1, 1, 3])}


@case("split")
def _():
    # parts of sizes 1, 2, 3 along axis 1, concatenated back as (p2, p0, p1)
    def f(x):
        p = torch.split(x, [1, 2, 3], 1)
        return torch.cat([p[2], p[0], p[1]], 1)
    return [("x", rn(4, 6), 1)], f, {"args": i32([1, 2, 3])}


@case("reshape")
def _():
    return [("x", rn(2, 3, 4), 1)], lambda x: x.reshape(6, -1), {"args": i32([6, -1])}


@case("permute")
def _():
    perm = [2, 0, 3, 1]
    return [("x", rn(2, 3, 4, 5), 1)], lambda x: x.permute(*perm), {"perm": i32(perm)}


@case("transpose")
def _():
    return [("x", rn(2, 3, 4), 1)], lambda x: x.transpose(0, 2), {"args": i32([0, 2])}


@case("transpose_neg")
def _():
    return [("x", rn(3, 2, 4, 2), 1)], lambda x: x.transpose(-1, 1), {"args": i32([-1, 1])}


@case("where")
def _():
    mask = (torch.rand(3, 1) < 0.5).float()
    mask[0, 0], mask[1, 0] = 1.0, 0.0  # both branches taken
    return [("mask", mask, 0), ("a", rn(2, 3, 4), 1), ("b", rn(1, 4), 1)], \
        lambda m, a, b: torch.where(m != 0, a, b), {}


# ---- arithmetic (broadcasting) ---------------------------------------------------------
BINOPS = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
BSHAPES = {"b1": ((2, 3, 4), (4,)), "b2": ((2, 3, 4), (3, 1)), "b3": ((2, 1, 4), (1, 3, 1)),
           "same": ((3, 4), (3, 4)), "rev": ((4,), (2, 3, 4))}


def bin_case(op, tag):
    @case(f"{op}_{tag}")
    def _():
        sa, sb = BSHAPES[tag]
        a = rn(*sa)
        if op == "div":  # denominators in +-[0.5, 2]
            b = ru(0.5, 2.0, *sb) * torch.where(torch.rand(*sb) < 0.5, -1.0, 1.0)
        else:
            b = rn(*sb)
        return [("a", a, 1), ("b", b, 1)], BINOPS[op], {}


for _op in BINOPS:
    for _tag in ("b1", "b2", "b3"):
        bin_case(_op, _tag)
bin_case("add", "same")
bin_case("mul", "same")
bin_case("sub", "rev")
bin_case("div", "rev")


def scalar_case(name, f, fargs, x=None):
    @case(name)
    def _():
        xx = rn(3, 5) if x is None else x()
        return [("x", xx, 1)], f, {"fargs": f32(fargs)}


scalar_case("scale", lambda x: x * -1.5, [-1.5])
scalar_case("add_scalar", lambda x: x + 0.7, [0.7])
scalar_case("affine", lambda x: x * 2.5 - 0.3, [2.5, -0.3])
scalar_case("neg", lambda x: -x, [])
scalar_case("pow_scalar", lambda x: x ** 2.5, [2.5], lambda: ru(0.2, 3.0, 3, 5))
scalar_case("pow_scalar_int", lambda x: x ** 3.0, [3.0])  # negative bases allowed
scalar_case("pow_scalar_neg", lambda x: x ** -0.5, [-0.5], lambda: ru(0.2, 3.0, 3, 5))


def unary_case(name, f, x, fargs=None):
    @case(name)
    def _():
        ex = {} if fargs is None else {"fargs": f32(fargs)}
        return [("x", x(), 1)], f, ex


# values spanning the saturating ranges of the activations
def wide():
    x = rn(4, 6) * 2.0
    x[0, :6] = f32([-30.0, -12.0, -6.0, 6.0, 12.0, 30.0])
    return away(x, [0.0])


unary_case("exp", torch.exp, lambda: ru(-4.0, 4.0, 3, 5))
unary_case("log", torch.log, lambda: ru(0.05, 5.0, 3, 5))
unary_case("sqrt", torch.sqrt, lambda: ru(0.05, 5.0, 3, 5))
unary_case("square", torch.square, lambda: rn(3, 5))
unary_case("abs", torch.abs, lambda: away(rn(3, 5), [0.0]))
unary_case("clamp", lambda x: torch.clamp(x, -0.5, 0.8),
           lambda: away(ru(-1.5, 1.5, 4, 5), [-0.5, 0.8]), [-0.5, 0.8])
unary_case("relu", F.relu, lambda: away(rn(3, 5), [0.0]))
unary_case("silu", F.silu, wide)
unary_case("gelu", lambda x: F.gelu(x), wide)
unary_case("sigmoid", torch.sigmoid, wide)
unary_case("tanh", torch.tanh, wide)
unary_case("sin", torch.sin, lambda: ru(-8.0, 8.0, 3, 5))
unary_case("cos", torch.cos, lambda: ru(-8.0, 8.0, 3, 5))


def softplus_x():
    x = rn(4, 6) * 3.0
    x[0, :6] = f32([-40.0, -25.0, 19.5, 20.5, 25.0, 40.0])  # threshold 20: identity above
    return x


unary_case("softplus", F.softplus, softplus_x)
unary_case("elu", lambda x: F.elu(x, 1.0), lambda: away(rn(3, 5) * 2, [0.0]), [1.0])
unary_case("elu_alpha", lambda x: F.elu(x, 0.5), lambda: away(rn(3, 5) * 2, [0.0]), [0.5])


# ---- reductions ------------------------------------------------------------------------
@case("sum")
def _():
    return [("x", rn(3, 4, 5), 1)], torch.sum, {}


@case("mean")
def _():
    return [("x", rn(3, 4, 5), 1)], torch.mean, {}


def axes_case(name, red, axes, keep, shape=(2, 3, 4, 5)):
    """args = [keepdim, axes...]."""
    @case(name)
    def _():
        fn = torch.sum if red == "sum" else torch.mean
        return [("x", rn(*shape), 1)], lambda x: fn(x, dim=tuple(axes), keepdim=bool(keep)), \
            {"args": i32([keep] + list(axes))}


axes_case("sum_axes_keep", "sum", [0, 2], 1)
axes_case("sum_axes", "sum", [1, -1], 0)
axes_case("sum_axis", "sum", [1], 0, (3, 4, 5))
axes_case("sum_axis_keep", "sum", [-1], 1, (3, 4, 5))
axes_case("mean_axes", "mean", [0, 3], 0)
axes_case("mean_axis", "mean", [1], 0, (3, 4, 5))
axes_case("mean_axis_keep", "mean", [-1], 1, (3, 4, 5))


def sm_case(name, fn, axis, shape):
    @case(name)
    def _():
        x = rn(*shape) * 2
        x.view(-1)[0] = 40.0  # large values: needs the max subtraction
        return [("x", x, 1)], lambda x: fn(x, axis), {"args": i32([axis])}


sm_case("softmax_last", torch.softmax, -1, (3, 2, 5))
sm_case("softmax_axis1", torch.softmax, 1, (2, 4, 3))
sm_case("log_softmax_last", torch.log_softmax, -1, (3, 2, 5))
sm_case("log_softmax_axis1", torch.log_softmax, 1, (2, 4, 3))


def lse_case(name, axis, keep, shape):
    @case(name)
    def _():
        x = rn(*shape) * 2
        x.view(-1)[1] = 50.0
        return [("x", x, 1)], lambda x: torch.logsumexp(x, axis, keepdim=bool(keep)), \
            {"args": i32([axis, keep])}


lse_case("logsumexp_last", -1, 0, (3, 2, 5))
lse_case("logsumexp_axis1_keep", 1, 1, (2, 4, 3))

# ---- losses and log-likelihoods --------------------------------------------------------
RED = {"mean": 0, "sum": 1, "none": 2}


def loss_case(name, red, build):
    @case(name)
    def _():
        ins, f, ex = build(red)
        ex = dict(ex)
        ex["args"] = i32([RED[red]] + list(ex.pop("args", [])))
        return ins, f, ex


for _r in ("mean", "sum", "none"):
    loss_case(f"mse_{_r}", _r, lambda r: (
        [("pred", rn(3, 5), 1), ("target", rn(3, 5), 1)],
        lambda p, t: F.mse_loss(p, t, reduction=r), {}))

for _r in ("mean", "none"):
    loss_case(f"bce_logits_{_r}", _r, lambda r: (
        [("logits", rn(4, 5) * 3, 1), ("target", torch.rand(4, 5), 1)],
        lambda l, t: F.binary_cross_entropy_with_logits(l, t, reduction=r), {}))

for _r in ("mean", "sum", "none"):
    def _ce(r):
        labels = torch.randint(0, 7, (5,))
        return ([("logits", rn(5, 7) * 2, 1)],
                lambda l: F.cross_entropy(l, labels.long(), reduction=r),
                {"labels": labels.to(torch.int32)})
    loss_case(f"cross_entropy_{_r}", _r, _ce)


def reduce_ll(ll, r):
    return ll.mean() if r == "mean" else ll.sum() if r == "sum" else ll


def gauss_ll(x, mean, log_var):
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 / torch.exp(log_var))


for _r in ("mean", "sum", "none"):
    loss_case(f"gaussian_ll_{_r}", _r, lambda r: (
        [("x", rn(2, 3, 4), 1), ("mean", rn(2, 3, 4), 1), ("log_var", ru(-1.5, 1.5, 3, 1), 1)],
        lambda x, m, lv: reduce_ll(gauss_ll(x, m, lv), r), {}))


def dlogistic_ll(x, mean, log_scale, n_bins=256):
    """PixelCNN++ (Salimans et al. 2017) single-component discretized logistic, as in ops.h:
    bin half-width 1/(n_bins-1); edge bins open at x = -1 and x = 1; where the bin probability
    is below 1e-5, log pdf at the centre + log bin width (2/(n_bins-1))."""
    half = 1.0 / (n_bins - 1)
    centered = x - mean
    inv_s = torch.exp(-log_scale)
    plus_in = inv_s * (centered + half)
    min_in = inv_s * (centered - half)
    cdf_plus, cdf_min = torch.sigmoid(plus_in), torch.sigmoid(min_in)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigma(plus_in), for x = -1
    log_one_minus_cdf_min = -F.softplus(min_in)  # log (1 - sigma(min_in)), for x = 1
    cdf_delta = cdf_plus - cdf_min
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in)
    inner = torch.where(cdf_delta > 1e-5, torch.log(torch.clamp(cdf_delta, min=1e-12)),
                        log_pdf_mid - math.log((n_bins - 1) / 2.0))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min,
                                                             inner))


def dll_inputs(shape_ls):
    # x on the 256-level grid, with both edges; mean near x (|x - mean| <= 2.5 s) so that
    # every interior bin has probability >= ~5e-3, except the tail cases set below
    n = 4 * 8
    k = torch.randint(0, 256, (n,))
    k[0], k[1], k[2], k[3] = 0, 255, 0, 255
    x = (k.float() / 127.5 - 1.0).reshape(4, 8)
    ls = ru(-3.5, -2.0, *shape_ls)
    s = torch.exp(ls).expand(4, 8)
    mean = x + ru(-2.5, 2.5, 4, 8) * s
    mean = mean.clone()
    return x, mean, ls


def dll_build(r):
    x, mean, ls = dll_inputs((4, 8))
    # tails where the bin probability underflows (< 1e-5): x far below / above the mean
    ls[1, 0], mean[1, 0] = -5.0, x[1, 0] + 0.3
    ls[1, 1], mean[1, 1] = -5.0, x[1, 1] - 0.3
    # edge bins with the mean far inside and far outside
    mean[0, 0], mean[0, 1] = 0.5, 0.9  # x = -1 (mean far above), x = 1 (mean below)
    return ([("x", x, 0), ("mean", mean, 1), ("log_scale", ls, 1)],
            lambda x, m, lsc: reduce_ll(dlogistic_ll(x, m, lsc), r), {"args": [256]})


def dll_build_bcast(r):
    x, mean, ls = dll_inputs((1, 8))  # log_scale broadcast over rows
    return ([("x", x, 0), ("mean", mean, 1), ("log_scale", ls, 1)],
            lambda x, m, lsc: reduce_ll(dlogistic_ll(x, m, lsc), r), {"args": [256]})


loss_case("dlogistic_ll_none", "none", dll_build)
loss_case("dlogistic_ll_sum", "sum", dll_build)
loss_case("dlogistic_ll_mean_bcast", "mean", dll_build_bcast)


# ---- driver ----------------------------------------------------------------------------
def run_case(name, build):
    torch.manual_seed(zlib.crc32(name.encode()))
    ins, fn, extra = build()
    xs = [t.detach().to(torch.float64).requires_grad_(bool(d)) for _, t, d in ins]
    y = fn(*xs)
    gy = torch.randn(y.shape, dtype=torch.float32)
    diff = [(n, x) for (n, _, d), x in zip(ins, xs) if d]
    grads = torch.autograd.grad(y, [x for _, x in diff], gy.to(torch.float64))
    entries = [(n, t) for n, t, _ in ins]
    entries += [(k, v) for k, v in extra.items()]
    entries += [("y", y.detach().float()), ("gy", gy)]
    entries += [("grad_" + n, g.float()) for (n, _), g in zip(diff, grads)]
    for n, t in entries:
        t = torch.as_tensor(t)
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise SystemExit(f"{name}: entry {n} is not finite")
    return entries


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(out, exist_ok=True)
    names = [n for n, _ in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    total = 0
    for name, build in CASES:
        path = os.path.join(out, f"op_{name}.bin")
        write_fixture(path, run_case(name, build))
        total += os.path.getsize(path)
    print(f"{len(CASES)} fixtures, {total} bytes in {out}")


if __name__ == "__main__":
    main()
