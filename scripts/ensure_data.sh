#!/usr/bin/env bash
# Makes sure Fashion-MNIST's IDX files are where Debian's package
# dataset-fashion-mnist installs them, installing the package when allowed.
# With --optional (make test) a failure only warns: tests needing the real
# data skip themselves.
set -u
dir=/usr/share/datasets/fashion-mnist
optional=0; [ "${1:-}" = "--optional" ] && optional=1

have() { [ -f "$dir/train-images-idx3-ubyte.gz" ] && [ -f "$dir/t10k-images-idx3-ubyte.gz" ]; }
have && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Fashion-MNIST missing: installing Debian's package dataset-fashion-mnist" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  have && exit 0
fi

msg="Fashion-MNIST not found in $dir. Install it with
  sudo apt-get update && sudo apt-get install dataset-fashion-mnist
or put its four IDX .gz files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a directory and run
  make train DATA_DIR=/that/directory"
if [ "$optional" = 1 ]; then
  echo "warning: $msg" >&2; exit 0
fi
echo "error: $msg" >&2
exit 1
