#!/usr/bin/env bash
# Builds dist/edgeagent_VERSION_ARCH.deb with dpkg-deb (no debhelper needed).
# /etc/edgeagent/edgeagent.yaml is a conffile: dpkg never overwrites it once
# edited (an upgrade that changes the example leaves edgeagent.yaml.dpkg-dist).
# usage: packaging/deb/build.sh VERSION DEB_ARCH BINARY OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=${1:?version} arch=${2:?deb arch} bin=${3:?binary} out=${4:?outdir}
# Debian versions: v1.2.3 -> 1.2.3; anything not starting with X.Y (a bare commit) -> 0~git<commit>, below every release.
version=${version#v}
[[ $version =~ ^[0-9]+\.[0-9] ]] || version="0~git${version}"
version=${version//-/+}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -D -m 0755 "$bin" "$stage/usr/bin/edgeagent"
install -d "$stage/lib/systemd/system"
sed 's#/usr/local/bin/edgeagent#/usr/bin/edgeagent#g' "$root/systemd/edgeagent.service" >"$stage/lib/systemd/system/edgeagent.service"
chmod 0644 "$stage/lib/systemd/system/edgeagent.service"
install -D -m 0644 "$root/systemd/edgeagent.sysusers" "$stage/usr/lib/sysusers.d/edgeagent.conf"
example=${EDGEAGENT_EXAMPLE_CONFIG:-$root/configs/edgeagent.yaml} # tests override it
install -D -m 0640 "$example" "$stage/etc/edgeagent/edgeagent.yaml"
install -D -m 0644 "$root/docs/deploy.md" "$stage/usr/share/doc/edgeagent/deploy.md"
install -D -m 0644 "$root/configs/edgeagent.yaml" "$stage/usr/share/doc/edgeagent/examples/edgeagent.yaml"

install -d "$stage/DEBIAN"
cat >"$stage/DEBIAN/control" <<CTL
Package: edgeagent
Version: $version
Architecture: $arch
Maintainer: edgeagent maintainers <edgeagent@localhost>
Section: net
Priority: optional
Depends: systemd (>= 247)
Installed-Size: $(du -sk "$stage" --exclude=DEBIAN | cut -f1)
Homepage: https://github.com/edgeagent/edgeagent
Description: MQTT edge agent for sensor gateways
 An embedded MQTT broker that decodes sensor readings, filters them, runs
 anomaly detectors, keeps local history and forwards alerts upstream, as one
 static binary under a hardened systemd service.
CTL
echo /etc/edgeagent/edgeagent.yaml >"$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$stage/DEBIAN/$s"; done

mkdir -p "$out"
deb="$out/edgeagent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb $(stat -c %s "$deb") bytes"
