#!/usr/bin/env bash
# Build a Debian 12 root filesystem that boots systemd in a container, and import it into
# Docker as image TAG.  Usage: systemd-image.sh TAG
#
# Only Debian packages (debootstrap), plus this machine's CA certificates, pip.conf and apt
# settings so that apt, pip/uv and npm inside work the same way as here.  The packages are
# what a fresh Debian 12 server has, plus Node.js/npm (slow to install, so baked in);
# install.sh still installs python3-venv and acl itself, so its apt path runs for real.
set -euo pipefail
TAG=$1
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,libpam-systemd,ca-certificates,python3,procps,iproute2,less
# npm's dependency graph is too big for debootstrap's resolver: apt installs it afterwards.
LATER="nodejs npm"
MIRROR=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d /var/tmp/teamhub-rootfs.XXXXXX)
trap 'rm -rf --one-file-system "$WORK"' EXIT
ROOT=$WORK/rootfs
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR"

# Trust the same certificate authorities, reuse the package-index settings.
cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$ROOT" update-ca-certificates >/dev/null
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
[ -f /etc/npmrc ] && mkdir -p "$ROOT/etc" && cp /etc/npmrc "$ROOT/etc/npmrc"
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  rm -f "$ROOT/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources "$ROOT/etc/apt/sources.list.d/"
fi
for f in /etc/apt/apt.conf.d/*; do
  grep -qs 'Acquire::' "$f" && cp "$f" "$ROOT/etc/apt/apt.conf.d/"
done

cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
chroot "$ROOT" apt-get update -q
DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y -q --no-install-recommends $LATER

# A container has no consoles, udev or hardware clock; these units only fail or wait there.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-remount-fs.service systemd-firstboot.service \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    systemd-modules-load.service systemd-hwdb-update.service; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
echo teamhub-test > "$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$ROOT/etc/hosts"
: > "$ROOT/etc/machine-id"
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin

tar --numeric-owner --xattrs --acls -C "$ROOT" -c . | docker import - "$TAG" >/dev/null
echo "$TAG"
