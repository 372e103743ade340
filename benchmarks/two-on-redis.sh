#!/usr/bin/env bash
# Two chatapp processes sharing one Redis, behind nginx on $PORT: the
# "two on Redis" target of ../shared/bench (see benchmarks/README.md).
#
#   PORT=5000 CHATAPP_STORE=redis://127.0.0.1:6379/0 benchmarks/two-on-redis.sh
#
# Run from the project root. The app processes listen on PORT+1 and PORT+2;
# nginx (deploy/nginx-scaled.conf) balances them by session cookie. Stops
# everything it started when it is stopped.
set -euo pipefail
: "${PORT:?PORT is required}" "${CHATAPP_STORE:?CHATAPP_STORE=redis://... is required}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
for i in 1 2; do
  .venv/bin/python -m chatapp --port $((PORT + i)) &
done
sed -e "s|@@PREFIX@@|$work|g" -e "s|@@LISTEN@@|127.0.0.1:$PORT|" \
    -e "s|@@UPSTREAMS@@|server 127.0.0.1:$((PORT + 1)); server 127.0.0.1:$((PORT + 2));|" \
    deploy/nginx-scaled.conf > "$work/nginx.conf"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx" -c "$work/nginx.conf" -p "$work" &
wait
