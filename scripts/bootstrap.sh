#!/usr/bin/env bash
# Installs everything Heimdall needs on a fresh Debian bookworm machine, idempotently:
# system packages, TimescaleDB built once from Debian's source package (cached outside the
# repo), and a Python virtual environment with the project installed in editable mode.
# Prints nothing but progress; safe to run again (a second run only checks).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${HEIMDALL_CACHE:-$HOME/.cache/heimdall}
# One environment per checkout (the project is installed in editable mode, so a shared one would
# run whichever clone installed it last), cached outside the repo; HEIMDALL_VENV chooses another.
checkout_id=$(printf '%s' "$repo" | sha256sum | cut -c1-10)
venv=${HEIMDALL_VENV:-$cache/venv-$(basename "$repo")-$checkout_id}
pg_major=15
mkdir -p "$cache"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- system packages -------------------------------------------------------------------
system_packages=(postgresql-$pg_major postgresql-server-dev-$pg_major cmake gcc make dpkg-dev
                 libkrb5-dev chromium chromium-driver docker-compose openssl)
missing=()
for p in "${system_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a default cluster on 5432 when postgresql is installed; Heimdall runs its own.

# --- TimescaleDB (Apache-licensed build from Debian trixie's source package) -----------
pg_config=/usr/lib/postgresql/$pg_major/bin/pg_config
ext_dir=$($pg_config --sharedir)/extension
build_root=$cache/timescaledb
if [ ! -f "$ext_dir/timescaledb.control" ]; then
  if ! ls "$build_root"/build/src/timescaledb.so >/dev/null 2>&1; then
    log "building TimescaleDB once from Debian's source package (cached in $build_root)"
    rm -rf "$build_root" && mkdir -p "$build_root/apt/lists/partial" "$build_root/src"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
      > "$build_root/apt/sources.list"
    apt_opts=(-o Dir::Etc::SourceList="$build_root/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o Dir::State::Lists="$build_root/apt/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update -qq
    (cd "$build_root/src" && apt-get "${apt_opts[@]}" source -qq timescaledb >/dev/null)
    src=$(find "$build_root/src" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -1)
    mkdir -p "$build_root/build"
    (cd "$build_root/build" && cmake "$src" -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG=$pg_config \
        -DAPACHE_ONLY=1 -DUSE_TELEMETRY=OFF -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF >/dev/null \
      && make -j"$(nproc)" >/dev/null)
  fi
  log "installing the cached TimescaleDB build into PostgreSQL $pg_major"
  (cd "$build_root/build" && as_root make install >/dev/null)
fi

# --- Python environment -------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment $venv"
  if ! command -v uv >/dev/null 2>&1; then python3 -m pip install -q --disable-pip-version-check uv; fi
  uv venv -q --python python3.11 "$venv"
fi
stamp=$venv/.heimdall-installed
# "pyc": the environment is installed with its bytecode compiled (see below); older ones are redone.
want=$(sha256sum "$repo/setup.py" | cut -c1-13)pyc2-$repo
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  installed_for=$(sed -n 's/^[0-9a-f]\{13,16\}\(pyc[0-9]*\)\{0,1\}-//p' "$stamp" 2>/dev/null || true)
  if [ -n "$installed_for" ] && [ "$installed_for" != "$repo" ]; then
    log "HEIMDALL_VENV=$venv was installed for $installed_for: it now runs $repo instead"
  fi
  log "installing Python dependencies into $venv"
  if command -v uv >/dev/null 2>&1; then
    uv pip install -q --python "$venv/bin/python" -e "$repo[test]"
  else
    "$venv/bin/python" -m pip install -q -e "$repo[test]"
  fi
  # Bytecode compiled once here: uv writes none, and where PYTHONDONTWRITEBYTECODE is set nothing
  # writes it later, so every `heimdall` process and Dagster run would compile Dagster, scipy and
  # botocore from source again (~50 s of one `heimdall session run` measured, docs/benchmark.md).
  # HEIMDALL_COMPILE_BYTECODE=0 skips it (tests that only check which environment is used).
  if [ "${HEIMDALL_COMPILE_BYTECODE:-1}" != 0 ]; then
    log "compiling the environment's bytecode"
    "$venv/bin/python" -m compileall -q -j 0 "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
      "$repo/heimdall_pipeline" >/dev/null || true
  fi
  echo "$want" > "$stamp"
fi
echo "$venv"
