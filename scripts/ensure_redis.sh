#!/usr/bin/env bash
# Start a local redis-server when none answers on 127.0.0.1:6379 (installs Debian's redis-server if missing).
# appendonly: queued Celery tasks survive a Redis crash or restart (tests/faults/test_batch.py relies on it).
set -euo pipefail
port=6379
ping() { (exec 3<>/dev/tcp/127.0.0.1/$port && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if [ -n "${REDIS_URL:-}" ] && [[ "$REDIS_URL" != *"127.0.0.1:6379"* && "$REDIS_URL" != *"localhost:6379"* ]]; then
  exit 0  # a remote Redis is configured; nothing to start here
fi
ping && exit 0
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q redis-server
fi
mkdir -p var/redis
redis-server --daemonize yes --bind 127.0.0.1 --port $port --save "" --appendonly yes --dir "$PWD/var/redis" \
  --logfile "$PWD/var/redis/redis.log"
for _ in $(seq 50); do ping && exit 0; sleep 0.1; done
echo "redis-server did not answer on 127.0.0.1:$port" >&2
exit 1
