#!/usr/bin/env bash
# Sets up a fresh Debian machine (or a clone on any machine with Node.js) for development and tests:
# checks the toolchain, then installs the npm dependencies from the lockfile. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_node="20.19.0"
if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js >= $need_node is required (https://nodejs.org or your distribution's nodejs package)" >&2
  exit 1
fi
have_node="$(node -p 'process.versions.node')"
if [ "$(printf '%s\n%s\n' "$need_node" "$have_node" | sort -V | head -n1)" != "$need_node" ]; then
  echo "setup: Node.js $have_node is too old; agent-memory needs >= $need_node" >&2
  exit 1
fi

# WebGPU runs the tests on Mesa's lavapipe (Vulkan on the CPU) where no GPU is present. Dawn rejects
# bookworm's Mesa 22.3 (it lacks shaderUniformBufferArrayDynamicIndexing); bookworm-backports' 25.x works.
mesa_ok() {
  local version
  version="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
  [ -n "$version" ] && dpkg --compare-versions "$version" ge 24
}
if [ -r /etc/debian_version ] && ! mesa_ok; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need Mesa >= 24 Vulkan drivers; as root run this script again, or:" >&2
    echo "  apt-get install -t bookworm-backports mesa-vulkan-drivers   (after adding bookworm-backports)" >&2
    exit 1
  fi
  echo "setup: installing mesa-vulkan-drivers from bookworm-backports (lavapipe for WebGPU)"
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat >/etc/apt/sources.list.d/debian-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null
fi

# Python is a test-time oracle only (reference implementations the tests compare against); the
# product never needs it. requirements-test.txt pins what the oracles import.
if ! command -v python3 >/dev/null 2>&1; then
  echo "setup: python3 is required for the tests' reference oracles (apt-get install python3 python3-pip)" >&2
  exit 1
fi
echo "setup: installing the Python test oracles (pip install -r scripts/requirements-test.txt)"
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

# `npm ci` builds the MLX addon (native/) against the MLX wheel installed above: it needs CMake and a
# C++20 compiler (bookworm's cmake 3.25 and g++ 12 do).
if [ -r /etc/debian_version ] && ! { command -v cmake && command -v g++ && command -v make; } >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: the MLX addon needs CMake and a C++ compiler; as root run this script again, or:" >&2
    echo "  apt-get install cmake g++ make" >&2
    exit 1
  fi
  echo "setup: installing cmake, g++ and make (to build the MLX addon)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends cmake g++ make >/dev/null
fi

# The Agent API test runs the README's curl examples with real curl.
if [ -r /etc/debian_version ] && ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: the tests run the README's curl examples; as root run this script again, or: apt-get install curl" >&2
    exit 1
  fi
  echo "setup: installing curl (the README's examples are run by a test)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
fi

echo "setup: installing npm dependencies (npm ci)"
npm ci --no-audit --no-fund
