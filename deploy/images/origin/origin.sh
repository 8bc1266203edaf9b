#!/bin/sh
# The example origin's main process (under tini, see origin.Dockerfile):
# busybox httpd serving /tmp/www, stopped gracefully on SIGTERM or SIGINT.
set -eu
www=/tmp/www
mkdir -p "$www" /tmp/origin
rm -rf "$www/cgi-bin"
cp -R /usr/local/share/origin/cgi-bin "$www/cgi-bin"
printf 'hello from %s\n' "$ORIGIN_NAME" >"$www/index.html"
echo ok >"$www/healthz"
: >/tmp/origin/fetches

# `httpd` is a symlink to busybox, so that httpd and the children it forks
# for each connection are found by name (`busybox pidof httpd`).
httpd -f -p "$ORIGIN_PORT" -h "$www" &
pid=$!

stop() {
  trap - TERM INT
  # The listener closes at once (new connections are refused, so an edge
  # retries elsewhere); children serving a request keep going.
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  n=0
  while busybox pidof httpd >/dev/null 2>&1 && [ "$n" -lt $((ORIGIN_DRAIN_SECONDS * 10)) ]; do
    sleep 0.1
    n=$((n + 1))
  done
  echo "origin $ORIGIN_NAME: stopped ($((n / 10)).$((n % 10)) s draining)" >&2
  exit 0
}
trap stop TERM INT
echo "origin $ORIGIN_NAME: busybox httpd on :$ORIGIN_PORT" >&2
# Returns when a trapped signal arrives (stop runs) or httpd exits by itself.
wait "$pid"
