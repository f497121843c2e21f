"""Model-level PyTorch fixtures for tests/test_models.c:
  tests/fixtures/model_vae_mlp.bin   vae-mlp, batch 4
  tests/fixtures/model_unet_s.bin    unet-s, batch 2 (DDPM loss, and forward + d/dx)
  tests/fixtures/model_unet_gen.bin  a small general UNet (2 blocks per level, attention in
                                     both paths, 3 levels), batch 2

No weights are stored: both sides set every parameter from the integer hash of
(parameter name, element index) in tools/torch_models.py (hash_values), which
tests/test_models.c reimplements bit for bit.

Entries per file: the inputs, the loss, the model outputs, and for every parameter
"g/<name>" = [sum, sum of squares, 16 sampled elements] of d loss / d parameter, the
samples at flat indices floor((2k + 1) numel / 32), k = 0..15.

usage: /usr/bin/python3 tools/gen_model_fixtures.py [OUTDIR]   (default tests/fixtures)
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402
from fixture_io import write_fixture  # noqa: E402


def grad_stats(module):
    out = []
    for name, p in module.named_parameters():
        g = p.grad.detach().double().reshape(-1)
        n = g.numel()
        idx = [((2 * k + 1) * n) // 32 for k in range(16)]
        v = [g.sum().item(), (g * g).sum().item()] + [g[i].item() for i in idx]
        out.append(("g/" + name, torch.tensor(v, dtype=torch.float32)))
    return out


def vae_fixture(path):
    gen = torch.Generator().manual_seed(1)
    m = tm.VaeMlp(784, 512, 32)
    tm.hash_init_(m)
    x = torch.rand(4, 784, generator=gen)
    eps = torch.randn(4, 32, generator=gen)
    m.zero_grad()
    loss = m.loss(x, eps)
    loss.backward()
    with torch.no_grad():
        h = m.enc(x)
        z = h[:, :32] + torch.exp(0.5 * h[:, 32:]) * eps
        logits = m.dec(z)
    e = [("x", x), ("eps", eps), ("loss", loss.detach().reshape(1)), ("enc_out", h),
         ("logits", logits)]
    write_fixture(path, e + grad_stats(m))


def unet_fixture(path, p, batch, hw, t_int, seed):
    gen = torch.Generator().manual_seed(seed)
    u = tm.UNet(p)
    tm.hash_init_(u)
    alpha_bar = tm.ddpm_alpha_bar_linear(1000, 1e-4, 0.02)
    x0 = torch.rand(batch, p.in_channels, hw, hw, generator=gen) * 2 - 1
    eps = torch.randn(batch, p.out_channels, hw, hw, generator=gen)
    t = torch.tensor(t_int, dtype=torch.int32)
    e = [("alpha_bar", alpha_bar), ("x0", x0), ("t", t)]
    if p.in_channels == p.out_channels:  # the DDPM loss needs eps in x's space
        u.zero_grad()
        loss = tm.ddpm_eps_loss(u, x0, t, eps, alpha_bar)
        loss.backward()
        e += [("eps", eps), ("loss", loss.detach().reshape(1))] + grad_stats(u)
    # forward on a given input and its vector-Jacobian product d sum(out * g) / dx
    x = (torch.randn(batch, p.in_channels, hw, hw, generator=gen)).requires_grad_(True)
    tf = torch.tensor([float(v) + 0.5 for v in t_int])  # non-integer times too
    out = u(x, tf)
    g = torch.randn(out.shape, generator=gen)
    u.zero_grad()
    (out * g).sum().backward()
    e += [("x", x.detach()), ("tf", tf), ("out", out.detach()), ("g", g), ("dx", x.grad)]
    if p.in_channels != p.out_channels:
        e += grad_stats(u)  # parameter gradients of sum(out * g)
    write_fixture(path, e)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    vae_fixture(os.path.join(outdir, "model_vae_mlp.bin"))
    unet_fixture(os.path.join(outdir, "model_unet_s.bin"), tm.UnetParams(), 2, 28, [37, 814], 2)
    gp = tm.UnetParams(in_channels=2, out_channels=3, channels=(8, 16, 16), blocks_per_level=2,
                       attn=(0, 2, 1), temb_dim=16, groups=4)
    unet_fixture(os.path.join(outdir, "model_unet_gen.bin"), gp, 2, 12, [5, 999], 3)


if __name__ == "__main__":
    main()
