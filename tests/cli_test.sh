#!/usr/bin/env bash
# End-to-end checks of the `elbo` command: bash tests/cli_test.sh build/elbo
# One line per check; the last line is "N passed, N failed"; exit status 1 if any failed.
set -u
ELBO=${1:-build/elbo}
case $ELBO in /*) ;; *) ELBO=$PWD/$ELBO ;; esac
[ -x "$ELBO" ] || { echo "cli_test: $ELBO is not an executable"; echo "0 passed, 1 failed"; exit 1; }
T=$(mktemp -d /tmp/elbo_cli_test.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1: $2"; }

# run ARGS...: runs elbo, sets RC, OUT (stdout), ERR (stderr). With FSIZE_KB set (e.g.
# FSIZE_KB=8 run ...) elbo runs in a subshell under `ulimit -f $FSIZE_KB`: a full disk.
run() {
    if [ -n "${FSIZE_KB:-}" ]; then
        (ulimit -f "$FSIZE_KB" && exec "$ELBO" "$@") >"$T/stdout" 2>"$T/stderr"
    else
        "$ELBO" "$@" >"$T/stdout" 2>"$T/stderr"
    fi
    RC=$?
    OUT=$(cat "$T/stdout")
    ERR=$(cat "$T/stderr")
}

# expect_ok NAME ARGS...: exit 0 and a JSON last line
expect_ok() {
    local name=$1
    shift
    run "$@"
    if [ $RC -ne 0 ]; then bad "$name" "exit $RC: $ERR"; return 1; fi
    case $(printf '%s\n' "$OUT" | tail -n 1) in
    \{*\}) ok "$name" ;;
    *) bad "$name" "last line is not JSON: $(printf '%s\n' "$OUT" | tail -n 1)"; return 1 ;;
    esac
}

# expect_fail NAME STATUS NEEDLE ARGS...: exit STATUS, one line on stderr that contains
# NEEDLE (the file or flag), nothing on stdout, and no file left in the scratch dir
# except the ones there before.
expect_fail() {
    local name=$1 want=$2 needle=$3
    shift 3
    local before
    before=$(ls -A "$T/work" | sort)
    run "$@"
    local after
    after=$(ls -A "$T/work" | sort)
    local lines
    lines=$(printf '%s\n' "$ERR" | grep -c .)
    if [ "$RC" -ne "$want" ]; then bad "$name" "exit $RC, want $want ($ERR)"
    elif [ "$lines" -ne 1 ]; then bad "$name" "$lines lines on stderr: $ERR"
    elif [[ "$ERR" != *"$needle"* ]]; then bad "$name" "message does not name $needle: $ERR"
    elif [[ "$ERR" != elbo:* ]]; then bad "$name" "message does not start with elbo: $ERR"
    elif [ -n "$OUT" ]; then bad "$name" "output on stdout: $OUT"
    elif [ "$before" != "$after" ]; then bad "$name" "files left behind: $after"
    else ok "$name"; fi
}

mkdir -p "$T/work"
W=$T/work

# ---- help and version ----------------------------------------------------------------
run --help
if [ $RC -eq 0 ] && [[ $OUT == *"bench NAME"* && $OUT == *"info FILE"* && $OUT == *"data show"* ]]; then
    ok "help lists the commands"
else bad "help lists the commands" "exit $RC: $OUT"; fi
run version
[ $RC -eq 0 ] && [[ $OUT == "elbo "* ]] && ok "version" || bad "version" "exit $RC: $OUT"
run data show --help
missing=
for f in --data --split --n --nrow --seed --shuffle --transform --out; do
    printf '%s\n' "$OUT" | grep -q -- "^  $f .*(default: " || missing="$missing $f"
done
[ $RC -eq 0 ] && [ -z "$missing" ] && ok "data show --help lists every flag with its default" ||
    bad "data show --help lists every flag with its default" "exit $RC, missing:$missing"
run bench --help
missing=
for f in --threads --batch --steps --warmup --seed; do
    printf '%s\n' "$OUT" | grep -q -- "^  $f .*(default: " || missing="$missing $f"
done
[ $RC -eq 0 ] && [ -z "$missing" ] && ok "bench --help lists every flag with its default" ||
    bad "bench --help lists every flag with its default" "exit $RC, missing:$missing"
run info --help
[ $RC -eq 0 ] && [[ $OUT == *"usage: elbo info FILE"* ]] && ok "info --help" || bad "info --help" "exit $RC"

# ---- data show: toy -------------------------------------------------------------------
if expect_ok "data show toy:moons png" data show --data toy:moons --out "$W/moons.png"; then
    if [ "$(head -c 8 "$W/moons.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
        ok "toy:moons writes a PNG"
    else bad "toy:moons writes a PNG" "no PNG signature"; fi
    [[ $OUT == *'"n":2000'* && $OUT == *'"data":"toy:moons"'* ]] && ok "toy default n 2000 in JSON" ||
        bad "toy default n 2000 in JSON" "$OUT"
fi
if expect_ok "data show toy npy" data show --data toy:8gaussians --n 100 --seed 7 --out "$W/g.npy"; then
    # 128-byte header (numpy's layout for a short header) + 100*2 float32
    sz=$(stat -c %s "$W/g.npy")
    [ "$sz" -eq $((128 + 800)) ] && ok "toy npy size" || bad "toy npy size" "$sz bytes"
    run data show --data toy:8gaussians --n 100 --seed 7 --out "$W/g2.npy"
    cmp -s "$W/g.npy" "$W/g2.npy" && ok "toy npy deterministic by seed" || bad "toy npy deterministic by seed" "files differ"
    rm -f "$W/g.npy" "$W/g2.npy"
fi

# ---- data show: npy images written by python3 (no numpy needed) ------------------------
if command -v python3 >/dev/null 2>&1; then
    python3 - "$T" <<'PY'
import struct, sys
d = sys.argv[1]
def npy(path, descr, shape, data):
    sh = "(%s)" % (", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, sh)
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + " " * (pad % 64) + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data)
n, c, hh, w = 20, 1, 4, 5
img = bytes((i * 7) % 256 for i in range(n * c * hh * w))
npy(d + "/imgs.npy", "|u1", (n, c, hh, w), img)
npy(d + "/labels.npy", "<i8", (n,), b"".join(struct.pack("<q", i % 3) for i in range(n)))
# a safetensors file: metadata with a JSON config, two F32 tensors and an I64 scalar
import json
ts = [("decoder.weight", "F32", [3, 4]), ("decoder.bias", "F32", [3]), ("step", "I64", [])]
hdr = {"__metadata__": {"format": "elbo", "config": json.dumps({"model": "vae", "z": 2})}}
off, buf = 0, b""
for name, dt, shape in ts:
    k = 1
    for s in shape: k *= s
    nb = k * (8 if dt == "I64" else 4)
    hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
    buf += bytes(nb); off += nb
hj = json.dumps(hdr, separators=(",", ":")).encode()
hj += b" " * ((8 - (8 + len(hj)) % 8) % 8)
open(d + "/model.safetensors", "wb").write(struct.pack("<Q", len(hj)) + hj + buf)
PY
    if expect_ok "data show npy: png grid" data show --data "npy:$T/imgs.npy,$T/labels.npy" --n 6 --nrow 3 --out "$W/grid.png"; then
        [[ $OUT == *'"n":6'* && $OUT == *'"shape":[1,4,5]'* && $OUT == *'"split":"train"'* ]] &&
            ok "npy grid JSON" || bad "npy grid JSON" "$OUT"
        # 3 x 2 tiles of 4x5 with 2 px padding: width 3*(5+2)+2 = 23, height 2*(4+2)+2 = 14
        wh=$(head -c 24 "$W/grid.png" | tail -c 8 | od -An -tu1 | awk '{print $3*256+$4, $7*256+$8}')
        [ "$wh" = "23 14" ] && ok "npy grid PNG size" || bad "npy grid PNG size" "$wh"
    fi
    if expect_ok "data show npy: npy export" data show --data "npy:$T/imgs.npy,$T/labels.npy" --split test --out "$W/x.npy"; then
        [[ $OUT == *'"n":2'* && $OUT == *'"split":"test"'* ]] && ok "npy export: test split has 2" || bad "npy export: test split has 2" "$OUT"
        [ -f "$W/x.labels.npy" ] && ok "npy export writes labels" || bad "npy export writes labels" "no $W/x.labels.npy"
        # test split: items 9 and 19; bytes = 128 header + 2*20
        sz=$(stat -c %s "$W/x.npy")
        [ "$sz" -eq 168 ] && ok "npy export size" || bad "npy export size" "$sz"
        cmp -s <(tail -c 40 "$W/x.npy") <(python3 -c "import sys; sys.stdout.buffer.write(bytes((i*7)%256 for i in list(range(180,200))+list(range(380,400))))") &&
            ok "npy export bytes are items 9 and 19" || bad "npy export bytes are items 9 and 19" "differ"
        rm -f "$W/x.npy" "$W/x.labels.npy"
    fi
    if expect_ok "info on a safetensors file" info "$T/model.safetensors"; then
        last=$(printf '%s\n' "$OUT" | tail -n 1)
        want="{\"file\":\"$T/model.safetensors\", \"tensors\":3, \"parameters\":16, \"bytes\":68}"
        [ "$last" = "$want" ] && ok "info JSON line" || bad "info JSON line" "$last"
        [[ $OUT == *'config: {"model": "vae", "z": 2}'* ]] && ok "info prints config as is" || bad "info prints config as is" "$OUT"
        printf '%s\n' "$OUT" | grep -Eq '^decoder.weight +F32 +\[3, 4\] +12 +48$' && ok "info tensor row" ||
            bad "info tensor row" "$OUT"
        printf '%s\n' "$OUT" | grep -q '^total: 3 tensors, 16 elements, 68 bytes$' && ok "info totals line" || bad "info totals line" "$OUT"
    fi

    # ---- train, sample, eval on 300 random 28x28 images -------------------------------
    python3 - "$T" <<'PY'
import struct, sys, random
random.seed(3)
n = 300
h = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, 28, 28), }" % n
h = h + " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
open(sys.argv[1] + "/tiny28.npy", "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + bytes(random.randrange(256) for _ in range(n * 784)))
PY
    R=$T/run
    if expect_ok "train vae-mlp 20 steps" train vae-mlp --data "npy:$T/tiny28.npy" --steps 20 --batch 32 --hidden 64 --z 8 --out "$R" --log-every 10; then
        last=$(printf '%s\n' "$OUT" | tail -n 1)
        [[ $last == *'"model":"vae-mlp"'* && $last == *'"steps":20'* && $last == *'"loss":'* && $last == *'"seconds":'* && $last == *"\"out\":\"$R\""* ]] &&
            ok "train JSON keys" || bad "train JSON keys" "$last"
        [ -f "$R/ckpt.safetensors" ] && [ -f "$R/loss.png" ] && ok "train writes ckpt and loss.png" || bad "train writes ckpt and loss.png" "$(ls "$R")"
        [ "$(head -n 1 "$R/loss.csv")" = "step,loss,recon,kl" ] && [ "$(wc -l <"$R/loss.csv")" -eq 21 ] &&
            ok "train loss.csv header and 20 rows" || bad "train loss.csv header and 20 rows" "$(wc -l <"$R/loss.csv") lines"
        [[ $ERR == *"step 20/20 loss"* ]] && ok "train progress lines on stderr" || bad "train progress lines on stderr" "$ERR"
        if expect_ok "sample png" sample "$R/ckpt.safetensors" --n 10 --out "$W/s.png"; then
            # 8 per row: width 8*(28+2)+2 = 242, height 2*(28+2)+2 = 62
            wh=$(head -c 24 "$W/s.png" | tail -c 8 | od -An -tu1 | awk '{print $3*256+$4, $7*256+$8}')
            [ "$wh" = "242 62" ] && ok "sample PNG size" || bad "sample PNG size" "$wh"
        fi
        if expect_ok "sample npy" sample "$R/ckpt.safetensors" --n 10 --seed 4 --out "$W/s.npy"; then
            sz=$(stat -c %s "$W/s.npy")
            [ "$sz" -eq $((128 + 10 * 784)) ] && ok "sample npy size (uint8 10,1,28,28)" || bad "sample npy size (uint8 10,1,28,28)" "$sz"
            [[ $OUT == *'"n":10'* && $OUT == *'"step":20'* ]] && ok "sample JSON" || bad "sample JSON" "$OUT"
        fi
        rm -f "$W/s.png" "$W/s.npy"
        if expect_ok "eval" eval "$R/ckpt.safetensors" --data "npy:$T/tiny28.npy"; then
            last=$(printf '%s\n' "$OUT" | tail -n 1)
            miss=
            for k in neg_elbo_nats recon_nats kl_nats bits_per_dim '"n":30' '"split":"test"' '"step":20'; do
                [[ $last == *"$k"* ]] || miss="$miss $k"
            done
            [ -z "$miss" ] && ok "eval JSON keys" || bad "eval JSON keys" "missing$miss: $last"
        fi
        if expect_ok "train resume to 30 steps" train vae-mlp --data "npy:$T/tiny28.npy" --steps 30 --batch 32 --hidden 64 --z 8 --out "$R" --resume "$R/ckpt.safetensors"; then
            [[ $OUT == *'"steps":30'* ]] && [ "$(wc -l <"$R/loss.csv")" -eq 31 ] && ok "resume appends 10 rows" ||
                bad "resume appends 10 rows" "$OUT; $(wc -l <"$R/loss.csv") lines"
        fi
        expect_fail "resume with another batch" 1 "$R/ckpt.safetensors" train vae-mlp --data "npy:$T/tiny28.npy" --steps 40 --batch 16 --hidden 64 --z 8 --out "$W/r2" --resume "$R/ckpt.safetensors"
        # a full disk when saving the checkpoint (1.3 MB, over a 256 KiB file-size limit):
        # exit 1 (not SIGXFSZ), one error line naming it, no temporary file, and the earlier
        # checkpoint (step 30, from $R) left byte for byte as it was
        F=$W/full
        mkdir -p "$F" && cp "$R/ckpt.safetensors" "$F/ckpt.safetensors"
        FSIZE_KB=256 run train vae-mlp --data "npy:$T/tiny28.npy" --steps 5 --batch 32 --hidden 64 --z 8 --out "$F"
        errs=$(printf '%s\n' "$ERR" | grep '^elbo:')
        if [ "$RC" -ne 1 ]; then bad "train on a full disk" "exit $RC, want 1 ($ERR)"
        elif [ "$(printf '%s\n' "$errs" | grep -c .)" -ne 1 ]; then bad "train on a full disk" "not one error line: $ERR"
        elif [[ "$errs" != *"$F/ckpt.safetensors"* ]]; then bad "train on a full disk" "message does not name the checkpoint: $errs"
        elif [ -n "$OUT" ]; then bad "train on a full disk" "output on stdout: $OUT"
        elif ls -A "$F" | grep -q '\.tmp\.'; then bad "train on a full disk" "temporary file left: $(ls -A "$F")"
        elif ! cmp -s "$R/ckpt.safetensors" "$F/ckpt.safetensors"; then bad "train on a full disk" "the earlier checkpoint changed"
        else ok "train on a full disk"; fi
        rm -rf "$F"
    fi
    # ---- the vae model: estimators, likelihoods, eval with importance sampling ----------
    V=$T/vae
    if expect_ok "train vae 20 steps" train vae --data "npy:$T/tiny28.npy" --steps 20 --batch 32 --hidden 32 --z 4 --estimator iwae --samples 3 --kl-warmup 10 --out "$V" --log-every 10; then
        [[ $OUT == *'"model":"vae"'* ]] && [ "$(head -n 1 "$V/loss.csv")" = "step,loss,recon,kl,beta" ] &&
            ok "train vae JSON and loss.csv header" || bad "train vae JSON and loss.csv header" "$OUT; $(head -n 1 "$V/loss.csv")"
        if expect_ok "eval vae --iwae 5" eval "$V/ckpt.safetensors" --data "npy:$T/tiny28.npy" --iwae 5; then
            last=$(printf '%s
' "$OUT" | tail -n 1)
            miss=
            for k in '"iwae_k":5' nll_iwae_nats nll_iwae_bits_per_dim active_units neg_elbo_nats; do
                [[ $last == *"$k"* ]] || miss="$miss $k"
            done
            [ -z "$miss" ] && ok "eval vae JSON keys" || bad "eval vae JSON keys" "missing$miss: $last"
        fi
        if expect_ok "sample vae png and npy" sample "$V/ckpt.safetensors" --n 4 --out "$W/v.png" --npy "$W/v.npy"; then
            [ -f "$W/v.png" ] && [ "$(stat -c %s "$W/v.npy")" -eq $((128 + 4 * 784)) ] && ok "sample --npy beside the PNG" || bad "sample --npy beside the PNG" "$(ls "$W")"
        fi
        rm -f "$W/v.png" "$W/v.npy"
        if expect_ok "reconstruct" reconstruct "$V/ckpt.safetensors" --data "npy:$T/tiny28.npy" --n 5 --out "$W/r.npy"; then
            [ "$(stat -c %s "$W/r.npy")" -eq $((128 + 10 * 784)) ] && [[ $OUT == *'"images":10'* ]] && ok "reconstruct npy: originals and reconstructions" || bad "reconstruct npy: originals and reconstructions" "$OUT"
        fi
        rm -f "$W/r.npy"
        if expect_ok "interpolate" interpolate "$V/ckpt.safetensors" --data "npy:$T/tiny28.npy" --from 2 --to 7 --steps 6 --out "$W/i.png" --npy "$W/i.npy"; then
            wh=$(head -c 24 "$W/i.png" | tail -c 8 | od -An -tu1 | awk '{print $3*256+$4, $7*256+$8}')
            [ "$wh" = "242 32" ] && [ "$(stat -c %s "$W/i.npy")" -eq $((128 + 6 * 784)) ] && ok "interpolate row of 8 and npy of 6" || bad "interpolate row of 8 and npy of 6" "$wh"
        fi
        rm -f "$W/i.png" "$W/i.npy"
        if expect_ok "traverse" traverse "$V/ckpt.safetensors" --dims 0,3 --steps 5 --range 2 --out "$W/t.npy"; then
            [ "$(stat -c %s "$W/t.npy")" -eq $((128 + 10 * 784)) ] && ok "traverse 2 dims x 5 steps" || bad "traverse 2 dims x 5 steps" "$OUT"
        fi
        rm -f "$W/t.npy"
        expect_fail "traverse a dimension past z" 2 --dims traverse "$V/ckpt.safetensors" --dims 4 --out "$W/t.png"
        expect_fail "interpolate an item past the split" 2 --to interpolate "$V/ckpt.safetensors" --data "npy:$T/tiny28.npy" --to 30 --out "$W/i.png"
        expect_fail "traverse --index without --data" 2 --index traverse "$V/ckpt.safetensors" --index 1 --out "$W/t.png"
        if expect_ok "traverse the most active dimensions" traverse "$V/ckpt.safetensors" --data "npy:$T/tiny28.npy" --steps 3 --out "$W/t.npy"; then
            [[ $OUT == *'"dims":4'* ]] && ok "traverse picks min(10, z) dimensions" || bad "traverse picks min(10, z) dimensions" "$OUT"
        fi
        rm -f "$W/t.npy"
        expect_fail "reconstruct bad --npy" 2 --npy reconstruct "$V/ckpt.safetensors" --data "npy:$T/tiny28.npy" --out "$W/r.png" --npy "$W/r.png"
        expect_fail "reconstruct a vae-mlp" 1 "no encoder" reconstruct "$R/ckpt.safetensors" --data "npy:$T/tiny28.npy" --out "$W/r.png"
    fi
    expect_ok "train vae conv logistic" train vae --data "npy:$T/tiny28.npy" --steps 3 --batch 16 --arch conv --hidden 16 --z 2 --likelihood logistic --out "$T/vae_conv"
    expect_ok "train vae gaussian fixed sigma, estimator A" train vae --data "npy:$T/tiny28.npy" --steps 3 --batch 16 --hidden 16 --z 2 --likelihood gaussian --sigma 0.1 --estimator A --samples 2 --free-bits 0.5 --out "$T/vae_gauss"
    if expect_ok "train hvae 3 layers" train hvae --data "npy:$T/tiny28.npy" --steps 10 --batch 32 --layers 3 --z 8,4,2 --hidden 32 --grad-clip 100 --logvar-min -6 --out "$T/hvae"; then
        if expect_ok "eval hvae --iwae 3" eval "$T/hvae/ckpt.safetensors" --data "npy:$T/tiny28.npy" --iwae 3; then
            miss=
            for k in kl_1_nats kl_2_nats kl_3_nats active_1 active_3 nll_iwae_nats; do
                [[ $OUT == *"$k"* ]] || miss="$miss $k"
            done
            [ -z "$miss" ] && ok "eval hvae per-layer keys" || bad "eval hvae per-layer keys" "missing$miss: $OUT"
        fi
        expect_ok "sample hvae" sample "$T/hvae/ckpt.safetensors" --n 4 --out "$W/h.png" && rm -f "$W/h.png"
    fi
    expect_fail "train hvae --z for other layers" 2 --z train hvae --data "npy:$T/tiny28.npy" --layers 3 --z 8,4 --out "$W/r3"
    expect_fail "train hvae --layers 0" 2 --layers train hvae --data "npy:$T/tiny28.npy" --layers 0 --out "$W/r3"
    expect_fail "train vae --layers" 2 --layers train vae --data "npy:$T/tiny28.npy" --layers 2 --out "$W/r3"
    expect_fail "train hvae --arch conv" 2 --arch train hvae --data "npy:$T/tiny28.npy" --arch conv --out "$W/r3"
    expect_fail "train vae negative --beta" 2 --beta train vae --data "npy:$T/tiny28.npy" --beta -1 --out "$W/r3"
    expect_fail "train vae --samples 0" 2 --samples train vae --data "npy:$T/tiny28.npy" --samples 0 --out "$W/r3"
    expect_fail "train vae --z 0" 2 --z train vae --data "npy:$T/tiny28.npy" --z 0 --out "$W/r3"
    expect_fail "train vae free bits with iwae" 2 "free bits" train vae --data "npy:$T/tiny28.npy" --estimator iwae --free-bits 1 --out "$W/r3"
    expect_fail "train vae bad --estimator" 2 estimator train vae --data "npy:$T/tiny28.npy" --estimator C --out "$W/r3"
    expect_fail "train vae bad --hidden" 2 --hidden train vae --data "npy:$T/tiny28.npy" --hidden 300,x --out "$W/r3"
    expect_fail "train vae --sigma with bernoulli" 2 --sigma train vae --data "npy:$T/tiny28.npy" --sigma 0.1 --out "$W/r3"
    expect_fail "train vae-mlp with a vae flag" 2 --beta train vae-mlp --data "npy:$T/tiny28.npy" --beta 2 --out "$W/r3"
    expect_fail "eval vae-mlp --iwae" 2 --iwae eval "$R/ckpt.safetensors" --data "npy:$T/tiny28.npy" --iwae 10
    # ---- the diffusion model: train, eval, the three samplers, guidance, denoise -----------
    python3 - "$T" <<'PY'
import struct, sys, random
random.seed(4)
n = 300
h = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d,), }" % n
h = h + " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
open(sys.argv[1] + "/tiny28_labels.npy", "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + bytes(random.randrange(3) for _ in range(n)))
PY
    D=$T/dif
    DIF_NET="--channels 8,16 --groups 4 --temb 16"
    if expect_ok "train diffusion 10 steps" train diffusion --data "npy:$T/tiny28.npy" --steps 10 --batch 16 $DIF_NET --out "$D" --log-every 5; then
        [ "$(head -n 1 "$D/loss.csv")" = "step,loss,diffusion,mse" ] && ok "train diffusion loss.csv header" || bad "train diffusion loss.csv header" "$(head -n 1 "$D/loss.csv")"
        if expect_ok "eval diffusion" eval "$D/ckpt.safetensors" --data "npy:$T/tiny28.npy"; then
            [[ $OUT == *'"prior_nats":'* && $OUT == *'"diffusion_nats":'* && $OUT == *'"recon_nats":'* && $OUT == *'"bits_per_dim":'* ]] &&
                ok "eval diffusion shows the three terms" || bad "eval diffusion shows the three terms" "$OUT"
        fi
        for smp in ancestral ddim heun em pc langevin ode; do
            if expect_ok "sample diffusion $smp" sample "$D/ckpt.safetensors" --sampler $smp --steps 4 --langevin-steps 2 --rtol 1e-3 --atol 1e-3 --n 3 --out "$W/d_$smp.npy" --trajectory "$W/d_$smp.png"; then
                [[ $OUT == *"\"sampler\":\"$smp\", \"nfe\":"* ]] && ok "sample diffusion $smp reports its evaluations" || bad "sample diffusion $smp reports its evaluations" "$OUT"
                [ "$(stat -c %s "$W/d_$smp.npy")" -eq $((128 + 3 * 784)) ] && [ -s "$W/d_$smp.png" ] &&
                    ok "sample diffusion $smp writes samples and trajectory" || bad "sample diffusion $smp writes samples and trajectory" "$(ls -l "$W")"
            fi
        done
        run sample "$D/ckpt.safetensors" --sampler heun --steps 4 --n 2 --out "$W/d1.npy" --seed 5
        run sample "$D/ckpt.safetensors" --sampler heun --steps 4 --n 2 --out "$W/d2.npy" --seed 5
        cmp -s "$W/d1.npy" "$W/d2.npy" && ok "sample diffusion is reproducible from its seed" || bad "sample diffusion is reproducible from its seed" "differ"
        if expect_ok "denoise" denoise "$D/ckpt.safetensors" --data "npy:$T/tiny28.npy" --sigma 0.2 --n 4 --out "$W/den.png"; then
            [[ $OUT == *'"psnr_noisy_db":'* && $OUT == *'"psnr_denoised_db":'* && $OUT == *'"t":'* ]] && ok "denoise JSON" || bad "denoise JSON" "$OUT"
        fi
        expect_fail "sample diffusion bad --sampler" 2 --sampler sample "$D/ckpt.safetensors" --sampler euler --out "$W/s.png"
        expect_fail "sample diffusion --eta above 1" 2 eta sample "$D/ckpt.safetensors" --sampler ddim --eta 1.5 --steps 2 --out "$W/s.png"
        expect_fail "sample pc bad --predictor" 2 --predictor sample "$D/ckpt.safetensors" --sampler pc --predictor heun --out "$W/s.png"
        expect_fail "sample pc --snr 0" 2 --snr sample "$D/ckpt.safetensors" --sampler pc --snr 0 --out "$W/s.png"
        expect_fail "sample langevin one level" 2 "2 noise levels" sample "$D/ckpt.safetensors" --sampler langevin --steps 1 --out "$W/s.png"
        expect_fail "sample langevin diverging step" 1 "--langevin-eps" sample "$D/ckpt.safetensors" --sampler langevin --steps 3 --langevin-steps 50 --langevin-eps 1 --n 2 --out "$W/s_div.png"
        [ ! -e "$W/s_div.png" ] && ok "a diverged sampler writes no output" || bad "a diverged sampler writes no output" "$W/s_div.png exists"
        expect_fail "sample --snr on a vae" 2 "applies to diffusion" sample "$R/ckpt.safetensors" --snr 0.2 --out "$W/s.png"
        if expect_ok "eval --likelihood ode" eval "$D/ckpt.safetensors" --data "npy:$T/tiny28.npy" --likelihood ode --n 4 --batch 2 --rtol 1e-3 --atol 1e-3; then
            [[ $OUT == *'"likelihood":"ode", "dequant":"uniform"'* && $OUT == *'"nfe":'* && $OUT == *'"elbo_bits_per_dim":'* ]] && ok "eval ode JSON" || bad "eval ode JSON" "$OUT"
            bpd=$(sed 's/.*"bits_per_dim":\([0-9.e+-]*\).*/\1/' <<<"$OUT")
            awk -v b="$bpd" 'BEGIN { exit !(b > 0) }' && ok "eval ode bits/dim positive" || bad "eval ode bits/dim positive" "$bpd"
        fi
        expect_ok "eval --likelihood ode --dequant process" eval "$D/ckpt.safetensors" --data "npy:$T/tiny28.npy" --likelihood ode --dequant process --n 2 --rtol 1e-3 --atol 1e-3
        expect_fail "eval ode --probe exact on images" 2 "at most 64" eval "$D/ckpt.safetensors" --data "npy:$T/tiny28.npy" --likelihood ode --probe exact
        expect_fail "eval bad --likelihood" 2 --likelihood eval "$D/ckpt.safetensors" --data "npy:$T/tiny28.npy" --likelihood flow
        expect_fail "eval ode on a vae" 2 "not a diffusion" eval "$R/ckpt.safetensors" --data "npy:$T/tiny28.npy" --likelihood ode
        expect_fail "sample guidance without classes" 2 --guidance sample "$D/ckpt.safetensors" --guidance 2 --out "$W/s.png"
        expect_fail "denoise sigma out of range" 2 --sigma denoise "$D/ckpt.safetensors" --data "npy:$T/tiny28.npy" --sigma 1000 --out "$W/den.png"
        expect_fail "denoise a vae checkpoint" 2 "not a diffusion model" denoise "$R/ckpt.safetensors" --data "npy:$T/tiny28.npy" --sigma 0.1 --out "$W/den.png"
        expect_fail "sample vae-mlp with --sampler" 2 --sampler sample "$R/ckpt.safetensors" --sampler ddim --out "$W/s.png"
    fi
    C=$T/difc
    if expect_ok "train diffusion --cond, v, discrete:20, cosine" train diffusion --data "npy:$T/tiny28.npy,$T/tiny28_labels.npy" --cond --param v --time discrete:20 --schedule cosine --loss snr-trunc --steps 4 --batch 16 $DIF_NET --out "$C"; then
        expect_ok "sample guided" sample "$C/ckpt.safetensors" --guidance 3 --class 2 --steps 5 --n 2 --out "$W/g.png"
        expect_fail "sample --steps not dividing T" 2 --steps sample "$C/ckpt.safetensors" --steps 3 --out "$W/g.png"
        expect_fail "sample --class past the classes" 2 --class sample "$C/ckpt.safetensors" --class 3 --steps 5 --out "$W/g.png"
        if expect_ok "sample --class all" sample "$C/ckpt.safetensors" --class all --nrow 2 --guidance 1 --steps 5 --out "$W/gall.npy"; then
            [[ $OUT == *'"n":6'*'"guidance":"classifier-free", "guidance_weight":1'*'"labels":'* ]] && [ -s "$W/gall.labels.npy" ] &&
                ok "sample --class all: a row per class, labels written" || bad "sample --class all: a row per class, labels written" "$OUT"
        fi
        expect_fail "sample --class bad" 2 --class sample "$C/ckpt.safetensors" --class two --out "$W/g.png"
    fi
    # ---- classifiers: clean (test accuracy, eval-samples) and noisy (classifier guidance) --
    LAB="npy:$T/tiny28.npy,$T/tiny28_labels.npy"
    CLF_NET="--channels 8,16 --groups 4"
    if expect_ok "train classifier" train classifier --data "$LAB" --steps 3 --batch 16 $CLF_NET --out "$T/clf"; then
        if expect_ok "eval classifier" eval "$T/clf/ckpt.safetensors" --data "$LAB"; then
            [[ $OUT == *'"model":"classifier"'*'"noisy":false'*'"accuracy":'* ]] && ok "eval classifier JSON" || bad "eval classifier JSON" "$OUT"
        fi
    fi
    if expect_ok "train classifier --noisy --process-of" train classifier --noisy --process-of "$D/ckpt.safetensors" --data "$LAB" --steps 3 --batch 16 $CLF_NET --temb 16 --out "$T/nclf"; then
        if expect_ok "sample with classifier guidance" sample "$D/ckpt.safetensors" --classifier "$T/nclf/ckpt.safetensors" --class 1 --guidance 1 --steps 4 --n 3 --out "$W/cg.npy"; then
            [[ $OUT == *'"guidance":"classifier", "classifier_scale":1'* ]] && [ -s "$W/cg.labels.npy" ] && ok "classifier guidance JSON and labels" || bad "classifier guidance JSON and labels" "$OUT"
            if expect_ok "eval-samples" eval-samples "$W/cg.npy" --classifier "$T/clf/ckpt.safetensors" --data "$LAB"; then
                [[ $OUT == *'"accuracy":'[0-9]*'"frechet":'*'"entropy_nats":'* ]] && ok "eval-samples JSON" || bad "eval-samples JSON" "$OUT"
            fi
            expect_fail "eval-samples with a noisy classifier" 2 "noisy" eval-samples "$W/cg.npy" --classifier "$T/nclf/ckpt.safetensors" --data "$LAB"
        fi
        for smp in ddim pc ode; do
            expect_ok "classifier guidance with $smp" sample "$D/ckpt.safetensors" --classifier "$T/nclf/ckpt.safetensors" --sampler $smp --class 0 --guidance 2 --steps 3 --rtol 1e-2 --atol 1e-2 --n 2 --out "$W/cg_$smp.png"
        done
        expect_fail "classifier guidance: class past the classifier's" 2 --class sample "$D/ckpt.safetensors" --classifier "$T/nclf/ckpt.safetensors" --class 7 --out "$W/cg.png"
        expect_fail "classifier guidance without --class" 2 "which class" sample "$D/ckpt.safetensors" --classifier "$T/nclf/ckpt.safetensors" --out "$W/cg.png"
        expect_fail "classifier guidance with a clean classifier" 2 "clean classifier" sample "$D/ckpt.safetensors" --classifier "$T/clf/ckpt.safetensors" --class 0 --out "$W/cg.png"
    fi
    if expect_ok "train classifier --noisy on another process" train classifier --noisy --schedule cosine --data "$LAB" --steps 1 --batch 16 $CLF_NET --temb 16 --out "$T/nclf2"; then
        expect_fail "classifier guidance: another process" 2 "another noise process" sample "$D/ckpt.safetensors" --classifier "$T/nclf2/ckpt.safetensors" --class 0 --out "$W/cg.png"
    fi
    expect_fail "classifier guidance: not a classifier" 2 "not a classifier" sample "$D/ckpt.safetensors" --classifier "$D/ckpt.safetensors" --class 0 --out "$W/cg.png"
    # ---- inverse problems with the tiny diffusion model as the prior --------------------
    for task in inpaint superres denoise deblur; do
        for solver in pnp dps; do
            if expect_ok "inverse $task $solver --eval" inverse "$D/ckpt.safetensors" --task $task --solver $solver --data "npy:$T/tiny28.npy" --n 2 --steps 3 --eval --out "$W/inv_$task.png"; then
                [[ $OUT == *'"psnr_db":'*'"ssim":'*'"baselines":{"'* && $OUT == *'"sigma_y":0.05, "sigma_y_units":"[0,1] pixels"'* ]] && ok "inverse $task $solver JSON" || bad "inverse $task $solver JSON" "$OUT"
            fi
        done
    done
    if expect_ok "inverse inpaint repaint, 3 samples, .npy" inverse "$D/ckpt.safetensors" --task inpaint --solver repaint --mask half --data "npy:$T/tiny28.npy" --n 2 --steps 4 --jump 2 --resample 2 --samples 3 --out "$W/inv_rp.png" --npy "$W/inv_rp.npy"; then
        [ -s "$W/inv_rp.npy" ] && [ -s "$W/inv_rp.std.npy" ] && [ -s "$W/inv_rp.samples.npy" ] && ok "inverse writes mean, std and samples" || bad "inverse writes mean, std and samples" "$(ls "$W")"
    fi
    expect_ok "inverse constraint pnp" inverse "$D/ckpt.safetensors" --task constraint --solver pnp --classifier "$T/clf/ckpt.safetensors" --class all --n 1 --steps 3 --eval --out "$W/inv_c.png"
    [[ $OUT == *'"accuracy":'* ]] && ok "inverse constraint accuracy" || bad "inverse constraint accuracy" "$OUT"
    expect_ok "inverse constraint pnp, the paper's weighting" inverse "$D/ckpt.safetensors" --task constraint --solver pnp --classifier "$T/clf/ckpt.safetensors" --class 1 --n 1 --steps 3 --weighting simple --energy-decay --out "$W/inv_c2.png"
    [[ $OUT == *'"weighting":"simple", "energy_decay":true'* ]] && ok "inverse pnp weighting in the JSON line" || bad "inverse pnp weighting in the JSON line" "$OUT"
    rm -f "$W"/inv_*
    python3 - "$T" <<'PY'
import struct, sys
h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 14, 14), }"
h = h + " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
open(sys.argv[1] + "/y_bad.npy", "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + bytes(4 * 196))
PY
    expect_fail "inverse: a measurement of the wrong shape" 2 "y_bad.npy" inverse "$D/ckpt.safetensors" --task superres --factor 4 --solver dps --y "$T/y_bad.npy" --out "$W/inv.png"
    expect_fail "inverse: repaint for superres" 2 "repaint" inverse "$D/ckpt.safetensors" --task superres --solver repaint --data "npy:$T/tiny28.npy" --out "$W/inv.png"
    expect_fail "inverse: bad task" 2 "--task" inverse "$D/ckpt.safetensors" --task colorize --solver dps --data "npy:$T/tiny28.npy" --out "$W/inv.png"
    expect_fail "inverse: factor not dividing the image" 2 "factor" inverse "$D/ckpt.safetensors" --task superres --factor 3 --solver dps --data "npy:$T/tiny28.npy" --out "$W/inv.png"
    expect_fail "inverse: bad mask file" 1 "/nonexistent_elbo_mask.png" inverse "$D/ckpt.safetensors" --task inpaint --mask /nonexistent_elbo_mask.png --solver dps --data "npy:$T/tiny28.npy" --out "$W/inv.png"
    expect_fail "inverse: an unknown pnp weighting" 2 "--weighting" inverse "$D/ckpt.safetensors" --task denoise --solver pnp --data "npy:$T/tiny28.npy" --n 1 --weighting snr --out "$W/inv.png"
    expect_fail "inverse: constraint without a classifier" 2 "--classifier" inverse "$D/ckpt.safetensors" --task constraint --solver pnp --out "$W/inv.png"
    expect_fail "inverse: constraint with a class past the classifier's" 2 "--class" inverse "$D/ckpt.safetensors" --task constraint --solver pnp --classifier "$T/clf/ckpt.safetensors" --class 9 --out "$W/inv.png"
    expect_fail "inverse: two inputs" 2 "one of" inverse "$D/ckpt.safetensors" --task denoise --solver dps --data "npy:$T/tiny28.npy" --in "$T/y_bad.npy" --out "$W/inv.png"
    expect_fail "inverse: not a diffusion model" 2 "not a diffusion" inverse "$T/clf/ckpt.safetensors" --task denoise --solver dps --data "npy:$T/tiny28.npy" --out "$W/inv.png"
    expect_fail "train classifier without labels" 2 "no labels" train classifier --data "npy:$T/tiny28.npy" --out "$W/r4"
    expect_fail "train classifier --temb without --noisy" 2 "--noisy" train classifier --data "$LAB" --temb 16 --out "$W/r4"
    P=$T/diftoy
    if expect_ok "train diffusion on toy points" train diffusion --data toy:8gaussians --toy-n 512 --steps 20 --batch 64 --hidden 32 --layers 2 --loss simple --out "$P"; then
        if expect_ok "sample toy points npy" sample "$P/ckpt.safetensors" --n 5 --steps 4 --out "$W/p.npy"; then
            [ "$(stat -c %s "$W/p.npy")" -eq $((128 + 5 * 2 * 4)) ] && ok "sample toy points: float32 (5, 2)" || bad "sample toy points: float32 (5, 2)" "$(stat -c %s "$W/p.npy") bytes"
        fi
        expect_ok "sample toy points scatter" sample "$P/ckpt.safetensors" --n 50 --steps 4 --sampler heun --out "$W/p.png"
        if expect_ok "score-field of a toy checkpoint" score-field "$P/ckpt.safetensors" --grid 8 --n 20 --levels 3 --langevin-steps 2 --out "$W/sf.png"; then
            [ "$(head -c 8 "$W/sf.png" | od -An -tx1 | tr -d ' ')" = "89504e470d0a1a0a" ] && ok "score-field writes a PNG" || bad "score-field writes a PNG" "not a PNG"
        fi
        expect_ok "eval toy points" eval "$P/ckpt.safetensors" --data toy:8gaussians --toy-n 256
        if expect_ok "eval toy points --likelihood ode --probe exact" eval "$P/ckpt.safetensors" --data toy:8gaussians --toy-n 64 --likelihood ode --probe exact; then
            [[ $OUT == *'"dequant":"none", "probe":"exact"'* ]] && ok "eval toy ode: no dequantization for points" || bad "eval toy ode: no dequantization for points" "$OUT"
        fi
        expect_fail "eval toy model on images" 2 "toy:NAME" eval "$P/ckpt.safetensors" --data "npy:$T/tiny28.npy"
    fi
    if expect_ok "train ncsn on toy points" train ncsn --data toy:8gaussians --toy-n 512 --steps 20 --batch 64 --hidden 32 --layers 2 --levels 10 --sigma-max 5 --out "$T/ncsn"; then
        hdr=$(head -c 4000 "$T/ncsn/ckpt.safetensors" | tr -d '\\\000')
        [[ $hdr == *'"schedule":"ve"'*'"loss":"simple"'*'"levels":10'* ]] && ok "train ncsn: ve, simple, 10 levels in the config" || bad "train ncsn: ve, simple, 10 levels in the config" "${hdr:0:600}"
        expect_ok "sample ncsn langevin" sample "$T/ncsn/ckpt.safetensors" --sampler langevin --steps 10 --langevin-steps 5 --n 20 --out "$W/nc.png"
    fi
    expect_ok "train sde --sde ve" train sde --sde ve --data "npy:$T/tiny28.npy" --steps 2 --batch 8 $DIF_NET --out "$T/sdeve"
    expect_ok "train sde --sde subvp" train sde --sde subvp --data toy:moons --toy-n 256 --steps 2 --batch 32 --hidden 16 --layers 1 --out "$T/sdesub"
    expect_fail "train sde bad --sde" 2 "--sde: expected" train sde --sde vv --data toy:moons --out "$W/r3"
    expect_fail "train sde with --schedule" 2 "--schedule: elbo train sde" train sde --schedule cosine --data toy:moons --out "$W/r3"
    expect_fail "train diffusion with --sde" 2 "--sde: applies" train diffusion --sde ve --data toy:moons --out "$W/r3"
    expect_fail "train ncsn --levels 1" 2 "--levels" train ncsn --levels 1 --data toy:moons --out "$W/r3"
    expect_fail "train ncsn --loss elbo" 2 "noise ladder" train ncsn --loss elbo --data toy:moons --out "$W/r3"
    if expect_ok "score-field --true ncsn" score-field --true ncsn --sigma-min 0.05 --sigma-max 20 --levels 20 --langevin-steps 20 --langevin-eps 5e-4 --n 400 --grid 16 --out "$W/sft.png"; then
        [[ $OUT == *'"weights":[0.2000,0.8000], "plain_shares":['*'"annealed_shares":['* ]] && ok "score-field reports the mode shares" || bad "score-field reports the mode shares" "$OUT"
    fi
    expect_fail "score-field without a source" 2 "neither" score-field --out "$W/x.png"
    expect_fail "score-field bad --true" 2 "--true" score-field --true moons --out "$W/x.png"
    expect_fail "score-field of an image model" 2 "2-D points" score-field "$D/ckpt.safetensors" --out "$W/x.png"
    expect_fail "score-field npy output" 2 ".png" score-field --true ncsn --out "$W/x.npy"
    expect_fail "train diffusion unet on toy points" 2 --net train diffusion --data toy:moons --net unet --out "$W/r3"
    expect_fail "train diffusion --cond without labels" 2 --cond train diffusion --data "npy:$T/tiny28.npy" --cond $DIF_NET --out "$W/r3"
    expect_fail "train diffusion bad --time" 2 --time train diffusion --data "npy:$T/tiny28.npy" --time discrete:0 --out "$W/r3"
    expect_fail "train diffusion bad --schedule" 2 --schedule train diffusion --data "npy:$T/tiny28.npy" --schedule quadratic --out "$W/r3"
    expect_fail "train diffusion learned schedule with --loss simple" 2 learned train diffusion --data "npy:$T/tiny28.npy" --schedule learned --loss simple --out "$W/r3"
    if expect_ok "train diffusion learned schedule" train diffusion --data "npy:$T/tiny28.npy" --schedule learned --time discrete:10 --steps 3 --batch 16 $DIF_NET --out "$T/diflearn"; then
        expect_ok "eval diffusion learned schedule" eval "$T/diflearn/ckpt.safetensors" --data "npy:$T/tiny28.npy"
        expect_ok "sample diffusion learned schedule" sample "$T/diflearn/ckpt.safetensors" --steps 5 --n 2 --out "$W/l.png"
    fi
    expect_ok "train diffusion --fourier, --ema-warmup" train diffusion --data "npy:$T/tiny28.npy" --fourier --ema 0.999 --ema-warmup --steps 2 --batch 8 $DIF_NET --out "$T/diffourier"
    expect_fail "train --ema-warmup without --ema" 2 --ema-warmup train diffusion --data "npy:$T/tiny28.npy" --ema-warmup --out "$W/r3"
    expect_fail "train diffusion --fourier with the mlp" 2 fourier train diffusion --data toy:moons --fourier --out "$W/r3"
    expect_fail "train diffusion bad --attn" 2 --attn train diffusion --data "npy:$T/tiny28.npy" --attn 5 --out "$W/r3"
    expect_fail "train diffusion bad --param" 2 --param train diffusion --data "npy:$T/tiny28.npy" --param noise --out "$W/r3"
    run train diffusion --help
    missing=
    for f in --data --steps --ema --ema-warmup --schedule --param --loss --time --net --channels --blocks --attn --dropout --temb --groups --cond --p-uncond --log-snr-min --log-snr-max --sigma-min --sigma-max; do
        printf '%s\n' "$OUT" | grep -q -- "^  $f .*(default: " || missing="$missing $f"
    done
    [ $RC -eq 0 ] && [ -z "$missing" ] && ok "train diffusion --help lists every flag with its default" ||
        bad "train diffusion --help lists every flag with its default" "exit $RC, missing:$missing"
    run train --help
    missing=
    for f in --data --steps --batch --lr --seed --threads --out --resume --ckpt-every --log-every --binarize --hidden --z --arch --act --likelihood --sigma --estimator --samples --beta --kl-warmup --free-bits --logvar-min --layers; do
        printf '%s\n' "$OUT" | grep -q -- "^  $f .*(default: " || missing="$missing $f"
    done
    [ $RC -eq 0 ] && [ -z "$missing" ] && ok "train --help lists every flag with its default" ||
        bad "train --help lists every flag with its default" "exit $RC, missing:$missing"
    expect_fail "train unknown model" 2 nosuchmodel train nosuchmodel --data "npy:$T/tiny28.npy" --out "$W/r3"
    expect_fail "train missing dataset" 1 /nonexistent_elbo.npy train vae-mlp --data npy:/nonexistent_elbo.npy --out "$W/r3"
    expect_fail "train bad --binarize" 2 --binarize train vae-mlp --data "npy:$T/tiny28.npy" --binarize maybe --out "$W/r3"
    expect_fail "train batch larger than the data" 1 batch train vae-mlp --data "npy:$T/tiny28.npy" --batch 1000 --out "$W/r3"
    expect_fail "sample on a non-checkpoint" 1 /etc/hostname sample /etc/hostname --out "$W/s.png"
    expect_fail "sample bad --out" 2 --out sample "$R/ckpt.safetensors" --out "$W/s.jpg"
    expect_fail "eval with a missing dataset" 1 /nonexistent_elbo.npy eval "$R/ckpt.safetensors" --data npy:/nonexistent_elbo.npy
    expect_fail "eval on a missing checkpoint" 1 "$W/none.safetensors" eval "$W/none.safetensors" --data "npy:$T/tiny28.npy"
else
    echo "skip npy and safetensors cases (no python3)"
fi

# ---- plot: a CSV's columns as lines ---------------------------------------------------
printf 'w,fd_a,acc_a,fd_b,acc_b\n0,3.7,0.1,3.9,0.1\n1,2.9,0.6,2.0,0.8\n2,1.7,0.8,1.5,0.9\n' > "$T/sweep.csv"
if expect_ok "plot parametric series with markers" plot "$T/sweep.csv" --x fd_a,fd_b --y acc_a,acc_b --markers --out "$W/tradeoff.png"; then
    [ "$(head -c 8 "$W/tradeoff.png" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] && ok "plot writes a PNG" || bad "plot writes a PNG" "not a PNG"
fi
rm -f "$W/tradeoff.png"
expect_fail "plot unknown column" 1 nope plot "$T/sweep.csv" --y nope --out "$W/p.png"
expect_fail "plot x columns not matching the series" 1 "x columns" plot "$T/sweep.csv" --x fd_a,fd_b,w --y acc_a,acc_b --out "$W/p.png"
expect_fail "plot missing csv" 1 /nonexistent_elbo.csv plot /nonexistent_elbo.csv --out "$W/p.png"
expect_fail "plot bad --out" 2 --out plot "$T/sweep.csv" --out "$W/p.jpg"

# ---- bad input ------------------------------------------------------------------------
expect_fail "missing dataset dir" 1 /nonexistent_elbo_dir data show --data mnist:/nonexistent_elbo_dir --out "$W/a.png"
expect_fail "unknown spec" 2 bogus-spec data show --data bogus-spec --out "$W/a.png"
expect_fail "unknown toy" 2 nosuchtoy data show --data toy:nosuchtoy --out "$W/a.png"
expect_fail "unknown flag" 2 --frobnicate data show --data toy:moons --frobnicate --out "$W/a.png"
expect_fail "bad number abc" 2 '--n: expected a positive integer, got "abc"' data show --data toy:moons --n abc --out "$W/a.png"
expect_fail "bad number 12x" 2 '--n' data show --data toy:moons --n 12x --out "$W/a.png"
expect_fail "negative number" 2 '--n' data show --data toy:moons --n -4 --out "$W/a.png"
expect_fail "zero n" 2 '--n' data show --data toy:moons --n 0 --out "$W/a.png"
expect_fail "overflow" 2 '--seed' data show --data toy:moons --seed 99999999999999999999999 --out "$W/a.png"
expect_fail "missing value" 2 '--nrow' data show --data toy:moons --out "$W/a.png" --nrow
expect_fail "bad transform" 2 '--transform' data show --data fashion-mnist --transform sharpen --out "$W/a.png"
expect_fail "bad split" 2 '--split' data show --data fashion-mnist --split val --out "$W/a.png"
expect_fail "bad out extension" 2 '--out' data show --data toy:moons --out "$W/a.jpg"
expect_fail "missing --out" 2 '--out' data show --data toy:moons
expect_fail "--out in a missing directory" 1 /nonexistent_elbo_dir/a.png data show --data toy:moons --out /nonexistent_elbo_dir/a.png
# a full disk (ulimit -f 8: 8 KiB per file; the .npy is 16 KiB, the PNG about 57 KiB):
# exit 1 (not 128 + SIGXFSZ), one line naming the file, no output or temporary file left
FSIZE_KB=8 expect_fail "npy on a full disk" 1 "$W/x.npy" data show --data toy:moons --out "$W/x.npy"
FSIZE_KB=8 expect_fail "png on a full disk" 1 "$W/a.png" data show --data toy:moons --out "$W/a.png"
expect_fail "info on a missing file" 1 "$W/missing.safetensors" info "$W/missing.safetensors"
expect_fail "info on a non-safetensors file" 1 /etc/hostname info /etc/hostname
expect_fail "info without a file" 2 info info
expect_fail "unknown command" 2 frobnicate frobnicate
expect_fail "bench bad number" 2 '--steps' bench vae-mlp --steps 5x
expect_fail "bench unknown flag" 2 '--nope' bench vae-mlp --nope
if [ -d /usr/share/datasets/fashion-mnist ]; then
    expect_fail "npy export to a missing directory" 1 /nonexistent_elbo_dir data show --data fashion-mnist --n 4 --out /nonexistent_elbo_dir/x.npy
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
