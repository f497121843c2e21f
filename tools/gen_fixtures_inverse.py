"""PyTorch references for the operators, metrics and baselines of include/elbo/inverse.h
(read by tests/test_inverse_ops.c).

Usage: /usr/bin/python3 tools/gen_fixtures_inverse.py tests/fixtures   (or `make fixtures`)

Writes four small files (format: tools/fixture_io.py):
  inv_superres.bin  <case>.x and <case>.y = avg_pool2d(x, f) for f = 2 (x (2, 3, 8, 12)) and
                    f = 4 (x (1, 2, 12, 8)); <case>.args = [B, c, h, w, f]
  inv_deblur.bin    <case>.x, <case>.kernel (the normalised 1-D Gaussian of std sigma,
                    2 r + 1 taps) and <case>.y = conv2d(pad(x, r, mode="circular"),
                    outer(kernel, kernel)) per channel (groups = c); <case>.args = [B, c, h, w,
                    blur_radius (0: ceil(3 sigma))], <case>.sigma
  inv_ssim.bin      <case>.x, <case>.ref (in [0, 1]) and <case>.ssim: Wang et al.'s SSIM with
                    an 11 x 11 Gaussian window of std 1.5 (conv2d, valid region), K1 = 0.01,
                    K2 = 0.03, L = 1, population (not sample) covariance, the mean of the map
                    per channel averaged over channels (= skimage's structural_similarity with
                    gaussian_weights=True, use_sample_covariance=False, data_range=1)
  inv_bicubic.bin   <case>.y (B, c, 28/f, 28/f) and <case>.x = interpolate(y, scale_factor=f,
                    mode="bicubic", align_corners=False) for f = 2 and 4
Inputs are drawn in float32 (a fixed seed per file); references are evaluated in float64 from
those exact values and rounded to float32, so the C tests measure elbo's float32 error alone.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402


def f32(t):
    return t.to(torch.float32)


def i32(v):
    return torch.tensor(v, dtype=torch.int32)


def gauss1d(sigma, r):
    j = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * j * j / (sigma * sigma))
    return k / k.sum()


def superres(out):
    torch.manual_seed(11)
    e = []
    for name, shape, f in [("f2", (2, 3, 8, 12), 2), ("f4", (1, 2, 12, 8), 4)]:
        x = torch.randn(*shape, dtype=torch.float32)
        y = F.avg_pool2d(x.double(), f)
        e += [(name + ".x", x), (name + ".y", f32(y)), (name + ".args", i32(list(shape) + [f]))]
    write_fixture(os.path.join(out, "inv_superres.bin"), e)


def deblur(out):
    torch.manual_seed(12)
    e = []
    # (name, shape, sigma, blur_radius given to the operator, radius in use)
    for name, shape, sigma, br in [("s12", (2, 2, 10, 9), 1.2, 0),
                                   ("s08r2", (1, 3, 7, 11), 0.8, 2)]:
        r = br if br > 0 else math.ceil(3 * sigma)
        x = torch.randn(*shape, dtype=torch.float32)
        k1 = gauss1d(sigma, r)
        c = shape[1]
        k2 = torch.outer(k1, k1).expand(c, 1, 2 * r + 1, 2 * r + 1)
        y = F.conv2d(F.pad(x.double(), (r, r, r, r), mode="circular"), k2, groups=c)
        e += [(name + ".x", x), (name + ".kernel", f32(k1)), (name + ".y", f32(y)),
              (name + ".args", i32(list(shape) + [br])), (name + ".sigma", torch.tensor([sigma]))]
    write_fixture(os.path.join(out, "inv_deblur.bin"), e)


def ssim_ref(x, ref):
    """x, ref (c, h, w) float64 in [0, 1] -> SSIM (float64 scalar)."""
    k1 = gauss1d(1.5, 5)
    win = torch.outer(k1, k1)[None, None]
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for ch in range(x.shape[0]):
        a, b = x[ch][None, None], ref[ch][None, None]

        def filt(t):
            return F.conv2d(t, win)  # valid region (no padding)
        mx, my = filt(a), filt(b)
        vx = filt(a * a) - mx * mx
        vy = filt(b * b) - my * my
        cxy = filt(a * b) - mx * my
        s = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
        vals.append(s.mean())
    return torch.stack(vals).mean()


def ssim(out):
    torch.manual_seed(13)
    e = []
    # a smooth image with mild noise (SSIM near 0.8) and an unrelated pair (near 0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 14), torch.linspace(0, 1, 16), indexing="ij")
    base = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 3 * yy * k) * torch.cos(4 * yy)
                        for k in (1, 3)]).to(torch.float32)
    noisy = (base + 0.08 * torch.randn(2, 14, 16)).clamp(0, 1).to(torch.float32)
    u1 = torch.rand(1, 13, 12, dtype=torch.float32)
    u2 = torch.rand(1, 13, 12, dtype=torch.float32)
    for name, x, ref in [("two", noisy, base), ("rand", u1, u2)]:
        e += [(name + ".x", x), (name + ".ref", ref),
              (name + ".ssim", torch.tensor([ssim_ref(x.double(), ref.double()).item()],
                                            dtype=torch.float64))]
    write_fixture(os.path.join(out, "inv_ssim.bin"), e)


def bicubic(out):
    torch.manual_seed(14)
    e = []
    for name, f in [("f2", 2), ("f4", 4)]:
        y = torch.rand(1, 1, 28 // f, 28 // f, dtype=torch.float32)
        x = F.interpolate(y.double(), scale_factor=f, mode="bicubic", align_corners=False)
        e += [(name + ".y", y), (name + ".x", f32(x))]
    write_fixture(os.path.join(out, "inv_bicubic.bin"), e)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(out, exist_ok=True)
    superres(out)
    deblur(out)
    ssim(out)
    bicubic(out)


if __name__ == "__main__":
    main()
