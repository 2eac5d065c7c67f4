#!/usr/bin/env bash
# Tests the Debian package and make install in scratch roots (nothing touches
# the host's /etc or dpkg database):
#   - a fresh install puts every file in place, the config 0640 root:edgeagent;
#   - an upgrade replaces an untouched config with the new example, but keeps
#     an edited one (the new example lands in edgeagent.yaml.dpkg-dist);
#   - remove keeps the config, purge deletes it;
#   - make install into DESTDIR never overwrites an existing config.
# usage: packaging/deb/test.sh BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:?usage: $0 BINARY}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
conf=etc/edgeagent/edgeagent.yaml

# Two package versions whose example configs differ.
cp "$repo/configs/edgeagent.yaml" "$tmp/example-v2.yaml"
echo "# example of version 1.1.0" >>"$tmp/example-v2.yaml"
"$here/build.sh" 1.0.0 amd64 "$bin" "$tmp/out" >/dev/null
EDGEAGENT_EXAMPLE_CONFIG="$tmp/example-v2.yaml" "$here/build.sh" 1.1.0 amd64 "$bin" "$tmp/out" >/dev/null
v1=$tmp/out/edgeagent_1.0.0_amd64.deb v2=$tmp/out/edgeagent_1.1.0_amd64.deb
[ "$(dpkg-deb --field "$v1" Package)" = edgeagent ] || fail "no control file"
[ "$(dpkg-deb --ctrl-tarfile "$v1" | tar -xO ./conffiles)" = /$conf ] || fail "conffiles does not list /$conf"

newroot() { # dir: an empty dpkg database
	mkdir -p "$1/var/lib/dpkg/info" "$1/var/lib/dpkg/updates" "$1/etc"
	touch "$1/var/lib/dpkg/status" "$1/var/lib/dpkg/available"
}
dpkgr() { # root args...
	local r=$1; shift
	dpkg --root="$r" --force-script-chrootless --force-depends --force-confold \
		--log="$r/dpkg.log" "$@" >"$r/out.log" 2>&1 || { cat "$r/out.log"; fail "dpkg $*"; }
}

# Fresh install.
r=$tmp/root1; newroot "$r"
dpkgr "$r" -i "$v1"
for f in usr/bin/edgeagent lib/systemd/system/edgeagent.service usr/lib/sysusers.d/edgeagent.conf $conf; do
	[ -e "$r/$f" ] || fail "$f not installed"
done
grep -q '^ExecStart=/usr/bin/edgeagent serve' "$r/lib/systemd/system/edgeagent.service" || fail "unit does not run /usr/bin/edgeagent"
"$r/usr/bin/edgeagent" version | grep -q edgeagent || fail "installed binary does not run"
gid=$(awk -F: '$1 == "edgeagent" { print $3 }' "$r/etc/group")
[ -n "$gid" ] || fail "postinst did not create the edgeagent group"
[ "$(stat -c '%a %u %g' "$r/$conf")" = "640 0 $gid" ] || fail "config is $(stat -c '%a %u %g' "$r/$conf"), want 640 0 $gid"
echo "ok: fresh install (config 0640 root:edgeagent, user created, unit points at /usr/bin)"

# Upgrade with an untouched config: the new example replaces it.
dpkgr "$r" -i "$v2"
grep -q 'example of version 1.1.0' "$r/$conf" || fail "untouched config not upgraded"
echo "ok: upgrade replaces an untouched config"

# Upgrade with an edited config: the edit stays.
r=$tmp/root2; newroot "$r"
dpkgr "$r" -i "$v1"
sed -i 's/^gateway_id: .*/gateway_id: greenhouse-7/' "$r/$conf"
dpkgr "$r" -i "$v2"
grep -q '^gateway_id: greenhouse-7' "$r/$conf" || fail "edited config overwritten by the upgrade"
grep -q 'example of version 1.1.0' "$r/$conf.dpkg-dist" || fail "new example not left as .dpkg-dist"
dpkgr "$r" -i "$v2" # reinstalling the same version keeps it too
grep -q '^gateway_id: greenhouse-7' "$r/$conf" || fail "edited config overwritten by a reinstall"
echo "ok: an edited config survives upgrade and reinstall (new example in .dpkg-dist)"

dpkgr "$r" -r edgeagent
[ ! -e "$r/usr/bin/edgeagent" ] || fail "remove left the binary"
grep -q '^gateway_id: greenhouse-7' "$r/$conf" || fail "remove deleted the config"
dpkgr "$r" -P edgeagent
[ ! -e "$r/$conf" ] || fail "purge left the config"
echo "ok: remove keeps the config, purge deletes it"

# make install into a DESTDIR: installs, then never overwrites an edited config.
d=$tmp/destdir
make -s -C "$repo" install DESTDIR="$d" >/dev/null
for f in usr/local/bin/edgeagent usr/local/lib/systemd/system/edgeagent.service usr/local/lib/sysusers.d/edgeagent.conf $conf; do
	[ -e "$d/$f" ] || fail "make install: $f missing"
done
echo "# mine" >>"$d/$conf"
make -s -C "$repo" install DESTDIR="$d" >/dev/null
grep -q '^# mine' "$d/$conf" || fail "make install overwrote an edited config"
make -s -C "$repo" uninstall DESTDIR="$d" >/dev/null
[ ! -e "$d/usr/local/bin/edgeagent" ] && [ -e "$d/$conf" ] || fail "make uninstall: binary left or config removed"
echo "ok: make install keeps an existing config; uninstall keeps it too"
