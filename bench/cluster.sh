#!/usr/bin/env bash
# Fan-out against one and two Socket.IO nodes behind one nginx, on molecule's cluster scenario: nginx, the API and
# Redis on livelog-cluster-lb, a Socket.IO server on each of livelog-cluster-node1 and -node2. One node: node2's
# server is stopped (nginx and the broadcaster move to node1); two nodes: both run. Each case is bench/fanout.py
# (clients on the lb container, through its nginx). Then bench/cluster_ratio.py prints how many clients each held
# at p99 <= 250 ms, the ratio, and the most viewers this host's cores could serve in that time with any number of
# nodes. The scenario's containers are removed at the end (KEEP=1 keeps them).
#   make bench-cluster        ONE=2000,3000,4000 TWO=4000,6000,8000 make bench-cluster   (clients per case)
set -euo pipefail
cd "$(dirname "$0")/.."
ONE=${ONE:-2000,3000,4000}
TWO=${TWO:-4000,6000,8000}

molecule create -s cluster
[ "${KEEP:-0}" = 1 ] || trap 'molecule destroy -s cluster' EXIT
molecule converge -s cluster

fanout() { python bench/fanout.py --container livelog-cluster-lb --latency-rates '' --seconds 20 "$@"; }
# node2 marked `down` in nginx's upstream (only for this bench; converge writes the site back): stopped alone, its
# share of a burst of handshakes got 502 "no live upstreams" from nginx rather than going to node1
node2() {  # node2 up in nginx's upstream, or down
  local mark=""
  [ "$1" = down ] && mark=" down"
  podman exec livelog-cluster-lb sed -i -E "/server livelog-cluster-node2:/ s/( down)?;\$/$mark;/" \
    /etc/nginx/sites-available/livelog.conf
  podman exec livelog-cluster-lb grep -n "server livelog-cluster-node" /etc/nginx/sites-available/livelog.conf
  podman exec livelog-cluster-lb nginx -s reload
}
podman exec livelog-cluster-node2 systemctl stop livelog-socketio
node2 down
fanout --nodes livelog-cluster-node1 --clients "$ONE" --results cluster-1-node.json
node2 up
podman exec livelog-cluster-node2 systemctl start livelog-socketio
fanout --nodes livelog-cluster-node1,livelog-cluster-node2 --clients "$TWO" --results cluster-2-nodes.json
python bench/cluster_ratio.py
