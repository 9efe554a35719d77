#!/usr/bin/env bash
# Idempotent set-up on Debian bookworm: node modules, build, a Vulkan driver if Dawn finds no
# adapter (Mesa lavapipe >= 24 from bookworm-backports; bookworm's Mesa 22 is refused by Dawn),
# and a link to the default model in weights/.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

if ! node scripts/probe-adapter.mjs 2>/dev/null; then
  echo "setup: no WebGPU adapter; installing Mesa lavapipe from bookworm-backports" >&2
  src=/etc/apt/sources.list.d/bookworm-backports.sources
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | as_root tee "$src" >/dev/null
  fi
  as_root apt-get update -qq
  as_root apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  node scripts/probe-adapter.mjs || { echo "setup: Dawn still finds no WebGPU adapter after installing lavapipe" >&2; exit 1; }
fi

npm run -s build

# The default model (and the Llama 2 tokenizer cats synth uses) come from ../shared when it is
# there; weights/ is git-ignored.
for m in stories260K llama2-tokenizer; do
  if [ ! -e "weights/$m" ] && [ -d "../shared/models/$m" ]; then
    ln -s "$(cd "../shared/models/$m" && pwd)" "weights/$m"
  fi
done
echo "setup: done"
