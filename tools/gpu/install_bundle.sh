#!/bin/bash
# There (no registry): join the parts in STASH, unpack, install into /tmp/site without deps or index.
# usage: tools/gpu/install_bundle.sh STASH   then: export PYTHONPATH=/tmp/site
set -euo pipefail
stash=${1:?usage: install_bundle.sh STASH}
cd "$stash"
[ -d x ] || { cat part-* > all.tar && mkdir -p x && tar -xf all.tar -C x && rm all.tar; }
[ -f /tmp/site/.installed ] || {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site x/whl/*.whl
  touch /tmp/site/.installed
}
PYTHONPATH=/tmp/site python3 -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
