#!/usr/bin/env bash
# Makes sure the Fashion-MNIST IDX files can be found (see cvae/data/__init__.py for the search order).
set -euo pipefail
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have() { for f in "${files[@]}"; do [ -f "$1/$f" ] || return 1; done; }

if [ -n "${FASHION_MNIST_DIR:-}" ]; then
  have "$FASHION_MNIST_DIR" && { echo "data: $FASHION_MNIST_DIR"; exit 0; }
  echo "error: FASHION_MNIST_DIR=$FASHION_MNIST_DIR does not hold ${files[*]}" >&2; exit 1
fi
debian=/usr/share/datasets/fashion-mnist
have "$debian" && { echo "data: $debian"; exit 0; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "data: installing Debian's dataset-fashion-mnist into $debian"
  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  have "$debian" && exit 0
fi
cat >&2 <<MSG
warning: Fashion-MNIST IDX files not found. Either
  - apt-get install dataset-fashion-mnist   (as root; puts them in $debian), or
  - put ${files[*]} in a folder and set FASHION_MNIST_DIR=/that/folder, or
  - let training fall back to tfds.load("fashion_mnist"), which downloads them (needs the internet).
MSG
