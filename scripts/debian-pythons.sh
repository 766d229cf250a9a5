#!/usr/bin/env bash
# Fetch CPython interpreters that this Debian release lacks from newer Debian suites, for
# scripts/test-dist.sh: CPython 3.13 (trixie) and 3.14 (sid). No current Debian suite has 3.12,
# and PyPI ships no CPython builds, so 3.12 is not to be had from the registries CI reaches.
#
#   scripts/debian-pythons.sh DEST [VERSION:SUITE ...]     (default: 3.13:trixie 3.14:sid)
#
# Prints the path of each interpreter that works, one a line (progress goes to stderr). Each
# version lands in DEST/VERSION/ with its suite's C library and the libraries its standard
# modules load (ssl, decimal, ctypes, lzma, ...): the interpreter is patched (patchelf) to load
# exactly those, so nothing is installed on the machine but patchelf. apt reads its package
# lists from DEST/apt, never from or into the system's. A version that cannot be fetched or does
# not start is skipped with a message.
set -euo pipefail
DEST=${1:?usage: debian-pythons.sh DEST [VERSION:SUITE ...]}
shift
SPECS=("$@")
[ ${#SPECS[@]} -gt 0 ] || SPECS=(3.13:trixie 3.14:sid)
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
ARCH=$(dpkg --print-architecture)
TRIPLET=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")

if ! command -v patchelf >/dev/null; then
    echo "== apt-get install patchelf" >&2
    apt-get install -y -q patchelf >&2 || { apt-get update -q >&2 && apt-get install -y -q patchelf >&2; } \
        || { echo "!! no patchelf: no interpreters" >&2; exit 0; }
fi

fetch() {  # $1 version, $2 suite
    local version=$1 suite=$2 apt_dir=$DEST/apt/$2 root=$DEST/$1
    local -a apt=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
                  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
                  -o APT::Architecture="$ARCH" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    if [ -x "$root/usr/bin/python$version" ] && "$root/usr/bin/python$version" -c 'import ssl' 2>/dev/null; then
        echo "$root/usr/bin/python$version"
        return
    fi
    echo "== CPython $version from Debian $suite -> $root" >&2
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    echo "deb http://deb.debian.org/debian $suite main" > "$apt_dir/sources.list"
    apt-get "${apt[@]}" -q update >&2 || return 1
    # The interpreter, its standard library, and the shared libraries they load, all from the
    # same suite (the suite's C library is newer than this machine's).
    (cd "$apt_dir/debs" && apt-get "${apt[@]}" -q download \
        "python$version-minimal" "libpython$version-minimal" "libpython$version-stdlib" \
        libc6 libssl3t64 libmpdec4 libexpat1 libffi8 zlib1g libbz2-1.0 liblzma5 libzstd1 \
        libuuid1 libsqlite3-0 >&2) || return 1
    rm -rf "$root"
    mkdir -p "$root"
    for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
    local libs=$root/usr/lib/$TRIPLET py=$root/usr/bin/python$version
    # DT_RPATH (not RUNPATH) so that the modules Python loads later find these libraries too.
    patchelf --set-interpreter "$libs/$(basename "$(ls "$libs"/ld-linux*.so.* | head -1)")" \
        --force-rpath --set-rpath "$libs" "$py"
    "$py" -c 'import ssl, decimal, ctypes, lzma, sqlite3, venv' >&2 || return 1
    echo "$py"
}

for spec in "${SPECS[@]}"; do
    fetch "${spec%%:*}" "${spec#*:}" || echo "!! CPython ${spec%%:*} from ${spec#*:}: not available" >&2
done
