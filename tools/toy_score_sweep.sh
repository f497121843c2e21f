#!/usr/bin/env bash
# Sample quality against network evaluations for the score samplers on a 2-D toy: trains an
# NCSN (VE, sigma 0.01 .. 10, 50 levels) on toy:8gaussians (or $TOY) unless OUT has one, then
# for each sampler and setting draws 2000 points and prints the evaluations (nfe) and MMD^2
# against 2000 test points (Gaussian kernel, width 0.5) as markdown table rows. With a second
# checkpoint (VP, e.g. tools/toy_sampler_sweep.sh's) the same rows follow for it.
#   bash tools/toy_score_sweep.sh [ELBO] [OUT] [VP_CKPT]
set -eu
ELBO=${1:-build/elbo}
OUT=${2:-runs/ncsn8}
VP=${3:-}
TOY=${TOY:-8gaussians}
if [ ! -f "$OUT/ckpt.safetensors" ]; then
    "$ELBO" train ncsn --data "toy:$TOY" --toy-n 60000 --steps 10000 --batch 256 --lr 1e-3 \
        --cosine --ema 0.999 --sigma-min 0.01 --sigma-max 10 --levels 50 --threads 1 \
        --out "$OUT" --log-every 5000 >&2
fi
row() { # model sampler setting flags...
    local model=$1 name=$2 setting=$3 ck=$4
    shift 4
    local j
    j=$("$ELBO" sample "$ck" "$@" --n 2000 --seed 1 --data "toy:$TOY" --threads 1 \
        --out "$OUT/sweep.npy" 2>/dev/null)
    echo "| $model | $name | $setting | $(sed 's/.*"nfe":\([0-9]*\).*/\1/' <<<"$j") | $(sed 's/.*"mmd2":\([^,]*\),.*/\1/' <<<"$j") |"
}
echo "| model | sampler | setting | network evaluations | MMD^2 |"
echo "|---|---|---|---|---|"
sweep() { # model ckpt
    local model=$1 ck=$2
    for k in 10 50 200 1000; do row "$model" em "$k steps" "$ck" --sampler em --steps "$k"; done
    for k in 10 50 200; do row "$model" "pc (reverse, 1 corrector, snr 0.05)" "$k steps" "$ck" --sampler pc --steps "$k" --snr 0.05; done
    for t in 2 5 20; do row "$model" "langevin (50 levels)" "T = $t" "$ck" --sampler langevin --steps 50 --langevin-steps "$t"; done
    for r in 1e-2 1e-3 1e-4 1e-5; do row "$model" ode "rtol = atol = $r" "$ck" --sampler ode --rtol "$r" --atol "$r"; done
}
sweep "NCSN (VE)" "$OUT/ckpt.safetensors"
[ -n "$VP" ] && sweep "VP (loglinear)" "$VP"
exit 0
