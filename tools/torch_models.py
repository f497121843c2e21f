"""PyTorch references of elbo's benchmark models (bench-models.md): VaeMlp and UNet (unet-s
by default), with state_dict names identical to elbo's paramset names, and their losses.

Used by tools/gen_model_fixtures.py (fixtures for tests/test_models.c) and by
bench/bench_torch.py. Run with Debian's /usr/bin/python3 (python3-torch 1.13).
"""
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- vae-mlp -------------------------------------------------------------------------
class VaeMlp(nn.Module):
    """Kingma & Welling VAE with a Bernoulli decoder.
    enc: Linear(x,h) ReLU Linear(h,h) ReLU Linear(h,2z) -> (mu, logvar)
    dec: Linear(z,h) ReLU Linear(h,h) ReLU Linear(h,x) -> logits
    Parameter names enc.0, enc.2, enc.4, dec.0, dec.2, dec.4 as in elbo."""

    def __init__(self, x_dim=784, hidden=512, z_dim=32):
        super().__init__()
        self.x_dim, self.hidden, self.z_dim = x_dim, hidden, z_dim
        self.enc = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 2 * z_dim))
        self.dec = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, x_dim))

    def loss(self, x, eps):
        """Negative ELBO per batch (SGVB estimator B, one sample):
        [sum BCE-with-logits(dec(z), x) + 0.5 sum(mu^2 + exp(logvar) - 1 - logvar)] / B,
        z = mu + exp(0.5 logvar) eps."""
        h = self.enc(x)
        mu, logvar = h[:, :self.z_dim], h[:, self.z_dim:]
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.dec(z)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * torch.sum(mu * mu + torch.exp(logvar) - 1.0 - logvar)
        return (rec + kl) / x.shape[0]


# ---- UNet ----------------------------------------------------------------------------
@dataclass
class UnetParams:
    """Mirror of elbo_unet_params; the defaults are unet-s. attn[l]: 0 none, 1 attention after
    each block of the down path of level l, 2 after each block of both paths."""
    in_channels: int = 1
    out_channels: int = 1
    channels: tuple = (32, 64, 64)
    blocks_per_level: int = 1
    attn: tuple = (0, 0, 1)
    temb_dim: int = 128
    groups: int = 8
    dropout: float = 0.0


def timestep_embedding(t, dim):
    """f_i = exp(-ln(10000) i / half), i = 0..half-1, emb = [sin(t f), cos(t f)]."""
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * f[None, :]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class ResBlock(nn.Module):
    """h = conv1(SiLU(norm1(x))) + temb_proj(temb)[:, :, None, None];
    h = conv2(dropout(SiLU(norm2(h)))); out = h + skip(x)."""

    def __init__(self, ci, co, temb_dim, groups, dropout=0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, ci, eps=1e-5)
        self.conv1 = nn.Conv2d(ci, co, 3, padding=1)
        self.temb_proj = nn.Linear(temb_dim, co)
        self.norm2 = nn.GroupNorm(groups, co, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(co, co, 3, padding=1)
        self.skip = nn.Conv2d(ci, co, 1) if ci != co else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.temb_proj(temb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + (self.skip(x) if self.skip is not None else x)


class Attention(nn.Module):
    """Single head over the H*W positions: q, k, v = split(qkv(norm(x))) each (B, C, HW);
    a = softmax over keys of q^T k / sqrt(C); out = x + proj(v a^T)."""

    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * c, hh * ww).split(c, dim=1)
        a = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(c), dim=2)  # (B, HWq, HWk)
        o = torch.bmm(v, a.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj(o)


class Level(nn.Module):
    def __init__(self):
        super().__init__()


class UNet(nn.Module):
    """DDPM-style UNet with one skip per level (elbo_unet). Names:
    temb.0, temb.2; conv_in; down.{l}.down (l > 0), down.{l}.res.{j}, down.{l}.attn.{j};
    mid.res; up.{l}.res.{j}, up.{l}.attn.{j}; norm_out; conv_out.
    Down level l: [stride-2 conv], blocks -> skip s_l (channels[l]).
    Up level l (top first): [upsample x2 if l < top], cat(u, s_l), blocks -> channels[l-1]
    (channels[0] at level 0)."""

    def __init__(self, p=None):
        super().__init__()
        p = p or UnetParams()
        self.p = p
        L, ch, nb, td, g = len(p.channels), p.channels, p.blocks_per_level, p.temb_dim, p.groups
        self.temb = nn.Sequential(nn.Linear(td, td), nn.SiLU(), nn.Linear(td, td))
        self.conv_in = nn.Conv2d(p.in_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        c = ch[0]
        for l in range(L):
            lv = Level()
            if l > 0:
                lv.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
            lv.res = nn.ModuleList()
            lv.attn = nn.ModuleList()
            for j in range(nb):
                lv.res.append(ResBlock(c if j == 0 else ch[l], ch[l], td, g, p.dropout))
                if p.attn[l]:
                    lv.attn.append(Attention(ch[l], g))
            c = ch[l]
            self.down.append(lv)
        self.mid = Level()
        self.mid.res = ResBlock(c, c, td, g, p.dropout)
        self.up = nn.ModuleList()
        ups = []
        for l in range(L - 1, -1, -1):
            co = ch[l - 1] if l > 0 else ch[0]
            lv = Level()
            lv.res = nn.ModuleList()
            lv.attn = nn.ModuleList()
            for j in range(nb):
                lv.res.append(ResBlock(c + ch[l] if j == 0 else co, co, td, g, p.dropout))
                if p.attn[l] == 2:
                    lv.attn.append(Attention(co, g))
            c = co
            ups.append(lv)
        for lv in reversed(ups):  # self.up[l] is level l
            self.up.append(lv)
        self.norm_out = nn.GroupNorm(g, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], p.out_channels, 3, padding=1)

    def forward(self, x, t):
        p, L = self.p, len(self.p.channels)
        temb = self.temb(timestep_embedding(t, p.temb_dim))
        h = self.conv_in(x)
        skips = []
        for l in range(L):
            lv = self.down[l]
            if l > 0:
                h = lv.down(h)
            for j in range(p.blocks_per_level):
                h = lv.res[j](h, temb)
                if p.attn[l]:
                    h = lv.attn[j](h)
            skips.append(h)
        u = self.mid.res(h, temb)
        for l in range(L - 1, -1, -1):
            lv = self.up[l]
            if l < L - 1:
                u = F.interpolate(u, scale_factor=2, mode="nearest")
            u = torch.cat([u, skips[l]], dim=1)
            for j in range(p.blocks_per_level):
                u = lv.res[j](u, temb)
                if p.attn[l] == 2:
                    u = lv.attn[j](u)
        return self.conv_out(F.silu(self.norm_out(u)))


UnetS = UNet


def ddpm_alpha_bar_linear(T=1000, beta_1=1e-4, beta_T=0.02):
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), betas linear from beta_1 to beta_T, in double,
    rounded to float32 (as elbo_ddpm_alpha_bar_linear)."""
    betas = np.linspace(beta_1, beta_T, T, dtype=np.float64)
    return torch.from_numpy(np.cumprod(1.0 - betas).astype(np.float32))


def ddpm_eps_loss(unet, x0, t, eps, alpha_bar):
    """L_simple = mean (eps - eps_hat(x_t, t))^2, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    (Ho et al. 2020, eq. 14); t integer steps, given to the network as floats."""
    ab = alpha_bar[t.long()]
    a = torch.sqrt(ab)[:, None, None, None]
    s = torch.sqrt(1.0 - ab)[:, None, None, None]
    x_t = a * x0 + s * eps
    return F.mse_loss(unet(x_t, t.float()), eps, reduction="mean")


# ---- deterministic hash initialisation (shared with tests/test_models.c) -------------------
M32 = 0xFFFFFFFF


def fnv1a32(s):
    h = 0x811C9DC5
    for b in s.encode():
        h = ((h ^ b) * 0x01000193) & M32
    return h


def fmix32(h):
    """MurmurHash3 finaliser."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def hash_values(name, shape):
    """Element i of parameter `name`: u = fmix32(fnv1a32(name) + i) >> 8 (24 bits),
    value = b (u 2^-23 - 1) in float32, b = 1/sqrt(fan_in) (ndim >= 2) or 0.1 (1-D);
    GroupNorm/LayerNorm weights get + 1."""
    n = int(np.prod(shape)) if len(shape) else 1
    seed = fnv1a32(name)
    idx = (np.arange(n, dtype=np.uint64) + np.uint64(seed)) & np.uint64(M32)
    h = idx.astype(np.uint32)
    # fmix32 vectorised in uint32 (wrapping multiply)
    h = h ^ (h >> np.uint32(16))
    h = (h.astype(np.uint64) * np.uint64(0x85EBCA6B) & np.uint64(M32)).astype(np.uint32)
    h = h ^ (h >> np.uint32(13))
    h = (h.astype(np.uint64) * np.uint64(0xC2B2AE35) & np.uint64(M32)).astype(np.uint32)
    h = h ^ (h >> np.uint32(16))
    u = (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -23) - np.float32(1.0)
    if len(shape) >= 2:
        b = np.float32(1.0 / math.sqrt(n // shape[0]))
    else:
        b = np.float32(0.1)
    v = (u * b).astype(np.float32)
    if is_norm_weight(name):
        v = (v + np.float32(1.0)).astype(np.float32)
    assert fmix32((seed + n - 1) & M32) == int(h[-1])  # vectorised == scalar reference
    return v.reshape(shape)


def is_norm_weight(name):
    parts = name.split(".")
    return parts[-1] == "weight" and len(parts) >= 2 and parts[-2].startswith("norm")


def hash_init_(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(hash_values(name, tuple(p.shape))))


# ---- FLOP counts (2 M N K per GEMM / conv; the same formulas as src/models/bench.c) ---------
def vae_forward_flops(batch, x_dim=784, hidden=512, z_dim=32):
    mm = x_dim * hidden + hidden * hidden + hidden * 2 * z_dim
    mm += z_dim * hidden + hidden * hidden + hidden * x_dim
    return 2.0 * batch * mm


def unet_forward_flops(p, batch, height, width):
    """GEMM-like FLOPs of one UNet forward: 2 B OH OW OC C K K per convolution, 2 B in out per
    linear, 2 B HW HW C for each of the two attention products. Elementwise work, norms and
    softmax are not counted."""
    ch, nb, td, L = p.channels, p.blocks_per_level, p.temb_dim, len(p.channels)
    f = 2.0 * batch * (td * td * 2)

    def conv(ci, co, k, hw):
        return 2.0 * batch * hw * co * ci * k * k

    def res(ci, co, hw):
        r = conv(ci, co, 3, hw) + conv(co, co, 3, hw) + 2.0 * batch * td * co
        return r + (conv(ci, co, 1, hw) if ci != co else 0.0)

    def attn(c, hw):
        return conv(c, 3 * c, 1, hw) + conv(c, c, 1, hw) + 2 * 2.0 * batch * hw * hw * c

    h, w = height, width
    f += conv(p.in_channels, ch[0], 3, h * w)
    c, sizes = ch[0], []
    for l in range(L):
        if l > 0:
            h, w = (h + 1) // 2, (w + 1) // 2
            f += conv(c, c, 3, h * w)
        for j in range(nb):
            f += res(c if j == 0 else ch[l], ch[l], h * w)
            if p.attn[l]:
                f += attn(ch[l], h * w)
        c = ch[l]
        sizes.append((h, w))
    f += res(c, c, h * w)
    for l in range(L - 1, -1, -1):
        h, w = sizes[l]
        co = ch[l - 1] if l > 0 else ch[0]
        for j in range(nb):
            f += res(c + ch[l] if j == 0 else co, co, h * w)
            if p.attn[l] == 2:
                f += attn(co, h * w)
        c = co
    f += conv(ch[0], p.out_channels, 3, height * width)
    return f


def count_params(module):
    return sum(p.numel() for p in module.parameters())


if __name__ == "__main__":
    v, u = VaeMlp(), UNet()
    print("vae-mlp params", count_params(v))
    print("unet-s params", count_params(u))
    print("vae-mlp forward GFLOP (batch 128)", vae_forward_flops(128) / 1e9)
    print("unet-s forward GFLOP (batch 64)", unet_forward_flops(UnetParams(), 64, 28, 28) / 1e9)
