#!/usr/bin/env bash
# Prepare, on a machine with network (or Debian's package cache), what scripts/gpu_check.sh needs
# on a GPU machine that reaches no package registry (the project's H200 machine):
#
#     scripts/gpu_prepare.sh            then dry-run it here:   NNXP_GPU_CHECK_DEVICE=cpu scripts/gpu_check.sh
#
# - .whl/: the array-api-compat wheel (pure Python; the H200 image lacks it), the version installed here;
# - .gpu-data/fashion-mnist/: Fashion-MNIST's four .gz files (about 30 MB), from Debian's
#   dataset-fashion-mnist: /usr/share/datasets/fashion-mnist if installed, else its .deb from apt's
#   cache, else `apt-get download`.  Without them gpu_check.sh races on the bundled digits instead.
# Both folders are git-ignored (.gitignore: /.whl/, /.gpu-data/) and
# travel with the device tool's `carry`: [".whl", ".gpu-data"].
# Set PYTHON for the interpreter whose pip downloads (default: python3).

set -euo pipefail
PY="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

version="$("$PY" -c 'import array_api_compat; print(array_api_compat.__version__)')"
mkdir -p .whl
rm -f .whl/array_api_compat-*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    -d .whl "array-api-compat==$version"
echo "wheel: $(ls .whl/array_api_compat-*.whl)"

data=.gpu-data/fashion-mnist
mkdir -p "$data"
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have() { for f in "${files[@]}"; do [ -s "$data/$f" ] || return 1; done; }
if ! have; then
    if [ -d /usr/share/datasets/fashion-mnist ]; then
        cp /usr/share/datasets/fashion-mnist/*.gz "$data/"
    else
        deb="$(ls /var/cache/apt/archives/dataset-fashion-mnist_*_all.deb 2>/dev/null | head -1 || true)"
        if [ -z "$deb" ]; then
            (cd "$(mktemp -d)" && apt-get download dataset-fashion-mnist >/dev/null && deb="$PWD/$(ls *.deb)" \
                && echo "$deb") > /tmp/nnxp-fashion-deb.$$ || true
            deb="$(cat /tmp/nnxp-fashion-deb.$$ 2>/dev/null || true)"
            rm -f /tmp/nnxp-fashion-deb.$$
        fi
        if [ -n "$deb" ]; then
            tmp="$(mktemp -d)"
            dpkg-deb -x "$deb" "$tmp"
            cp "$tmp"/usr/share/datasets/fashion-mnist/*.gz "$data/"
            rm -rf "$tmp"
        fi
    fi
fi
if have; then
    echo "Fashion-MNIST: $data ($(du -sh "$data" | cut -f1))"
else
    echo "Fashion-MNIST not found (apt-get install dataset-fashion-mnist): gpu_check.sh will race on the bundled digits"
fi
echo "carry: [\".whl\", \".gpu-data\"]   ($(du -sch .whl .gpu-data | tail -1 | cut -f1) besides the tree)"
