#!/usr/bin/env bash
# Fails when git tracks a build output: an executable that is not a script
# (ELF, Mach-O, PE, or any file with the executable bit and no #! line), or
# a file over 1 MiB outside a testdata/ folder. `make test` (and so CI) runs
# it first. Usage: scripts/check-tree.sh [repo dir, default: this repo]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' entry; do
  mode=${entry%% *}
  path=${entry#*$'\t'}
  [ -f "$path" ] || continue # deleted in the work tree
  magic=$(head -c 4 "$path" | od -An -tx1 | tr -d ' \n')
  case "$magic" in
  7f454c46 | feedface | feedfacf | cefaedfe | cffaedfe | cafebabe | 4d5a*)
    echo "check-tree: $path is a compiled executable; build outputs stay out of git (add it to .gitignore)" >&2
    bad=1
    continue
    ;;
  esac
  if [ "$mode" = 100755 ] && [ "$(head -c 2 "$path")" != '#!' ]; then
    echo "check-tree: $path has the executable bit but is not a script (no #! line)" >&2
    bad=1
  fi
  case "/$path" in */testdata/*) continue ;; esac
  size=$(stat -c %s "$path")
  if [ "$size" -gt "$limit" ]; then
    echo "check-tree: $path is $size bytes, over 1 MiB outside testdata/" >&2
    bad=1
  fi
done < <(git ls-files -s -z | sed -z 's/^\([0-7]*\) [0-9a-f]* [0-3]\t/\1 \t/')
if [ "$bad" != 0 ]; then
  exit 1
fi
echo "check-tree: ok (no build outputs, no file over 1 MiB outside testdata/)"
