# Sourced by the other scripts: installs Debian packages that are missing, idempotently.
# Needs root (or sudo). Does nothing when everything is already installed.

ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo ">> installing Debian packages: ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What building Fjord needs: a C compiler (ring and aws-lc build C code), protoc for the
# gRPC contracts, GStreamer headers for the recording node and the bots.
BUILD_PACKAGES=(gcc libc6-dev protobuf-compiler libprotobuf-dev pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev)
# What the recording node's pipelines use: depayloaders, Ogg and MP4 muxers, compositor
# and audiomixer (base, good), opusparse and h264parse (bad), x264enc (ugly), the H.264
# decoder (libav) and the names and clock drawn on it (textoverlay, clockoverlay: gstreamer1.0-x).
RECORDING_PACKAGES=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x)
# What running a local cluster needs.
RUN_PACKAGES=(etcd-server "${RECORDING_PACKAGES[@]}")
# What the bots (fjord-bot, the benchmarks and the media tests) need: GStreamer encodes
# their Opus tone (plugins-base) and VP8 test pattern (plugins-good).
BOT_PACKAGES=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
# What the tests need besides: real browsers for the media tests, `ip` to set up the
# network namespace the Firefox test runs in (geckodriver, Firefox's
# WebDriver, is not packaged by Debian: ensure_geckodriver builds it from crates.io).
# Prometheus (and its promtool) runs every dashboard and alert query against a live
# cluster; openssl checks the certificates the chart makes; Janus is the peer SFU the
# forwarding benchmark (and its test) compares the media node with. coturn is the TURN
# server a client whose UDP is blocked reaches the media node through. baresip is the
# SIP peer that dials meetings through the SIP gateway (baresip-core: the program and
# its modules, without the desktop front ends the `baresip` package recommends).
TEST_PACKAGES=(chromium chromium-driver firefox-esr iproute2 python3 python3-venv
  prometheus openssl janus coturn baresip-core "${BOT_PACKAGES[@]}")

# What the fuzz targets need besides the build packages: libfuzzer-sys compiles
# libFuzzer's C++ sources.
FUZZ_PACKAGES=(g++)

GECKODRIVER_VERSION=0.37.1
CARGO_FUZZ_VERSION=0.13.1

# Installs Mozilla's geckodriver from crates.io into cargo's bin directory, unless that
# version is there already (a few minutes of build, once).
ensure_geckodriver() {
  local bin="${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "^geckodriver $GECKODRIVER_VERSION\b"; then
    return 0
  fi
  echo ">> cargo install geckodriver $GECKODRIVER_VERSION"
  cargo install --quiet --locked geckodriver --version "$GECKODRIVER_VERSION"
}

# Installs cargo-fuzz from crates.io into cargo's bin directory, unless that version is
# there already (a minute of build, once).
ensure_cargo_fuzz() {
  if cargo fuzz --version 2>/dev/null | grep -q "^cargo-fuzz $CARGO_FUZZ_VERSION\b"; then
    return 0
  fi
  echo ">> cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
}

# The npm packages the tests run (tests/oidc: the OpenID Connect provider), exactly as
# locked; redone when the lock changes. Node.js and npm: the machine's own when it has
# them (a Node.js from elsewhere brings its npm, and Debian's npm would not install
# beside it), else Debian's.
ensure_node_tools() {
  local dir=tests/oidc
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ensure_packages nodejs npm
  fi
  if [ -d "$dir/node_modules" ] && cmp -s "$dir/package-lock.json" "$dir/node_modules/.fjord-lock"; then
    return 0
  fi
  echo ">> npm packages for the tests ($dir)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$dir/node_modules/.fjord-lock"
}

# The Python tools the tests use (tests/requirements.txt: the chart's checks, aiortc), in
# a venv at target/py-tools, made from Debian's python3; redone when the requirements
# change.
ensure_python_tools() {
  local venv=target/py-tools req=tests/requirements.txt
  if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/requirements.txt"; then
    return 0
  fi
  echo ">> python tools for the tests ($req)"
  rm -rf "$venv"
  mkdir -p target
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
}
