#!/bin/bash
# Install the Debian packages smimegate needs, when root; otherwise print the exact apt line and
# fail. Usage: install-system-deps.sh run|test
set -euo pipefail
mode="${1:-run}"

run_pkgs=(gcc libmilter-dev openssl)
# chromium + chromium-driver: the web admin's browser tests (Playwright drives the system
# Chromium; its own browser download is not available everywhere).
# unbound + nsd + ldnsutils: SMIMEA lookups against a private DNSSEC-signed zone (issue 13).
test_pkgs=(gpgsm gnupg libnss3-tools s-nail postfix slapd ldap-utils chromium chromium-driver
           unbound nsd ldnsutils)

want=("${run_pkgs[@]}")
if [ "$mode" = test ]; then
    want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# Python's venv module (Debian splits it out) and the headers pymilter compiles against.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
fi
if ! python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    missing+=(python3-dev)
fi
if [ "$mode" = test ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "smimegate: missing system packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "smimegate: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix must not write a system configuration; our tests run private instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# Do not start system services from package scripts (containers, CI): we run private instances.
policy_created=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_created=1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ "$policy_created" = 1 ]; then
    rm -f /usr/sbin/policy-rc.d
fi
