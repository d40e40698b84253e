#!/usr/bin/env bash
# The README demo's last part: a vault server on loopback.  The machine that backs up holds a
# backup token (it can add, never delete), the machine that restores a restore token; neither
# holds the storage.  Usage: scripts/demo_server.sh WORKDIR FOLDER  (run by scripts/demo.sh).
set -euo pipefail
work=$1 files=$2
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

step "a vault server on loopback; the machines get tokens, never the storage"
rm -rf "$work/server"
strongroom server init --data "$work/server" --json | field token > "$work/admin.token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=http://127.0.0.1:$port
strongroom server run --data "$work/server" --listen "127.0.0.1:$port" 2> "$work/server.log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
python3 - "$server" "$server_pid" <<'PY'
import os, sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        urllib.request.urlopen(sys.argv[1] + "/v1/health", timeout=1).read()
        break
    except OSError:
        os.kill(int(sys.argv[2]), 0)  # the server died: stop with its error
        if time.monotonic() > deadline:
            sys.exit("the server did not start")
        time.sleep(0.1)
PY
echo "serving on $server (log: $work/server.log)"

admin() { STRONGROOM_TOKEN_FILE=$work/admin.token strongroom "$@"; }
admin init --vault "$server/demo"
admin token create --role backup --label demo-machine --server "$server" --json | field token > "$work/backup.token"
admin token create --role restore --label demo-restore --server "$server" --json | field token > "$work/restore.token"
admin token list --server "$server"

step "back up the folder through the server with the backup token"
backup() { STRONGROOM_TOKEN_FILE=$work/backup.token strongroom "$@"; }
point=$(backup backup files "$files" --vault "$server/demo" --source demo-files --json | field point)
echo "recovery point $point"
if backup forget "$point" --vault "$server/demo" 2> "$work/refused.txt"; then
    echo "a backup token must not forget points" >&2
    exit 1
fi
echo "a ransomed machine cannot destroy its backups: $(cat "$work/refused.txt")"

step "restore it with the restore token"
rm -rf "$work/restored-served"
STRONGROOM_TOKEN_FILE=$work/restore.token strongroom restore files "$point" --vault "$server/demo" --target "$work/restored-served" --verify
diff -r "$files" "$work/restored-served$files" && echo "files through the server: identical"
admin audit --server "$server" --limit 5

step "stop the server"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
trap - EXIT
echo "stopped"
