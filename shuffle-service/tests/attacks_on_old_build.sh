#!/usr/bin/env bash
# The attack tests (tests/attacks.rs) against the shuffle service as it was before them, then
# against this build: every attack must work on the old build (so its test fails there) and
# fail on this one (so its test passes). Prints one row per test.
#
#   bash shuffle-service/tests/attacks_on_old_build.sh
#
# OLD_COMMIT (default 1310324, the last commit before spark.authenticate, isolation and the
# limits) is built from `git archive` in its own target dir under $SIDECARS_CACHE (a debug
# build, ~10 min cold on 2 cores). A wrapper leaves out the flags the old build does not know
# (--auth, the new limits), so it runs with its own defaults; the tests use the old binary
# through SHUFFLE_SERVICE_BIN (tests/support/mod.rs).
set -euo pipefail
old_commit=${OLD_COMMIT:-1310324}
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${SIDECARS_CACHE:-$HOME/.cache/spark-sidecars}/old-shuffle-service
src=$cache/src-$old_commit
if [ ! -f "$src/Cargo.toml" ]; then
  rm -rf "$src" && mkdir -p "$src"
  git -C "$repo" archive "$old_commit" | tar -x -C "$src"
fi
(cd "$src" && CARGO_TARGET_DIR=$cache/target cargo build -q -p shuffle-service --bin shuffle-service)
old_bin=$cache/target/debug/shuffle-service
wrapper=$cache/shuffle-service-$old_commit
cat >"$wrapper" <<WRAP
#!/usr/bin/env bash
# $old_bin with only the flags it knows (the others, and their values, left out)
known=\$("$old_bin" --help | grep -o -- '--[a-z0-9-]*' | sort -u)
args=()
while [ \$# -gt 0 ]; do
  a=\$1; shift
  case "\$a" in
    --*)
      if grep -qx -- "\${a%%=*}" <<<"\$known"; then
        args+=("\$a")
      elif [[ "\$a" != *=* && \$# -gt 0 && "\$1" != --* ]]; then
        shift
      fi ;;
    *) args+=("\$a") ;;
  esac
done
exec "$old_bin" "\${args[@]}"
WRAP
chmod 755 "$wrapper"

cd "$repo"
cargo test -q -p shuffle-service --test attacks --no-run
logs=$(mktemp -d)
SHUFFLE_SERVICE_BIN=$wrapper cargo test -p shuffle-service --test attacks -- --test-threads 1 >"$logs/old" 2>&1 || true
cargo test -p shuffle-service --test attacks -- --test-threads 1 >"$logs/new" 2>&1 || true

result() { sed -n "s/^test $2 \.\.\. \([a-zA-Z]*\).*/\1/p" "$1" | head -1; }
# the first line of a failed test's panic message
why() {
  awk -v t="$2" '
    $0 == "---- " t " stdout ----" { on = 1; next }
    on && /panicked at/ { getline; print substr($0, 1, 150); exit }' "$1"
}
echo "| attack test | build $old_commit | this build ($(git rev-parse --short HEAD)) | why it fails on $old_commit |"
echo "|---|---|---|---|"
ok=1
for t in $(sed -n 's/^test \([a-z0-9_]*\) \.\.\. .*/\1/p' "$logs/new" | sort); do
  o=$(result "$logs/old" "$t"); n=$(result "$logs/new" "$t")
  echo "| \`$t\` | ${o:-?} | ${n:-?} | $(why "$logs/old" "$t" | tr '|' '/') |"
  [ "$o" = FAILED ] && [ "$n" = ok ] || ok=0
done
echo "logs: $logs/old $logs/new"
[ $ok = 1 ] || { echo "not every attack test fails on the old build and passes on this one" >&2; exit 1; }
