#!/usr/bin/env bash
# Install the named Debian packages that are missing (each checked by the command it provides).
set -euo pipefail

declare -A command_of=(
    [containerd]=containerd
    [skopeo]=skopeo
    [docker-registry]=docker-registry
    [wrk]=wrk
    [apache2-utils]=ab
    [hey]=hey
    [util-linux]=taskset
    [nodejs]=node
)

missing=()
for package in "$@"; do
    command -v "${command_of[$package]:-$package}" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
