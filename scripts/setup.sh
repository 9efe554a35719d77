#!/usr/bin/env bash
# Idempotent set-up on Debian bookworm: node modules, build, a Vulkan driver if Dawn finds no
# adapter (Mesa lavapipe >= 24 from bookworm-backports; bookworm's Mesa 22 is refused by Dawn),
# Debian's chromium for the browser benchmark, and links to the default model in weights/.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
      as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
  fi
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root apt-get install -y -qq "$@" >/dev/null
}

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # onnxruntime-node (a dev peer) would fetch CUDA binaries from nuget.org in its postinstall where npm
  # runs install scripts; its CPU and WebGPU providers ship in the package.
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
fi

if ! node scripts/probe-adapter.mjs 2>/dev/null; then
  echo "setup: no WebGPU adapter; installing Mesa lavapipe from bookworm-backports" >&2
  apt_install -t bookworm-backports mesa-vulkan-drivers libvulkan1
  node scripts/probe-adapter.mjs || { echo "setup: Dawn still finds no WebGPU adapter after installing lavapipe" >&2; exit 1; }
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Debian's chromium for npm run bench:chrome" >&2
  apt_install chromium
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
