#!/usr/bin/env bash
# Builds the two custom handlers in release mode and writes one deployable zip per function app:
#
#   target/functions/function-app-a.zip   host.json, function-a/function.json, handler
#   target/functions/function-app-b.zip   host.json, function-b/function.json, handler
#
# Each zip is what WEBSITE_RUN_FROM_PACKAGE points at. The script only builds and zips; uploading
# the zips (for example to a blob with a SAS URL) is up to you.
#
# Environment:
#   PACKAGE_TARGET  Rust target triple (default x86_64-unknown-linux-gnu, the Linux
#                   Functions workers' architecture). The gnu binary links the build machine's
#                   glibc, so build on a system no newer than the worker image, or use
#                   x86_64-unknown-linux-musl for a static binary.
set -euo pipefail

workspace=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
functions="$workspace/functions"
target=${PACKAGE_TARGET:-x86_64-unknown-linux-gnu}
output="$workspace/target/functions"

cd "$workspace"
cargo build --release --locked -p subnetlock-functions --bins --target "$target"

binaries="$workspace/target/$target/release"
mkdir -p "$output"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT

# Writes $1.zip from the app folder $1 plus the binary $1 renamed to `handler`
# (the name that host.json's customHandler.description.defaultExecutablePath expects).
package_app() {
    local app=$1
    local stage="$staging/$app"
    local zip_file="$output/$app.zip"

    mkdir -p "$stage"
    cp -R "$functions/$app/." "$stage/"
    install -m 0755 "$binaries/$app" "$stage/handler"
    rm -f "$zip_file"

    # Both tools store the Unix mode, so `handler` stays executable after extraction.
    if command -v zip >/dev/null 2>&1; then
        (cd "$stage" && zip -q -r -X "$zip_file" .)
    else
        (cd "$stage" && python3 -m zipfile -c "$zip_file" ./*)
    fi
    echo "wrote $zip_file"
}

package_app function-app-a
package_app function-app-b
