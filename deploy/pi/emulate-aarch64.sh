#!/usr/bin/env bash
# Run the project on an emulated Raspberry Pi (Debian 12 bookworm, aarch64, Python 3.11)
# with qemu user-mode emulation, and compare it with this x86 machine (issue 13: plan
# hashes once differed across x86-64 and aarch64). A developer tool: CI does not run it.
#
#   deploy/pi/emulate-aarch64.sh setup            # build the aarch64 root (idempotent)
#   deploy/pi/emulate-aarch64.sh python ARGS...   # run the emulated python3.11 on the repo
#   deploy/pi/emulate-aarch64.sh compare [SEED] [NODES]   # demo-virtual on both, compared
#   deploy/pi/emulate-aarch64.sh test [PYTEST ARGS...]    # pytest under emulation (no tests/...
#                                                 #   path given: the default subset below)
#   deploy/pi/emulate-aarch64.sh mixed [NODES] [AARCH64_IDS...]  # a real swarm, some emulated
#   deploy/pi/emulate-aarch64.sh status           # what is built, binfmt, versions
#
# How (no binfmt_misc, no chroot, nothing changed in the host's apt or dpkg set-up):
#  - the host needs qemu-user-static (installed with apt-get when missing and root), apt,
#    dpkg-deb and Debian's archive keyring;
#  - a private apt instance (its own sources, lists and cache under $PI_CACHE, arm64
#    only, an empty dpkg status) downloads python3.11 and its library closure from
#    deb.debian.org bookworm (+ updates, security); each .deb is unpacked with
#    `dpkg-deb -x` into $PI_CACHE/root (no maintainer scripts run);
#  - the project's dependencies come from aarch64 wheels, installed on the host with
#    `pip install --platform manylinux..._aarch64 --only-binary=:all: --target` into the
#    root's /usr/local/lib/python3.11/dist-packages, pinned to the versions of the host's
#    .venv (so both sides run the same numpy/shapely/GEOS/pymap3d): this also proves every
#    dependency has an aarch64 wheel;
#  - `qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11` runs with PYTHONPATH=the
#    repo, through a wrapper that is also sys.executable, so subprocesses the tests start
#    with sys.executable are emulated too. The repo's own files are read in place;
#    bytecode goes to $PI_CACHE/pycache, never into the work tree.
#
# Environment: PI_CACHE (default ~/.cache/wildfire-swarm-aarch64; never inside the repo),
# PI_NICE (default 10: the emulated work yields to everything else), PI_TIMEOUT (seconds
# for any one emulated command, default 3600), PI_MOSQUITTO=1 (setup also unpacks
# Debian's arm64 mosquitto and puts an emulated `mosquitto` first on PATH, for the
# broker fixtures of process tests), PI_AARCH64_FIRST=1 (`mixed`: the emulated nodes, a
# majority, start first and elect one of them).
#
# Emulation is 10-20x slower than the host and says nothing about a Pi's speed; what it
# shows is that the same code and wheels run on aarch64 and give the same answers.
# Results and commands: docs/deploy-pi.md, "Checking on emulated aarch64".
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PI_CACHE=${PI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wildfire-swarm-aarch64}
PI_NICE=${PI_NICE:-10}
PI_TIMEOUT=${PI_TIMEOUT:-3600}
PI_MOSQUITTO=${PI_MOSQUITTO:-0}
ROOT=$PI_CACHE/root
APT=$PI_CACHE/apt
SITE=$ROOT/usr/local/lib/python3.11/dist-packages
WRAPPER=$ROOT/usr/local/bin/python3.11-qemu
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org}
# python3.11 pulls in libc, libssl, libsqlite3, libffi, ...; manylinux wheels also link
# libstdc++ and libgcc_s, which they may take from the system.
PACKAGES=(python3.11 libstdc++6 libgcc-s1)
# The test tools, on top of pyproject's runtime dependencies (the subset run here needs
# no MAVProxy, selenium, cryptography or mypy).
TEST_TOOLS=(pytest pytest-timeout hypothesis networkx)
# `test` with no arguments: the map, exact predicates, planner, assignment and demo
# (tests/swarm), the quick consensus tests (codec, RawNode, the paper's scenarios,
# both storages, the driver, recorded transcripts and simulator replays; not the
# 500-seed soak) and the signed envelope; none needs a broker.
DEFAULT_TESTS=(tests/swarm
               tests/consensus/test_raft_codec.py tests/consensus/test_raft_rawnode.py
               tests/consensus/test_raft_etcd_paper.py tests/consensus/test_storage_memory.py
               tests/consensus/test_sqlite_storage.py tests/consensus/test_sim_safety.py
               tests/consensus/test_driver.py tests/consensus/test_raft_transcripts.py
               tests/consensus/test_sim_replay.py tests/bus/test_bus_envelope.py
               tests/launch/test_pi_fingerprint.py
               --deselect
               tests/consensus/test_sim_safety.py::test_500_random_five_node_fault_schedules_have_no_violations)

say() { printf 'emulate-aarch64: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

case "$PI_CACHE/" in
    "$REPO"/*) die "PI_CACHE=$PI_CACHE is inside the repository; put it elsewhere" ;;
esac

host_python() {
    if [[ -x $REPO/.venv/bin/python ]]; then echo "$REPO/.venv/bin/python"
    else die "no $REPO/.venv: run 'make setup' first (the x86 side of the comparison)"; fi
}

need_host_tools() {
    if ! command -v qemu-aarch64-static >/dev/null; then
        if [[ $(id -u) -eq 0 ]]; then
            say "installing qemu-user-static (apt-get)"
            DEBIAN_FRONTEND=noninteractive timeout 600 apt-get -o DPkg::Lock::Timeout=300 \
                install -y --no-install-recommends qemu-user-static >&2 \
                || die "apt-get install qemu-user-static failed (try 'apt-get update' first)"
        else
            die "qemu-aarch64-static missing: sudo apt-get install qemu-user-static"
        fi
    fi
    command -v dpkg-deb >/dev/null || die "dpkg-deb missing (a Debian/Ubuntu host is needed)"
    [[ -r $KEYRING ]] || die "$KEYRING missing: apt-get install debian-archive-keyring"
}

binfmt_state() {
    if [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
        echo "binfmt_misc: qemu-aarch64 registered (not needed by this script)"
    elif [[ -e /proc/sys/fs/binfmt_misc/status ]]; then
        echo "binfmt_misc: mounted, no qemu-aarch64 handler (not needed: qemu is run explicitly)"
    else
        echo "binfmt_misc: not mounted (not needed: qemu is run explicitly)"
    fi
}

apt_private() {
    timeout 900 apt-get \
        -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
        -o Dir::Etc="$APT/etc" -o Dir::Etc::sourcelist="$APT/etc/sources.list" \
        -o Dir::Etc::sourceparts="$APT/etc/sources.list.d" \
        -o Dir::Etc::preferencesparts="$APT/etc/preferences.d" \
        -o Dir::State="$APT/state" -o Dir::State::Lists="$APT/lists" \
        -o Dir::State::status="$APT/state/status" -o Dir::Cache="$APT/cache" \
        -o Dir::Cache::archives="$APT/archives" -o Debug::NoLocking=1 \
        -o APT::Install-Recommends=0 -o APT::Sandbox::User=root "$@"
}

fetch_debs() {
    mkdir -p "$PI_CACHE" "$APT"/etc/sources.list.d "$APT"/etc/preferences.d "$APT"/lists/partial \
             "$APT"/archives/partial "$APT"/state "$APT"/cache
    [[ -e $APT/state/status ]] || : > "$APT/state/status"   # "nothing installed"
    local sources
    sources=$(printf 'deb [arch=arm64 signed-by=%s] %s/%s\n' \
        "$KEYRING" "$DEBIAN_MIRROR" "debian bookworm main" \
        "$KEYRING" "$DEBIAN_MIRROR" "debian bookworm-updates main" \
        "$KEYRING" "$DEBIAN_MIRROR" "debian-security bookworm-security main")
    if [[ ! -e $APT/etc/sources.list || $(cat "$APT/etc/sources.list") != "$sources" ]]; then
        printf '%s\n' "$sources" > "$APT/etc/sources.list"
        rm -f "$APT/lists.stamp"
    fi
    # Package lists at most a day old: re-running setup does not hit the mirror each time.
    if [[ -z $(find "$APT/lists.stamp" -mmin -1440 2>/dev/null) ]]; then
        say "apt (arm64, private): update"
        apt_private update > "$PI_CACHE/apt.log" 2>&1 \
            || { tail -n 20 "$PI_CACHE/apt.log" >&2; die "apt-get update (arm64) failed: is $DEBIAN_MIRROR reachable?"; }
        touch "$APT/lists.stamp"
    fi
    local packages=("${PACKAGES[@]}")
    [[ $PI_MOSQUITTO == 1 ]] && packages+=(mosquitto)
    say "apt (arm64, private): download ${packages[*]} and their dependencies"
    apt_private -y -q --download-only install "${packages[@]}" >> "$PI_CACHE/apt.log" 2>&1 \
        || { tail -n 20 "$PI_CACHE/apt.log" >&2; die "downloading the arm64 packages failed"; }
    # Drop superseded versions, so exactly one version of each package is unpacked.
    apt_private -q autoclean >> "$PI_CACHE/apt.log" 2>&1
}

unpack_root() {
    local want have=""
    want=$( (cd "$APT/archives" && ls -1 ./*.deb) | sha256sum | cut -c1-64)
    [[ -e $PI_CACHE/root.stamp ]] && have=$(cat "$PI_CACHE/root.stamp")
    if [[ $want == "$have" && -x $ROOT/usr/bin/python3.11 ]]; then
        say "root: up to date ($ROOT)"
        return
    fi
    say "root: unpacking $(ls "$APT"/archives/*.deb | wc -l) .debs into $ROOT"
    rm -rf "$ROOT" "$PI_CACHE/root.stamp" "$PI_CACHE/site.stamp"
    mkdir -p "$ROOT"
    local deb
    for deb in "$APT"/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
    echo "$want" > "$PI_CACHE/root.stamp"
}

install_wheels() {
    local py req constraints want have=""
    py=$(host_python)
    req=$PI_CACHE/requirements.txt
    constraints=$PI_CACHE/constraints.txt
    "$py" - "$REPO/pyproject.toml" "${TEST_TOOLS[@]}" > "$req" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
print("\n".join([*deps, *sys.argv[2:]]))
EOF
    # The same versions as the host's .venv, so the comparison is architecture only.
    "$py" -m pip freeze --exclude-editable 2>/dev/null | grep '==' > "$constraints" || true
    want=$(cat "$req" "$constraints" | sha256sum | cut -c1-64)
    [[ -e $PI_CACHE/site.stamp ]] && have=$(cat "$PI_CACHE/site.stamp")
    if [[ $want == "$have" && -d $SITE ]]; then
        say "wheels: up to date ($SITE)"
        return
    fi
    say "wheels: aarch64 only, binary only, into $SITE"
    rm -rf "$SITE.new"
    timeout 900 "$py" -m pip install -q --disable-pip-version-check --no-warn-script-location \
        --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
        --platform manylinux_2_28_aarch64 \
        --target "$SITE.new" -r "$req" -c "$constraints" 2> >(grep -v "is ignored: it is neither" >&2) \
        || die "pip could not install every dependency from an aarch64 wheel (see above)"
    rm -rf "$SITE"
    mv "$SITE.new" "$SITE"
    echo "$want" > "$PI_CACHE/site.stamp"
}

write_wrappers() {
    mkdir -p "$ROOT/usr/local/bin" "$PI_CACHE/pycache"
    # -0 makes the wrapper the guest's argv[0], hence sys.executable: a test that starts
    # `sys.executable -m ...` gets another emulated python, not an ENOEXEC.
    cat > "$WRAPPER" <<EOF
#!/bin/sh
# Written by deploy/pi/emulate-aarch64.sh: the emulated Debian 12 aarch64 python3.11.
exec nice -n $PI_NICE qemu-aarch64-static -L "$ROOT" -0 "$WRAPPER" "$ROOT/usr/bin/python3.11" "\$@"
EOF
    chmod 0755 "$WRAPPER"
    rm -f "$ROOT/usr/local/bin/mosquitto"
    if [[ -x $ROOT/usr/sbin/mosquitto ]]; then
        cat > "$ROOT/usr/local/bin/mosquitto" <<EOF
#!/bin/sh
# Written by deploy/pi/emulate-aarch64.sh: Debian 12's arm64 mosquitto, emulated.
exec qemu-aarch64-static -L "$ROOT" "$ROOT/usr/sbin/mosquitto" "\$@"
EOF
        chmod 0755 "$ROOT/usr/local/bin/mosquitto"
    fi
}

setup() {
    need_host_tools
    say "$(binfmt_state)"
    fetch_debs
    unpack_root
    install_wheels
    write_wrappers
    say "ready: $(emulated -c 'import platform, sys; print(platform.machine(), sys.version.split()[0])')"
}

require_root() {
    [[ -x $WRAPPER && -d $SITE ]] || die "no emulated root in $ROOT: run '$0 setup' first"
}

emulated() {
    # The emulated python on the repo, bounded in time, bytecode outside the work tree.
    PATH="$ROOT/usr/local/bin:$PATH" PYTHONPATH="$REPO" PYTHONPYCACHEPREFIX="$PI_CACHE/pycache" \
        timeout "$PI_TIMEOUT" "$WRAPPER" "$@"
}

compare() {
    local seed=${1:-7} nodes=${2:-7} runs=$PI_CACHE/runs py rc=0 f
    require_root
    py=$(host_python)
    rm -rf "$runs"
    mkdir -p "$runs"
    say "x86 ($(uname -m)): demo-virtual --seed $seed --nodes $nodes"
    (cd "$REPO" && PYTHONPATH="$REPO" timeout 600 "$py" deploy/pi/fingerprint.py run \
        --seed "$seed" --nodes "$nodes" --out "$runs/host") >&2
    say "emulated aarch64: the same (slower: emulation)"
    local start=$SECONDS
    (cd "$REPO" && emulated deploy/pi/fingerprint.py run \
        --seed "$seed" --nodes "$nodes" --out "$runs/aarch64") >&2
    say "emulated run took $((SECONDS - start)) s wall"
    for f in "$runs"/host/*; do
        [[ $(basename "$f") == fingerprint.json ]] && continue
        if cmp -s "$f" "$runs/aarch64/$(basename "$f")"; then echo "same bytes  $(basename "$f")"
        else echo "DIFFERENT   $(basename "$f")"; rc=1; fi
    done
    "$py" "$REPO/deploy/pi/fingerprint.py" compare "$runs/aarch64/fingerprint.json" \
        "$runs/host/fingerprint.json" || rc=1
    return $rc
}

run_tests() {
    require_root
    # No test path among the arguments (e.g. only `-x -q`): the default subset.
    local arg
    for arg in "$@"; do [[ $arg == tests* ]] && break; done
    [[ $# -gt 0 && $arg == tests* ]] || set -- "$@" "${DEFAULT_TESTS[@]}"
    # Per-test timeout scaled for emulation; no cache written into the work tree.
    (cd "$REPO" && emulated -m pytest -p no:cacheprovider --timeout 3000 "$@")
}

mixed() {
    # Real agents on this machine's mosquitto (the ground station), nodes AARCH64_IDS
    # (default 3) on emulated aarch64: deploy/pi/mixed_swarm.py.
    local n=${1:-3} py first=()
    [[ $# -gt 0 ]] && shift
    [[ $# -gt 0 ]] || set -- 3
    [[ ${PI_AARCH64_FIRST:-0} == 1 ]] && first=(--aarch64-first)
    require_root
    py=$(host_python)
    rm -rf "$PI_CACHE/mixed"
    (cd "$REPO" && PYTHONPYCACHEPREFIX="$PI_CACHE/pycache" timeout "$PI_TIMEOUT" "$py" \
        deploy/pi/mixed_swarm.py --nodes "$n" --aarch64 "$@" "${first[@]}" --emulated-python "$WRAPPER" \
        --out "$PI_CACHE/mixed")
}

status() {
    say "$(binfmt_state)"
    say "cache: $PI_CACHE"
    if [[ -x $WRAPPER ]]; then
        emulated -c 'import platform, sys, numpy, shapely, pymap3d
print(platform.machine(), "Python", sys.version.split()[0], "numpy", numpy.__version__,
      "shapely", shapely.__version__, "GEOS", shapely.geos_version_string,
      "pymap3d", pymap3d.__version__)'
    else
        say "not set up: run '$0 setup'"
    fi
}

what=${1:-}
[[ $# -gt 0 ]] && shift
case $what in
    setup) setup ;;
    python) require_root; emulated "$@" ;;
    compare) compare "$@" ;;
    test) run_tests "$@" ;;
    mixed) mixed "$@" ;;
    status) status ;;
    *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
