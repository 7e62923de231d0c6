#!/usr/bin/env bash
# Functions the front-end benchmark scripts share. Source it from a script in bench/.

# Installs the Debian packages named in the arguments when one of them is missing (needs
# root and the package registry).
ensure_packages() {
    local package
    for package in "$@"; do
        if ! command -v "$package" >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
            return
        fi
    done
}

# Prints a TCP port on 127.0.0.1 that is free at the moment.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until `subnetlock up` has written STATE_DIR/state.json, for up to 2 minutes, then
# prints the host name and function key of its first site.
first_site_of() {
    local state_dir=$1
    for _ in $(seq 1 1200); do [ -f "$state_dir/state.json" ] && break; sleep 0.1; done
    python3 -c '
import json, sys
site = json.load(open(sys.argv[1]))["sites"][0]
print(site["host"], site["functions"][0]["key"])' "$state_dir/state.json"
}
