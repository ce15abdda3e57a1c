#!/usr/bin/env bash
# Packs this machine's Janus (Debian's) and iproute2's `ip` (bench.sh puts Janus's addresses on a
# veth with it) with every library they load, for a machine that has neither and no package
# registry to fetch them from (the 16-core machine lent to some sessions: BENCHMARKS.md).
#
#   loadtests/janus-portable.sh /tmp/janus-portable.tar.xz           # here
#   tar xJf janus-portable.tar.xz -C /tmp                            # there, then:
#   PATH=/tmp/janus-portable/bin:$PATH JANUS_LIB=/tmp/janus-portable/janus \
#     BIN=DIR SERVERS="jinke janus" loadtests/bench.sh
#
# glibc's libraries stay out: the other machine's are used (its glibc must be at least this
# one's). Debian's libsrtp2 does its crypto through NSS, which opens its soft token and freebl
# with dlopen (ldd does not list them): without them Janus stops at "error setting up libsrtp".
set -euo pipefail
[ $# = 1 ] || { echo "usage: $0 OUTPUT.tar.xz" >&2; exit 2; }
out=$(realpath "$1")
command -v janus >/dev/null || { echo "janus is not installed here (apt-get install janus)" >&2; exit 1; }
lib=/usr/lib/x86_64-linux-gnu
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/janus-portable
mkdir -p "$root"/{bin,real,lib} "$root"/janus/{plugins,transports,events,loggers}
cp "$(command -v janus)" "$(command -v ip)" "$root/real/"
cp "$lib/janus/plugins/libjanus_videoroom.so" "$root/janus/plugins/"
cp "$lib/janus/transports/libjanus_http.so" "$root/janus/transports/"
nss_opened=("$lib"/lib{softokn3,freebl3,freeblpriv3,nssdbm3}.{so,chk})
for f in $(ldd "$root"/real/* "$root"/janus/*/*.so "${nss_opened[@]/%.chk/.so}" 2>/dev/null |
  awk '/=> \//{print $3}' | sort -u); do
  case $(basename "$f") in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libresolv.so.* | ld-linux*) ;;
    *) cp -L "$f" "$root/lib/" ;;
  esac
done
cp "${nss_opened[@]}" "$root/lib/"
for b in janus ip; do
  printf '#!/bin/sh\nd=$(dirname "$(readlink -f "$0")")/..\nLD_LIBRARY_PATH="$d/lib" exec "$d/real/%s" "$@"\n' "$b" > "$root/bin/$b"
  chmod +x "$root/bin/$b"
done
tar cJf "$out" -C "$stage" janus-portable
echo "$out: $(du -h "$out" | cut -f1), $(ls "$root/lib" | wc -l) libraries"
