#!/usr/bin/env bash
# Installs elbo's build and test dependencies from Debian's packages (run as root).
#   scripts/install-deps.sh           compiler, OpenBLAS, libpng, zlib (enough to build and test)
#   scripts/install-deps.sh --torch   also python3-torch, for `make bench` and `make fixtures`
#   scripts/install-deps.sh --data    also dataset-fashion-mnist (the demo data)
#   scripts/install-deps.sh --fuzz    also clang, its OpenMP runtime and its libFuzzer
#                                     (libclang-rt-<clang major>-dev), for `make fuzz`
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-dev libpng-dev zlib1g-dev)
fuzz=0
for a in "$@"; do
  case "$a" in
    --torch) pkgs+=(python3-torch python3-numpy) ;;
    --data) pkgs+=(dataset-fashion-mnist) ;;
    --fuzz) pkgs+=(clang libomp-dev); fuzz=1 ;;
    *) echo "install-deps.sh: unknown flag $a (use --torch, --data, --fuzz)" >&2; exit 2 ;;
  esac
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
# libFuzzer (libclang_rt.fuzzer) is only a Recommends of clang, in the compiler-rt package
# of clang's own major version: libclang-rt-14-dev for Debian 12's clang 14.
if [ "$fuzz" -eq 1 ]; then
  ver=$(clang -dumpversion | cut -d. -f1)
  $SUDO apt-get install -y -qq --no-install-recommends "libclang-rt-$ver-dev" >/dev/null
  pkgs+=("libclang-rt-$ver-dev")
fi
echo "install-deps: installed ${pkgs[*]}"
