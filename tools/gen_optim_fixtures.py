"""PyTorch 1.13 references for elbo's optimisers and gradient clipping (tests/test_optim.c).

Usage: /usr/bin/python3 tools/gen_optim_fixtures.py [outdir]   (default tests/fixtures)

optim_<case>.bin, one per optimiser configuration: a parameter vector of N = 37 values takes
S = 6 steps with given gradients (gradient magnitudes from 1e-7 to 1e2, so that Adam's eps
and large steps are both exercised) and a different learning rate at each step:
  p0 (N), grads (S, N), lrs (S), hyper (8: beta1, beta2, eps, weight_decay, momentum,
  dampening, nesterov, kind 0 Adam / 1 AdamW / 2 SGD), params (S, N) the parameter after
  each step, state0 (N) exp_avg or momentum_buffer and state1 (N) exp_avg_sq after the last
  step (state1 absent for SGD).
optim_clip.bin: torch.nn.utils.clip_grad_norm_ over three tensors of shapes (4, 5), (7),
(2, 3, 2): g<i> the gradients in, max_norm (2) = [1, 100] (clips / does not clip), norm (2)
the returned norms, and clip<k>_g<i> the gradients after clipping with max_norm[k].
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

N, S = 37, 6

CASES = [
    # name, kind, constructor, kwargs
    ("adam", 0, torch.optim.Adam, dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    ("adam_wd", 0, torch.optim.Adam, dict(betas=(0.8, 0.99), eps=1e-8, weight_decay=0.1)),
    ("adamw", 1, torch.optim.AdamW, dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)),
    ("sgd_momentum", 2, torch.optim.SGD, dict(momentum=0.9, dampening=0.1, weight_decay=0.0)),
    ("sgd_nesterov_wd", 2, torch.optim.SGD,
     dict(momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True)),
]


def grad_scales():
    levels = torch.tensor([1e-7, 1e-3, 1.0, 100.0])
    return levels[torch.arange(N) % 4]


def run_case(name, kind, ctor, kw, gen, outdir):
    p0 = torch.randn(N, generator=gen)
    grads = torch.randn(S, N, generator=gen) * grad_scales()
    base = 0.05 if kind != 2 else 0.02
    lr_list = [round(base * (1.0 + 0.25 * k), 6) for k in range(S)]
    lrs = torch.tensor(lr_list)
    p = torch.nn.Parameter(p0.clone())
    opt = ctor([p], lr=lr_list[0], **kw)
    params = torch.empty(S, N)
    for k in range(S):
        for g in opt.param_groups:
            g["lr"] = lr_list[k]  # a short decimal, as elbo's optim.c reads its float lr
        p.grad = grads[k].clone()
        opt.step()
        params[k] = p.detach()
    st = opt.state[p]
    betas = kw.get("betas", (0.9, 0.999))
    hyper = torch.tensor([betas[0], betas[1], kw.get("eps", 1e-8), kw.get("weight_decay", 0.0),
                          kw.get("momentum", 0.0), kw.get("dampening", 0.0),
                          float(kw.get("nesterov", False)), float(kind)])
    e = {"p0": p0, "grads": grads, "lrs": lrs, "hyper": hyper, "params": params}
    if kind == 2:
        e["state0"] = st["momentum_buffer"]
    else:
        e["state0"] = st["exp_avg"]
        e["state1"] = st["exp_avg_sq"]
    write_fixture(os.path.join(outdir, "optim_%s.bin" % name), e)


def clip_case(gen, outdir):
    shapes = [(4, 5), (7,), (2, 3, 2)]
    g_in = [torch.randn(*s, generator=gen) for s in shapes]
    e = {"g%d" % i: g for i, g in enumerate(g_in)}
    max_norms = [1.0, 100.0]
    norms = []
    for k, mn in enumerate(max_norms):
        ps = [torch.nn.Parameter(torch.zeros(*s)) for s in shapes]
        for p, g in zip(ps, g_in):
            p.grad = g.clone()
        norms.append(float(torch.nn.utils.clip_grad_norm_(ps, mn)))
        for i, p in enumerate(ps):
            e["clip%d_g%d" % (k, i)] = p.grad
    e["max_norm"] = torch.tensor(max_norms)
    e["norm"] = torch.tensor(norms)
    write_fixture(os.path.join(outdir, "optim_clip.bin"), e)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20240611)
    for name, kind, ctor, kw in CASES:
        run_case(name, kind, ctor, kw, gen, outdir)
    clip_case(gen, outdir)


if __name__ == "__main__":
    main()
