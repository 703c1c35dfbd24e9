#!/usr/bin/env bash
# Starts a Consul dev agent and three mailcluster nodes on loopback, prints
# where everything listens, and stops it all on Ctrl-C (or SIGTERM).
set -euo pipefail
cd "$(dirname "$0")/.."

MC=${MC:-bin/mailcluster}
CONSUL=${CONSUL:-$(command -v consul || echo bin/consul)}
DEMO_DIR=${DEMO_DIR:-./data/demo}
CONSUL_PORT=${CONSUL_PORT:-8500}
export MAILCLUSTER_ADMIN_PASSWORD=${MAILCLUSTER_ADMIN_PASSWORD:-demo-admin-pass}
export MAILCLUSTER_CLUSTER_SECRET=${MAILCLUSTER_CLUSTER_SECRET:-demo-cluster-secret-0123}

mkdir -p "$DEMO_DIR"
pids=()
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "stopping..."
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[$i]}" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$CONSUL" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$CONSUL_PORT" \
	-dns-port -1 -grpc-port -1 -grpc-tls-port -1 -log-level warn >"$DEMO_DIR/consul.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
	if curl -fs "http://127.0.0.1:$CONSUL_PORT/v1/status/leader" 2>/dev/null | grep -q 127; then break; fi
	sleep 0.1
done

for i in 1 2 3; do
	"$MC" serve --data-dir "$DEMO_DIR/node$i" --http-addr "127.0.0.1:808$i" --node-name "node$i" \
		--smtp-addr "127.0.0.1:252$i" --submission-addr "127.0.0.1:258$i" \
		--imap-addr "127.0.0.1:114$i" --pop3-addr "127.0.0.1:111$i" \
		--consul-addr "127.0.0.1:$CONSUL_PORT" --cluster-name demo --auto-admit --shared-path "$(pwd)/$DEMO_DIR/shared" >"$DEMO_DIR/node$i.log" 2>&1 &
	pids+=($!)
done
for i in 1 2 3; do
	for _ in $(seq 1 100); do
		if curl -fs "http://127.0.0.1:808$i/health" >/dev/null 2>&1; then break; fi
		sleep 0.1
	done
done

cat <<INFO

mailcluster demo: three nodes in cluster "demo"
  Consul UI      http://127.0.0.1:$CONSUL_PORT/ui/
  node1          http://127.0.0.1:8081/api/v1/   XML-API http://127.0.0.1:8081/MdMgmtWS   SMTP 127.0.0.1:2521  submission 127.0.0.1:2581
  node2          http://127.0.0.1:8082/api/v1/   XML-API http://127.0.0.1:8082/MdMgmtWS   SMTP 127.0.0.1:2522  submission 127.0.0.1:2582
  node3          http://127.0.0.1:8083/api/v1/   XML-API http://127.0.0.1:8083/MdMgmtWS   SMTP 127.0.0.1:2523  submission 127.0.0.1:2583
  admin          admin@localhost / $MAILCLUSTER_ADMIN_PASSWORD
  status         MAILCLUSTER_ADMIN_PASSWORD=$MAILCLUSTER_ADMIN_PASSWORD $MC status --url http://127.0.0.1:8081
  logs           $DEMO_DIR/node*.log, $DEMO_DIR/node*/logs/cluster.log

INFO
sleep 2 # let Consul run each node's first health check
MAILCLUSTER_ADMIN_PASSWORD=$MAILCLUSTER_ADMIN_PASSWORD "$MC" status --url http://127.0.0.1:8081 || true
echo
echo "Ctrl-C stops everything."
wait
