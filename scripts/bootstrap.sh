#!/usr/bin/env bash
# Set up this machine as a livelog controller and test-host runner. Idempotent and unattended.
#  1. apt: podman (with runc), debootstrap, python3-venv, chromium, npm (unless there is one) ...
#  2. /etc/containers/containers.conf: runc + rlimits the kernel lets podman set here
#  3. .venv at the repo root: ansible, molecule, linters (pinned), and ./app[test] when the app exists
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv

# Pinned together: this set went green on Debian 12 with podman 4.3 (molecule test -s default).
PIP_PINS=(
  'ansible-core==2.19.14'
  'ansible==12.3.0'
  'molecule==26.10.0'
  'molecule-plugins[podman]==26.10.12'
  'ansible-lint==26.10.1'
  'yamllint==1.38.0'
  'ruff==0.17.6'
  'mypy==2.4.1'
  'schemathesis==4.32.5'  # make fuzz: property-based tests from the API's OpenAPI
  'pip-tools==7.6.2'  # make lock: app/requirements.lock, with hashes
  'matplotlib==3.11.2'  # make bench: the chart of its figures
  'py-spy==0.4.3'  # make bench's profiles: where the time goes, from outside the process
  'boto3==1.44.8'  # amazon.aws modules (provision-ec2.yml) need boto3 and botocore on the controller
  'botocore==1.44.8'
  'moto[server]==5.2.5'  # make ec2-test: an AWS API emulator (moto_server) the EC2 playbooks run against
)
APT_PKGS=(podman runc crun conmon netavark aardvark-dns catatonit iptables uidmap
          debootstrap ca-certificates curl python3-venv python3-pip make git
          redis-server lsof)  # redis-server: the backend's cluster tests start their own; lsof: the seed guide's check

say() { echo "### bootstrap: $*"; }
[ "$(id -u)" -eq 0 ] || { echo "bootstrap.sh must run as root (apt, podman rootful)" >&2; exit 1; }

# 1. host packages. runc, not crun: crun 1.8 aborts on hybrid-cgroup hosts.
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# chromium: the viewer's browser tests drive /usr/bin/chromium with Playwright (never a downloaded browser); a host
# that has one there keeps it.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# npm: scripts/vendor-viewer.sh (the viewer's Socket.IO client, checked by `make lint`). Only where there is no npm at
# all: NodeSource's nodejs carries its own, and Debian's npm package would pull Debian's nodejs over it.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  say "apt install ${missing[*]}"
  APT=(apt-get -q -y -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
  "${APT[@]}" update
  "${APT[@]}" install --no-install-recommends "${missing[@]}" </dev/null
else
  say "apt packages present"
fi

# 2. podman config. Without CAP_SYS_RESOURCE podman's default rlimits (1048576) fail with
#    "setrlimit RLIMIT_NOFILE: Operation not permitted"; podman caps nproc at 32768 itself.
NOFILE=$(ulimit -Hn); NPROC=$(ulimit -Hu)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NPROC" = unlimited ] && NPROC=32768
[ "$NPROC" -gt 32768 ] && NPROC=32768
conf=$(cat <<CONF
# written by livelog scripts/bootstrap.sh
[containers]
default_ulimits = ["nofile=${NOFILE}:${NOFILE}", "nproc=${NPROC}:${NPROC}"]
[engine]
runtime = "runc"
CONF
)
mkdir -p /etc/containers
if [ "$(cat /etc/containers/containers.conf 2>/dev/null)" != "$conf" ]; then
  say "write /etc/containers/containers.conf"
  printf '%s\n' "$conf" > /etc/containers/containers.conf
fi

# 3. controller venv (Debian's python3: the one python3-venv belongs to)
if [ ! -x "$VENV/bin/python" ]; then
  say "create $VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
want=$(printf '%s\n' "pip>=24.1" "${PIP_PINS[@]}")
[ -f app/pyproject.toml ] && want="$want"$'\n'"app:$(sha256sum app/pyproject.toml | cut -c1-16)"
stamp=$VENV/.livelog-bootstrap
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # Debian 12's venv pip (23.0) ignores extras spelled with '_' (PEP 685): upgrade it first
  "$VENV/bin/pip" install -q --disable-pip-version-check 'pip>=24.1'
  say "pip install ${PIP_PINS[*]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PINS[@]}"
  if [ -f app/pyproject.toml ]; then
    say "pip install -e ./app[test]"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e './app[test]'
  fi
  printf '%s\n' "$want" > "$stamp"
else
  say "venv up to date"
fi
say "done"
