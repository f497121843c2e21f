#!/usr/bin/env bash
# The fidelity-diversity trade-off of guidance on Fashion-MNIST: for each scale, 50 samples
# per class (--class all --nrow 50) measured by the clean classifier (accuracy against the
# requested class, Frechet distance on its features against the test set, entropy of its
# predicted classes), as markdown table rows, and as OUT_DIR/sweep.csv with the columns
# cg_scale,cg_accuracy,cg_frechet,cg_entropy (classifier guidance) or cfg_... (classifier-free),
# for `elbo plot` (two sweeps side by side: paste -d, A/sweep.csv B/sweep.csv).
#   bash tools/guidance_sweep.sh ELBO DIFFUSION_CKPT CLEAN_CLF [NOISY_CLF] OUT_DIR
# With NOISY_CLF: classifier guidance (scale s); without: classifier-free guidance (weight w)
# of a --cond DIFFUSION_CKPT. SCALES (default "0 0.5 1 2 4"), STEPS (100), SAMPLER (ancestral).
set -eu
ELBO=$1 CKPT=$2 CLEAN=$3
if [ $# -ge 5 ]; then NOISY=$4 OUT=$5; else NOISY="" OUT=$4; fi
SCALES=${SCALES:-0 0.5 1 2 4}
STEPS=${STEPS:-100}
SAMPLER=${SAMPLER:-ancestral}
mkdir -p "$OUT"
kind=$([ -n "$NOISY" ] && echo "classifier (scale s)" || echo "classifier-free (weight w)")
p=$([ -n "$NOISY" ] && echo cg || echo cfg)
echo "${p}_scale,${p}_accuracy,${p}_frechet,${p}_entropy" > "$OUT/sweep.csv.tmp"
for w in $SCALES; do
    start=$(date +%s)
    if [ -n "$NOISY" ]; then
        "$ELBO" sample "$CKPT" --classifier "$NOISY" --class all --nrow 50 --guidance "$w" \
            --sampler "$SAMPLER" --steps "$STEPS" --seed 1 --out "$OUT/g$w.npy" >/dev/null 2>&1
    else
        "$ELBO" sample "$CKPT" --class all --nrow 50 --guidance "$w" --sampler "$SAMPLER" \
            --steps "$STEPS" --seed 1 --out "$OUT/g$w.npy" >/dev/null 2>&1
    fi
    secs=$(( $(date +%s) - start ))
    j=$("$ELBO" eval-samples "$OUT/g$w.npy" --classifier "$CLEAN" --data fashion-mnist)
    acc=$(sed 's/.*"accuracy":\([^,]*\),.*/\1/' <<<"$j")
    fd=$(sed 's/.*"frechet":\([^,]*\),.*/\1/' <<<"$j")
    ent=$(sed 's/.*"entropy_nats":\([^,]*\),.*/\1/' <<<"$j")
    echo "| $kind | $w | $acc | $fd | $ent | $secs s |"
    echo "$w,$acc,$fd,$ent" >> "$OUT/sweep.csv.tmp"
done
mv "$OUT/sweep.csv.tmp" "$OUT/sweep.csv"
