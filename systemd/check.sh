#!/usr/bin/env bash
# Checks systemd/edgeagent.service the way `make test` wants it:
#   1. `systemd-analyze verify` prints nothing (warnings fail too) for a copy of
#      the unit whose binary paths point at BINARY (verify needs them to exist);
#   2. `systemd-analyze security --offline=true` exposure <= MAX_EXPOSURE;
#   3. the sysusers.d file creates the user in a scratch root;
#   4. configs/edgeagent.yaml passes `edgeagent config check` (the unit's ExecStartPre);
#   5. self-test: a unit with an unknown key and a weaker sandbox both fail.
# usage: systemd/check.sh BINARY
set -euo pipefail
bin=$(realpath "${1:?usage: $0 BINARY}")
cd "$(dirname "$0")"
MAX_EXPOSURE=${MAX_EXPOSURE:-1.5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

verify() { # unit-file -> prints problems, returns 1 if any
	local out
	out=$(systemd-analyze verify "$1" 2>&1) || { echo "$out"; return 1; }
	[ -z "$out" ] || { echo "$out"; return 1; }
}
exposure() { # unit-file -> prints the overall exposure number
	systemd-analyze security --offline=true --no-pager "$1" 2>&1 |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
within() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

mkdir -p "$tmp/ok"
sed "s#/usr/local/bin/edgeagent#$bin#g" edgeagent.service >"$tmp/ok/edgeagent.service"
verify "$tmp/ok/edgeagent.service" || { echo "FAIL: systemd-analyze verify reported problems"; exit 1; }
echo "ok: systemd-analyze verify clean"

"$bin" config check --quiet ../configs/edgeagent.yaml || { echo "FAIL: configs/edgeagent.yaml does not pass ExecStartPre's check"; exit 1; }
echo "ok: configs/edgeagent.yaml passes edgeagent config check (ExecStartPre)"

score=$(exposure edgeagent.service)
[ -n "$score" ] || { echo "FAIL: no exposure score from systemd-analyze security"; exit 1; }
within "$score" "$MAX_EXPOSURE" || {
	systemd-analyze security --offline=true --no-pager edgeagent.service | grep '✗' || true
	echo "FAIL: exposure $score > $MAX_EXPOSURE"; exit 1; }
echo "ok: exposure $score <= $MAX_EXPOSURE"

mkdir -p "$tmp/root/etc" "$tmp/root/usr/lib/sysusers.d"
cp edgeagent.sysusers "$tmp/root/usr/lib/sysusers.d/edgeagent.conf"
systemd-sysusers --root="$tmp/root"
grep -q '^edgeagent:x:[0-9]*:[0-9]*:.*:/var/lib/edgeagent:' "$tmp/root/etc/passwd" ||
	{ echo "FAIL: sysusers did not create edgeagent"; exit 1; }
echo "ok: sysusers creates the edgeagent user"

# Self-test: the checks above must be able to fail.
mkdir -p "$tmp/bad"
sed 's/^Restart=on-failure/Restart=on-failure\nRestartSecs=5/' "$tmp/ok/edgeagent.service" >"$tmp/bad/edgeagent.service"
if verify "$tmp/bad/edgeagent.service" >/dev/null; then echo "FAIL: verify accepted an unknown key"; exit 1; fi
grep -v -e '^ProtectSystem=' -e '^PrivateUsers=' -e '^SystemCallFilter=' -e '^CapabilityBoundingSet=' \
	edgeagent.service >"$tmp/bad/weak.service"
weak=$(exposure "$tmp/bad/weak.service")
if within "$weak" "$MAX_EXPOSURE"; then echo "FAIL: a weakened unit scored $weak"; exit 1; fi
echo "ok: self-test (unknown key and a weakened sandbox ($weak) are caught)"
