#!/usr/bin/env bash
# Packaging check: installs the build into a scratch prefix, then builds and
# runs programs against the installed tree the ways users do — pkg-config,
# CMake's find_package, and from C++17 — and checks what the shared library
# exports. Usage: check.sh SOURCE_DIR BUILD_DIR (QV_HTTPBIN_URL must be set).
set -euo pipefail
src=$1 build=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/quiver-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
url=${QV_HTTPBIN_URL:?QV_HTTPBIN_URL is not set: run through scripts/test}/get

cmake --install "$build" --prefix "$work/prefix" >/dev/null
prefix=$work/prefix
libdir=$(dirname "$(find "$prefix" -name 'libquiver.so' | head -n 1)")
export PKG_CONFIG_PATH=$libdir/pkgconfig LD_LIBRARY_PATH=$libdir

echo "== installed files"
for f in include/quiver.h "$(basename "$libdir")/libquiver.a" \
    "$(basename "$libdir")/pkgconfig/quiver.pc" \
    "$(basename "$libdir")/cmake/quiver/quiverConfig.cmake"; do
    [[ -e $prefix/$f ]] || { echo "missing: $f"; exit 1; }
done
soname=$(objdump -p "$libdir/libquiver.so" | awk '/SONAME/ {print $2}')
[[ $soname == libquiver.so.0 ]] || { echo "SONAME is '$soname'"; exit 1; }

echo "== exported symbols: only the public API, all qv_*, all versioned"
exported=$(nm -D --defined-only "$libdir/libquiver.so" | awk '$3 !~ /^QUIVER_/ {print $3}')
bad=$(grep -v '^qv_[a-z0-9_]*@@QUIVER_0$' <<<"$exported" || true)
[[ -z $bad ]] || { echo "unexpected exports:"; echo "$bad"; exit 1; }
for internal in qv_malloc qv_wire_decode_response qv_transfer_setup; do
    ! grep -q "^$internal@" <<<"$exported" || { echo "internal $internal exported"; exit 1; }
done
declared=$(grep -oE '[ *]qv_[a-z0-9_]+\(' "$src/include/quiver.h" | tr -d ' *(' | sort -u |
    grep -vxE 'qv_(get|post|put|patch|delete|head|options)')
for fn in $declared; do
    grep -q "^$fn@@QUIVER_0$" <<<"$exported" || { echo "declared but not exported: $fn"; exit 1; }
done
echo "$(wc -l <<<"$exported") functions exported"

echo "== pkg-config"
cc -std=c11 -Wall -Wextra -Werror "$here/consumer.c" -o "$work/pc" \
    $(pkg-config --cflags --libs quiver)
"$work/pc" "$url"

echo "== find_package"
cmake -S "$here" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm" >/dev/null
"$work/cm/consumer" "$url"

echo "== C++17"
c++ -std=c++17 -Wall -Wextra -Werror "$here/consumer.cpp" -o "$work/cpp" \
    $(pkg-config --cflags --libs quiver)
"$work/cpp" "$url?x=c%2B%2B"
echo "package checks passed"
