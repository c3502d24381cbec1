#!/bin/bash
# `make run` (DESIGN.md "Two commands"): an SQLite store, a configuration, a master key and a
# demo CA under ./var on first use, then the milter in the foreground on inet:8891@127.0.0.1
# (log lines on stdout; Ctrl-C stops it). Point Postfix at it as README.md
# "Pointing Postfix at it" says. Extra arguments go to `smimegate milter` (e.g. --socket).
# Beside it, `smimegate web` serves the admin pages at [web] listen (default
# http://127.0.0.1:8080/; WEB_LISTEN=HOST:PORT in the environment overrides it); on first use an account "admin" is made and its password printed
# once. The web server runs in the background in the same process group, so Ctrl-C (or a
# signal to the group) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR="$(pwd)/var"
CONF="$VAR/smimegate.toml"
SG=(.venv/bin/smimegate -c "$CONF")

mkdir -p "$VAR"
chmod 0750 "$VAR"
if [ ! -e "$CONF" ]; then
    # Relative paths are resolved against this file's directory (smimegate/config.py).
    cat > "$CONF" <<CONFIG
# Written by \`make run\` (scripts/run.sh). Every option and its default:
# \`.venv/bin/smimegate config sample\`.
[store]
url = "sqlite:///$VAR/smimegate.db"
master_key_file = "master.key"

[milter]
socket = "inet:8891@127.0.0.1"
log = "stdout"
reinject = "smtp:127.0.0.1:10026"
reinject_secret_file = "reinject.key"
CONFIG
    echo "smimegate: wrote $CONF"
fi

"${SG[@]}" db init
if [ "$("${SG[@]}" ca list --json)" = "[]" ]; then
    "${SG[@]}" ca create --root-cn "smimegate Demo Root CA" \
        --intermediate-cn "smimegate Demo Issuing CA" --org "smimegate demo" --default
fi
"${SG[@]}" milter -n "$@" >/dev/null
# Announce the socket the milter will use: --socket from the arguments wins over the config's.
SOCKET="$(sed -n 's/^socket = "\(.*\)"/\1/p' "$CONF" | head -1)"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --socket=*) SOCKET="${args[i]#--socket=}" ;;
        --socket) if ((i + 1 < ${#args[@]})); then SOCKET="${args[i + 1]}"; fi ;;
    esac
done
if [ "$("${SG[@]}" admin list --json)" = "[]" ]; then
    "${SG[@]}" admin add admin --role admin | sed 's/^/smimegate: /'
fi
LISTEN="${WEB_LISTEN:-$(sed -n 's/^listen = "\(.*\)"/\1/p' "$CONF" | head -1)}"
LISTEN="${LISTEN:-127.0.0.1:8080}"
"${SG[@]}" web --listen "$LISTEN" &
echo "smimegate: web admin on http://$LISTEN/ (sign in as admin)"
echo "smimegate: milter starting on $SOCKET (config $CONF); Ctrl-C stops it"
exec "${SG[@]}" milter "$@"
