#!/usr/bin/env bash
# Seconds from a fresh clone to a live page with `make run`, and the size of .venv after it.
#   [REF=commit] scripts/time_make_run.sh [REPO] [CLONE_DIR]
# Clones REPO (default: this checkout) into CLONE_DIR (default: a new temp dir), starts
# `make run` in its own process group on free ports, polls the page until it answers, then
# stops the whole group. Run it twice for a warm pip cache; the second figure is the one to quote.
set -uo pipefail
repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
dir=${2:-$(mktemp -d)/traindash}
free_port() { python3 -c 'import random, socket
while True:
    p = random.randrange(20000, 30000); s = socket.socket()
    try: s.bind(("127.0.0.1", p)); break
    except OSError: pass
    finally: s.close()
print(p)'; }
export TRAINDASH_PORT=$(free_port) TRAINDASH_INGEST=tcp://127.0.0.1:$(free_port)
export TRAINDASH_ROWS=tcp://127.0.0.1:$(free_port) TRAINDASH_QUERY=tcp://127.0.0.1:$(free_port)
url=http://127.0.0.1:$TRAINDASH_PORT/
t0=$(date +%s.%N)
git clone -q "$repo" "$dir" && cd "$dir" || exit 1
[ -z "${REF:-}" ] || git checkout -q "$REF" || exit 1
setsid make run >make-run.log 2>&1 &
pgid=$!
rc=1
while kill -0 "$pgid" 2>/dev/null; do
  if curl -sf -o /dev/null --max-time 5 "$url"; then rc=0; break; fi
  sleep 0.5
  if (($(date +%s) - ${t0%.*} > 1800)); then break; fi
done
t1=$(date +%s.%N)
kill -TERM -- -"$pgid" 2>/dev/null
for _ in $(seq 1 40); do pgrep -g "$pgid" >/dev/null || break; sleep 0.5; done
pkill -KILL -g "$pgid" 2>/dev/null
if ((rc == 0)); then
  printf 'clone -> live page at %s: %.1f s\n' "$url" "$(echo "$t1 - $t0" | bc)"
else
  echo "no page at $url; see $dir/make-run.log" >&2
fi
printf '.venv after make run: %s\n' "$(du -sh .venv | cut -f1)"
echo "clone left in $dir"
exit $rc
