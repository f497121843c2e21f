"""PyTorch side of `make bench`: the benchmark models of bench-models.md, timed the way
`elbo bench` times them, printing the same one-line JSON.

usage: /usr/bin/python3 bench/bench_torch.py MODEL [--threads N] [--batch N] [--steps N]
                                             [--warmup N] [--seed N]
MODEL: vae-mlp | unet-s. Run one model per process so that peak_rss_mb is the model's own.

Timing, as in src/models/bench.c: the data are created once; each training step is zero
grads, forward loss, backward, Adam step (lr 1e-3); step_ms is the median over the timed
steps after warm-up; forward_ms the median of as many no-grad forwards (vae-mlp: the loss;
unet-s: the UNet's eps prediction); peak_rss_mb is ru_maxrss of the process.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import torch_models as tm  # noqa: E402

DEFAULTS = {"vae-mlp": (128, 20, 3), "unet-s": (64, 5, 2)}  # batch, steps, warm-up


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(DEFAULTS))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "0")) or os.cpu_count())
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=-1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    batch, steps, warmup = DEFAULTS[a.model]
    batch = a.batch or batch
    steps = a.steps or steps
    warmup = warmup if a.warmup < 0 else a.warmup
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)

    if a.model == "vae-mlp":
        model = tm.VaeMlp()
        x = torch.rand(batch, 784, generator=g)  # Bernoulli means in [0,1]
        eps = torch.empty(batch, model.z_dim)

        def loss_fn():
            torch.randn(eps.shape, generator=g, out=eps)
            return model.loss(x, eps)

        forward_fn = loss_fn
        flops = tm.vae_forward_flops(batch)
    else:
        p = tm.UnetParams()
        model = tm.UNet(p)
        alpha_bar = tm.ddpm_alpha_bar_linear(1000, 1e-4, 0.02)
        x0 = torch.rand(batch, 1, 28, 28, generator=g) * 2 - 1
        eps = torch.empty_like(x0)
        t = torch.empty(batch, dtype=torch.int64)

        def loss_fn():
            torch.randint(0, 1000, (batch,), generator=g, out=t)
            torch.randn(eps.shape, generator=g, out=eps)
            return tm.ddpm_eps_loss(model, x0, t, eps, alpha_bar)

        def forward_fn():
            return model(x0, t.float())

        flops = tm.unet_forward_flops(p, batch, 28, 28)

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = loss_fn()
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise SystemExit("bench_torch: loss is not finite")
        if i >= warmup:
            times.append(dt)
    step_ms = statistics.median(times) * 1e3
    ftimes = []
    with torch.no_grad():
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            forward_fn()
            dt = time.perf_counter() - t0
            if i >= warmup:
                ftimes.append(dt)
    forward_ms = statistics.median(ftimes) * 1e3
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"model": a.model, "batch": batch, "threads": a.threads,
                      "step_ms": round(step_ms, 2), "forward_ms": round(forward_ms, 2),
                      "gflops": round(3 * flops / (step_ms * 1e6), 1),
                      "peak_rss_mb": round(rss_mb, 1)}, separators=(", ", ":")))


if __name__ == "__main__":
    main()
