#!/usr/bin/env bash
# Sample quality against sampler steps on a 2-D toy: trains a diffusion model on
# toy:8gaussians (or $TOY), then for each sampler and number of steps draws 2000 points and
# prints MMD^2 against 2000 test points (Gaussian kernel, width 0.5) as a markdown table.
#   bash tools/toy_sampler_sweep.sh [ELBO] [OUT]
set -eu
ELBO=${1:-build/elbo}
OUT=${2:-runs/toy8}
TOY=${TOY:-8gaussians}
if [ ! -f "$OUT/ckpt.safetensors" ]; then
    "$ELBO" train diffusion --data "toy:$TOY" --steps 10000 --batch 256 --lr 1e-3 --cosine \
        --log-snr-min -10 --log-snr-max 10 --loss simple --hidden 256 --threads 1 --out "$OUT" \
        --log-every 5000 >&2
fi
echo "| sampler | 2 | 5 | 10 | 20 | 50 | 100 | 200 steps |"
echo "|---|---|---|---|---|---|---|---|"
for s in ancestral ddim heun; do
    row="| $s"
    for k in 2 5 10 20 50 100 200; do
        j=$("$ELBO" sample "$OUT/ckpt.safetensors" --sampler "$s" --steps "$k" --n 2000 --seed 1 \
            --data "toy:$TOY" --threads 1 --out "$OUT/$s-$k.npy" 2>/dev/null)
        m=$(printf '%s\n' "$j" | sed 's/.*"mmd2":\([^,]*\),.*/\1/')
        row="$row | $m"
    done
    echo "$row |"
done
"$ELBO" sample "$OUT/ckpt.safetensors" --n 2000 --steps 100 --seed 1 --threads 1 --out "$OUT/ancestral.png" >/dev/null 2>&1
"$ELBO" data show --data "toy:$TOY" --n 2000 --out "$OUT/data.png" >/dev/null
