#!/usr/bin/env bash
# Build the local podman images localhost/debian12-systemd and localhost/debian13-systemd: Debian 12 (bookworm)
# and 13 (trixie) with systemd as PID 1, made with debootstrap from Debian's mirror (apt inside uses this machine's sources; no
# container registry is needed). Reuses an image when present;
#   --force   rebuild them anyway
# Facts behind each step are in the comments; they cost hours to find. iproute2 is there as on any VM or
# EC2 image: without `ip`, Ansible finds no default IPv4 address, which the split and cluster layouts use.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
WORK=${WORK:-/var/tmp/livelog-testhosts}
# Bump when the recipe changes: an image built by an older recipe is rebuilt.
RECIPE=2
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

say() { echo "### build-test-image: $*"; }
[ "$(id -u)" -eq 0 ] || { echo "build-test-image.sh must run as root (debootstrap, rootful podman)" >&2; exit 1; }
command -v debootstrap >/dev/null && command -v podman >/dev/null \
  || { echo "debootstrap/podman missing: run scripts/bootstrap.sh first" >&2; exit 1; }

# what this machine's apt names its own release (the image gets the same mirror, with its suite instead)
HOST_SUITE=$(. /etc/os-release && echo "$VERSION_CODENAME")

build() {
  local SUITE=$1 IMG=$2 R
  if [ $FORCE -eq 0 ] && podman image exists "$IMG" \
     && [ "$(podman image inspect -f '{{ index .Labels "livelog.image-recipe" }}' "$IMG")" = "$RECIPE" ]; then
    say "$IMG present (use --force to rebuild)"
    return 0
  fi

  R=$WORK/rootfs-$SUITE
  mkdir -p "$WORK"
  rm -rf "$R"
  say "debootstrap $SUITE (about a minute)"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2 \
    "$SUITE" "$R" >"$WORK/debootstrap-$SUITE.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap-$SUITE.log" >&2; exit 1; }

  # apt inside the image uses the same mirror as this host, for the image's own suite
  rm -f "$R/etc/apt/sources.list"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed "s/\b$HOST_SUITE\b/$SUITE/g" /etc/apt/sources.list.d/debian.sources > "$R/etc/apt/sources.list.d/debian.sources"
  elif [ -f /etc/apt/sources.list ]; then
    sed "s/\b$HOST_SUITE\b/$SUITE/g" /etc/apt/sources.list > "$R/etc/apt/sources.list"
  fi
  # the network may re-sign TLS with a private CA: give the image the host's trust store
  mkdir -p "$R/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
  # snapshot mirrors: Release files may be past Valid-Until
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\nAcquire::Retries "3";\n' \
    > "$R/etc/apt/apt.conf.d/99livelog-test"
  # pip upgraded inside a venv brings its own certifi: point it at the system bundle
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$R/etc/pip.conf"
  # each container gets its own machine id at boot
  : > "$R/etc/machine-id"; rm -f "$R/var/lib/dbus/machine-id"
  # no background apt runs competing for the dpkg lock during a converge
  for t in apt-daily.timer apt-daily-upgrade.timer; do ln -sf /dev/null "$R/etc/systemd/system/$t"; done
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
  # Ansible's apt cache_valid_time trusts the mtime of /var/lib/apt/lists when no update stamp exists:
  # a freshly emptied dir looks fresh and the update is skipped ("No package matching 'nginx'"). Backdate it.
  touch -d '2000-01-01 00:00:00' "$R/var/lib/apt/lists"

  say "podman import $IMG"
  podman rmi -f "$IMG" >/dev/null 2>&1 || true
  tar -C "$R" -c . | podman import \
    --change 'CMD ["/lib/systemd/systemd"]' --change 'STOPSIGNAL SIGRTMIN+3' \
    --change "LABEL livelog.image-recipe=$RECIPE" - "$IMG" >/dev/null
  rm -rf "$R"
  say "done: $IMG"
}

build bookworm localhost/debian12-systemd
build trixie localhost/debian13-systemd
