# Shared shell helpers of the README's commands: packages, a private Docker engine, a registry.
# Everything the harness creates is named capt-* / capstan-test so stale leftovers of a run that
# was cut off can be found and cleared.

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

is_root() { [ "$(id -u)" = 0 ]; }

# ensure_packages PKG...: installs the Debian packages that are missing (root only).
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  is_root || die "missing packages: ${missing[*]} (install them, or run this as root to have it done)"
  log "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The PyPI tools the tests run: schemathesis (the API property tests) and kubernetes-validate
# (the Kubernetes renders, validated offline against the API's schemas).
SCHEMATHESIS_VERSION=4.32.5
KUBERNETES_VALIDATE_VERSION=1.37.0

# ensure_pypi_tool DIR PACKAGE VERSION WHY: PACKAGE==VERSION in a virtualenv of its own at DIR
# (installed from PyPI once; kept outside the clone, like the build directory).
ensure_pypi_tool() {
  local dir=$1 want="$2==$3" why=$4
  if [ "$(cat "$dir/.installed" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "installing $want into $dir"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$want" \
    || die "cannot install $want from PyPI ($why)"
  echo "$want" >"$dir/.installed"
}

# wait_for_socket SOCK SECONDS: true once the engine at SOCK answers /_ping.
wait_for_socket() {
  local sock=$1 deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    curl -fsS --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# stop_pidfile FILE: SIGTERM the process in FILE and wait up to 30 s for it to go.
stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# clear_dir DIR: unmounts whatever an engine left mounted under DIR, then removes it.
clear_dir() {
  local dir=$1
  [ -d "$dir" ] || return 0
  awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$dir" 2>/dev/null || true
}

# start_engine DIR BRIDGE GATEWAY/CIDR POOL [TCP_PORT]: a private dockerd with its own bridge,
# on a unix socket and, with TCP_PORT, also on tcp://127.0.0.1:TCP_PORT (loopback only).
# Never --bridge=none: it deletes the host's docker0 (see ../shared/environment.md).
start_engine() {
  local dir=$1 bridge=$2 cidr=$3 pool=$4 tcp=${5:-}
  local hosts=(-H "unix://$dir/docker.sock")
  [ -n "$tcp" ] && hosts+=(-H "tcp://127.0.0.1:$tcp")
  stop_engine "$dir" "$bridge"
  mkdir -p "$dir"
  ip link add "$bridge" type bridge
  ip addr add "$cidr" dev "$bridge"
  ip link set "$bridge" up
  dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/pid" \
    "${hosts[@]}" --bridge="$bridge" \
    --default-address-pool "base=$pool,size=24" >"$dir/dockerd.log" 2>&1 &
  wait_for_socket "$dir/docker.sock" 60 || { tail -20 "$dir/dockerd.log" >&2; die "private engine did not start (log: $dir/dockerd.log)"; }
}

# stop_engine DIR BRIDGE: stops the engine of DIR, clears its files and its bridge.
stop_engine() {
  local dir=$1 bridge=$2
  stop_pidfile "$dir/pid"
  clear_dir "$dir"
  ip link del "$bridge" 2>/dev/null || true
}

# free_port: an unused loopback TCP port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_registry DIR PORT [ADDR]: Debian's docker-registry (CNCF distribution) on
# ADDR:PORT (default 127.0.0.1).
start_registry() {
  local dir=$1 port=$2 addr=${3:-127.0.0.1}
  stop_pidfile "$dir/pid"
  rm -rf "$dir"; mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $addr:$port
YAML
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/pid"
  local deadline=$((SECONDS + 30))
  until curl -fsS "http://$addr:$port/v2/" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { tail -20 "$dir/registry.log" >&2; die "registry did not start"; }
    sleep 0.2
  done
}

# cargo-deb, the packager of scripts/package-deb (installed from crates.io once, into cargo's
# bin directory).
CARGO_DEB_VERSION=3.8.0

ensure_cargo_deb() {
  if cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    return 0
  fi
  log "installing cargo-deb $CARGO_DEB_VERSION from crates.io"
  cargo install -q --locked --version "$CARGO_DEB_VERSION" cargo-deb \
    || die "cannot install cargo-deb $CARGO_DEB_VERSION from crates.io (needed to build the .deb)"
}
