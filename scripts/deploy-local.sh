#!/usr/bin/env bash
# Deploy livelog into a throwaway local "host": a podman container running systemd, made from
# localhost/debian12-systemd (scripts/build-test-image.sh). Reuses the container when it exists.
#   scripts/deploy-local.sh [ansible-playbook options]   deploy (again), e.g. -e livelog_api_port=8001
#   scripts/deploy-local.sh --destroy                     remove the container and .local/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NAME=${LIVELOG_LOCAL_NAME:-livelog-local}
IMG=${IMG:-localhost/debian12-systemd}
PORT=${LIVELOG_LOCAL_PORT:-8080}            # HTTP: redirects to HTTPS
TLS_PORT=${LIVELOG_LOCAL_TLS_PORT:-8443}    # HTTPS, with a self-signed certificate made on the host
URL=https://127.0.0.1:$TLS_PORT
STATE=.local/deploy-local
export PATH=$ROOT/.venv/bin:$PATH ANSIBLE_CONFIG=$ROOT/ansible.cfg

if [ "${1:-}" = --destroy ]; then
  podman rm -f "$NAME" >/dev/null 2>&1 || true
  rm -rf .local
  echo "removed $NAME"
  exit 0
fi

command -v ansible-playbook >/dev/null || { echo "no .venv: run scripts/bootstrap.sh first" >&2; exit 1; }
podman image exists "$IMG" || { echo "no image $IMG: run scripts/build-test-image.sh first" >&2; exit 1; }

new_container() {
  echo "### starting $NAME from $IMG (systemd, published on 127.0.0.1:$PORT and 127.0.0.1:$TLS_PORT)"
  # systemd=always: tmpfs /run and /tmp, writable cgroup; SYS_ADMIN: the units' sandboxing needs it
  podman run -d --name "$NAME" --hostname "$NAME" --systemd=always --cap-add SYS_ADMIN \
    -p "127.0.0.1:$PORT:80" -p "127.0.0.1:$TLS_PORT:443" "$IMG" /lib/systemd/systemd >/dev/null
}

if ! podman container exists "$NAME"; then
  new_container
elif ! podman exec "$NAME" true >/dev/null 2>&1; then  # stopped, or listed as running with its systemd gone
  echo "### restarting $NAME"
  if ! podman restart "$NAME" >/dev/null; then
    # podman 4.3 leaves a container whose conmon died "stopping" for good: only removing it helps
    echo "### $NAME cannot be restarted ($(podman inspect -f '{{.State.Status}}' "$NAME")): making it anew"
    podman rm -f "$NAME" >/dev/null
    new_container
  fi
fi
# wait for systemd to finish booting (degraded is fine: some units do not apply in a container)
for _ in $(seq 60); do
  state=$(podman exec "$NAME" systemctl is-system-running 2>/dev/null || true)
  case $state in running|degraded) break ;; esac
  sleep 1
done

mkdir -p .local
cat > .local/inventory.ini <<INV
# written by scripts/deploy-local.sh
[livelog]
$NAME ansible_connection=containers.podman.podman ansible_python_interpreter=/usr/bin/python3
INV

# nginx holds two files per connection, and a container may open no more than its hard limit (the host's):
# the connection cap that fits it, at most the role's default (options given to this script still win)
nofile=$(podman exec "$NAME" sh -c 'ulimit -Hn')
[ "$nofile" = unlimited ] && nofile=1048576
max_connections=$(( (nofile - 2048) / 2 ))
[ "$max_connections" -gt 10000 ] && max_connections=10000

# the public URL is the published port: HTTP on $PORT redirects there
ansible-playbook -i .local/inventory.ini deploy.yml -e "livelog_public_url=$URL" \
  -e "livelog_max_connections=$max_connections" "$@"

# the deployment's API key, for this machine's user only; and a viewer token for every run, for an hour
mkdir -p "$STATE" && chmod 0700 "$STATE"
(umask 077 && podman exec "$NAME" cat /etc/livelog/api-key > "$STATE/api-key")
podman exec "$NAME" cat /etc/livelog/tls/self-signed.crt > "$STATE/ca.pem"
# the proof again, from here through the public URL, the certificate checked against the host's own
LIVELOG_API_KEYS=$(cat "$STATE/api-key") livelog smoke --base-url "$URL" --ca-file "$STATE/ca.pem"
token=$(podman exec "$NAME" /opt/livelog/current/bin/livelog token --env-file /etc/livelog/livelog.env --runs '*' --ttl 3600)
echo
echo "livelog is deployed in the container $NAME, with a self-signed certificate: $URL/"
echo "  the API key is in $STATE/api-key (mode 0600):"
echo "    curl -k -H \"Authorization: Bearer \$(cat $STATE/api-key)\" -X POST $URL/api/runs"
echo "  prove it again: .venv/bin/livelog smoke --base-url $URL --ca-file $STATE/ca.pem --api-key \"\$(cat $STATE/api-key)\""
echo "  follow a run:   .venv/bin/livelog tail RUN_ID --base-url $URL --ca-file $STATE/ca.pem --api-key \"\$(cat $STATE/api-key)\""
echo "  remove it: $0 --destroy"
echo
echo "Open the live log viewer (the token in the link lets this browser watch every run for an hour):"
echo "  $URL/#token=$token"
