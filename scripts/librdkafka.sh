#!/usr/bin/env bash
# Builds a current librdkafka beside the system's (Debian 12: 2.0.2) from
# Debian 13's source package, once, into a cache reused between runs, and
# prints its prefix (pkg-config file in PREFIX/lib/pkgconfig).
#
#   scripts/librdkafka.sh              # 2.8.0 (Debian 13, trixie)
#   LIBRDKAFKA_VERSION=2.8.0 PRODUCERS_CACHE=~/.cache/producers scripts/librdkafka.sh
#
# apt-get fetches the source with a private sources list and lists folder
# (a trixie deb-src line, the mirror of the machine's own sources), so the
# system's apt configuration is left alone. Needs dpkg-dev, libssl-dev,
# zlib1g-dev, libzstd-dev, liblz4-dev (scripts/install-deps.sh).
set -euo pipefail

VERSION=${LIBRDKAFKA_VERSION:-2.8.0}
SUITE=${LIBRDKAFKA_SUITE:-trixie}
CACHE=${PRODUCERS_CACHE:-$HOME/.cache/producers}
PREFIX=$CACHE/librdkafka-$VERSION

if [ -f "$PREFIX/lib/pkgconfig/rdkafka.pc" ] && [ -f "$PREFIX/.complete" ]; then
  echo "$PREFIX"
  exit 0
fi

# The mirror the machine already uses for Debian (deb.debian.org by default).
mirror=$(grep -hoE '(https?://[^ ]+/debian)/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
           /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" >"$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
          -o APT::Sandbox::User=root)
{
  echo "librdkafka.sh: fetching librdkafka $VERSION ($SUITE) from $mirror"
  apt-get "${apt_opts[@]}" -qq update
  debver=$(apt-cache "${apt_opts[@]}" showsrc librdkafka | awk -v v="$VERSION" '
    $1 == "Version:" && index($2, v "-") == 1 { print $2; exit }')
  if [ -z "$debver" ]; then
    echo "librdkafka.sh: $SUITE has no librdkafka $VERSION" >&2
    exit 1
  fi
  (cd "$work/src" && apt-get "${apt_opts[@]}" -qq source "librdkafka=$debver")
  src=$(find "$work/src" -maxdepth 1 -type d -name "librdkafka-*" | head -1)
  echo "librdkafka.sh: building in $src into $PREFIX"
  rm -rf "$PREFIX"
  cd "$src"
  ./configure --prefix="$PREFIX" --disable-gssapi >/dev/null
  make -j "$(nproc)" libs >/dev/null
  make install >/dev/null
  touch "$PREFIX/.complete"
} >&2
echo "$PREFIX"
