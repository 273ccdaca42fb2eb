#!/usr/bin/env bash
# Runs bench/c10k/c10k.ts with the soft limit on open files raised to 20,000 (or
# the hard limit, if lower): 10,000 connections need more descriptors than
# the usual soft limit of 1,024, in the server and in the client process
# (both inherit the limit from here).
#
# Usage: bash bench/c10k/c10k.sh [--connections 10000] [--rounds 3] [...]
# (the options of bench/c10k/c10k.ts). Uses $DENO, else deno on the PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
results="$(cd "$here/.." && pwd)/results"
want=20000
hard="$(ulimit -Hn)"
if [ "$hard" != "unlimited" ] && [ "$hard" -lt "$want" ]; then
  want="$hard"
fi
soft="$(ulimit -Sn)"
if [ "$soft" != "unlimited" ] && [ "$soft" -lt "$want" ]; then
  ulimit -Sn "$want"
fi
echo "c10k.sh: open files limit $(ulimit -Sn) (hard $(ulimit -Hn))" >&2

exec "${DENO:-deno}" run --allow-net --allow-run --allow-read --allow-env \
  --allow-write="$results" "$here/c10k.ts" "$@"
