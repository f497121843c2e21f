#!/usr/bin/env bash
# Installs elbo's build and test dependencies from Debian's packages (run as root).
#   scripts/install-deps.sh           compiler, OpenBLAS, libpng, zlib (enough to build and test)
#   scripts/install-deps.sh --torch   also python3-torch, for `make bench` and `make fixtures`
#   scripts/install-deps.sh --data    also dataset-fashion-mnist (the demo data)
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-dev libpng-dev zlib1g-dev)
for a in "$@"; do
  case "$a" in
    --torch) pkgs+=(python3-torch python3-numpy) ;;
    --data) pkgs+=(dataset-fashion-mnist) ;;
    *) echo "install-deps.sh: unknown flag $a (use --torch, --data)" >&2; exit 2 ;;
  esac
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "install-deps: installed ${pkgs[*]}"
