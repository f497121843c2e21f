"""PyTorch references for the distributions module (include/elbo/prob.h, tests/test_prob.c).

Usage: /usr/bin/python3 tools/gen_fixtures_prob.py tests/fixtures

Writes three small files (format: tools/fixture_io.py):
  prob_special.bin  lgamma, digamma, trigamma (torch.polygamma(1, .)) at x, and
                    torch.special.gammainc at (a, x) pairs
  prob_dists.bin    per distribution <d>: its parameters <d>.<param>, a point <d>.x in the
                    support, <d>.log_prob = log_prob(x) and <d>.entropy (torch.distributions)
  prob_kl.bin       per closed-form pair <d>: parameters of p and q (<d>.p.<param>,
                    <d>.q.<param>) and <d>.kl = torch.distributions.kl_divergence(p, q)
Parameters and points are drawn in float32 (a fixed seed) with broadcasting shapes (a (3,1)
against a (4) parameter, batch (3,4)); the references are evaluated in float64 from those
exact values and rounded to float32, so the C tests measure elbo's float32 error alone.
torch 1.13 has no Logistic class (built here as the transformed Uniform that torch documents)
and no Logistic entropy or Cauchy KL; those are checked against Monte Carlo in the C tests.
"""
import os
import sys

import torch
import torch.distributions as D

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402


def f32(t):
    return t.to(torch.float32)


def ru(lo, hi, *shape):
    return torch.rand(*shape, dtype=torch.float32) * (hi - lo) + lo


def dd(t):
    return t.to(torch.float64)


def special(out):
    torch.manual_seed(1)
    x = torch.cat([ru(0.05, 1.0, 8), ru(1.0, 8.0, 8), ru(8.0, 60.0, 4),
                   torch.tensor([-0.5, -1.5, -2.3, -3.7], dtype=torch.float32)])
    xd = dd(x)
    a = torch.tensor([0.3, 0.3, 1.0, 2.5, 2.5, 7.0, 7.0, 30.0, 30.0, 0.8], dtype=torch.float64)
    ax = torch.tensor([0.05, 2.0, 1.3, 1.0, 6.0, 3.0, 12.0, 25.0, 40.0, 0.01],
                      dtype=torch.float64)
    write_fixture(os.path.join(out, "prob_special.bin"), [
        ("x", x),
        ("lgamma", f32(torch.lgamma(xd))),
        ("digamma", f32(torch.digamma(xd))),
        ("trigamma", f32(torch.polygamma(1, xd))),
        ("gammainc.a", f32(a)),
        ("gammainc.x", f32(ax)),
        ("gammainc", f32(torch.special.gammainc(a, ax))),
    ])


def logistic(loc, scale):
    return D.TransformedDistribution(
        D.Uniform(torch.zeros_like(loc), torch.ones_like(loc)),
        [D.SigmoidTransform().inv, D.AffineTransform(loc, scale)])


# name -> (constructor from float64 params, {param: (lo, hi, shape)})
DISTS = {
    "normal": (lambda p: D.Normal(p["loc"], p["scale"]),
               {"loc": (-2, 2, (3, 1)), "scale": (0.3, 3, (4,))}),
    "laplace": (lambda p: D.Laplace(p["loc"], p["scale"]),
                {"loc": (-2, 2, (3, 1)), "scale": (0.3, 3, (4,))}),
    "logistic": (lambda p: logistic(p["loc"], p["scale"]),
                 {"loc": (-2, 2, (3, 1)), "scale": (0.3, 3, (4,))}),
    "cauchy": (lambda p: D.Cauchy(p["loc"], p["scale"]),
               {"loc": (-2, 2, (3, 1)), "scale": (0.3, 3, (4,))}),
    "exponential": (lambda p: D.Exponential(p["rate"]), {"rate": (0.3, 3, (3, 4))}),
    "gumbel": (lambda p: D.Gumbel(p["loc"], p["scale"]),
               {"loc": (-2, 2, (3, 1)), "scale": (0.3, 3, (4,))}),
    "lognormal": (lambda p: D.LogNormal(p["loc"], p["scale"]),
                  {"loc": (-1, 1, (3, 1)), "scale": (0.2, 1.5, (4,))}),
    "gamma": (lambda p: D.Gamma(p["concentration"], p["rate"]),
              {"concentration": (0.3, 8, (3, 1)), "rate": (0.3, 3, (4,))}),
    "dirichlet": (lambda p: D.Dirichlet(p["concentration"]),
                  {"concentration": (0.3, 6, (3, 4))}),
}


def draw_params(spec):
    return {k: ru(lo, hi, *shape) for k, (lo, hi, shape) in spec.items()}


def dists(out):
    torch.manual_seed(2)
    entries = []
    for name, (make, spec) in DISTS.items():
        p = draw_params(spec)
        d64 = make({k: dd(v) for k, v in p.items()})
        # A point in the support: a float32 draw from the distribution itself (Dirichlet:
        # renormalised after the rounding, so it lies on the simplex in float32).
        x = f32(d64.sample())
        if name == "dirichlet":
            x = x / x.sum(-1, keepdim=True)
        for k, v in p.items():
            entries.append((f"{name}.{k}", v))
        entries.append((f"{name}.x", x))
        entries.append((f"{name}.log_prob", f32(d64.log_prob(dd(x)))))
        if name != "logistic":
            entries.append((f"{name}.entropy", f32(d64.entropy())))
    write_fixture(os.path.join(out, "prob_dists.bin"), entries)


def kls(out):
    torch.manual_seed(3)
    entries = []
    for name in ["normal", "laplace", "exponential", "gumbel", "lognormal", "gamma",
                 "dirichlet"]:
        make, spec = DISTS[name]
        p, q = draw_params(spec), draw_params(spec)
        kl = D.kl_divergence(make({k: dd(v) for k, v in p.items()}),
                             make({k: dd(v) for k, v in q.items()}))
        for k, v in p.items():
            entries.append((f"{name}.p.{k}", v))
        for k, v in q.items():
            entries.append((f"{name}.q.{k}", v))
        entries.append((f"{name}.kl", f32(kl)))
    write_fixture(os.path.join(out, "prob_kl.bin"), entries)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(out, exist_ok=True)
    special(out)
    dists(out)
    kls(out)


if __name__ == "__main__":
    main()
