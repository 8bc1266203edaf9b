# Shared by the deploy test scripts (source it): PASS/FAIL bookkeeping and
# polling with a deadline (no fixed sleeps as synchronisation).

passed=0
failed=0

pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# check DESCRIPTION command... : PASS if the command succeeds.
check() {
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# wait_until SECONDS command... : polls until the command succeeds; fails
# (returns 1) once SECONDS have passed.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
