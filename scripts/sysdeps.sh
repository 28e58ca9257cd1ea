#!/usr/bin/env bash
# System packages some tests need, installed from Debian's archive when missing:
#   prometheus (the server and promtool: tests/observability), chromium and chromium-driver
#   (the headless browser check), fonts-liberation (readable screenshots).
# Idempotent and fast when everything is present (one dpkg-query); `apt-get update` runs at
# most once, and only when something is missing. Needs root (or password-less sudo).
set -euo pipefail

PACKAGES=(prometheus chromium chromium-driver fonts-liberation)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0

if ! command -v apt-get >/dev/null; then
  echo "sysdeps: missing ${missing[*]} and no apt-get here: install them by hand" >&2
  exit 1
fi
if ((EUID == 0)); then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "sysdeps: missing ${missing[*]}: run 'make sysdeps' as root (or with sudo)" >&2
  exit 1
fi

echo "sysdeps: installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
