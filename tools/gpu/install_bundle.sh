#!/bin/bash
# There (no registry): join the parts in STASH, unpack and install them into SITE, a directory this run owns.
# usage: tools/gpu/install_bundle.sh STASH [SITE]      then: export PYTHONPATH=SITE
# SITE defaults to a fresh `mktemp -d` (mode 0700) and is printed on the last line. It must be new or empty
# and owned by us: a fixed shared path such as /tmp/site could be planted by anyone on the box, and whatever
# lies first on PYTHONPATH runs in every GPU run.
set -euo pipefail
stash=${1:?usage: install_bundle.sh STASH [SITE]}
site=${2:-$(mktemp -d "${TMPDIR:-/tmp}/mgpu-site.XXXXXXXX")}
if [ ! -d "$site" ] || [ -L "$site" ] || [ "$(stat -c %u "$site")" != "$(id -u)" ] || [ -n "$(ls -A "$site")" ]; then
  echo "install_bundle.sh: $site must be an empty directory owned by $(id -un) (not a symlink); " \
       "expected a fresh one: omit SITE to get one from mktemp -d" >&2
  exit 2
fi
chmod 700 "$site"
work=$(mktemp -d "${TMPDIR:-/tmp}/mgpu-bundle.XXXXXXXX")  # unpacked wheels, private too
trap 'rm -rf "$work"' EXIT
cat "$stash"/part-* | tar -x -C "$work"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$work"/whl/*.whl
PYTHONPATH=$site python3 -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
echo "$site"
