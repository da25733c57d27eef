#!/usr/bin/env bash
# Checks systemd/ offline, without systemd as PID 1 (systemd >= 252's systemd-analyze):
#  - `systemd-analyze verify` of both units in a staged root: fails on any output, because verify
#    only warns (exit 0) on unknown keys and bad values;
#  - `systemd-analyze security --offline=yes`: fails when a unit's exposure is above
#    MAX_EXPOSURE (default 2.5);
#  - sysusers.d and tmpfiles.d syntax, and that the units' users, groups and credential
#    directory come from those files.
# One summary line per unit; exit 1 on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE="${MAX_EXPOSURE:-2.5}"
UNITS=(roadsightd.service roadsight-redis.service)
SYSUSERS=systemd/sysusers.d/roadsight.conf
TMPFILES=systemd/tmpfiles.d/roadsight.conf

fail() { echo "check-units: FAIL: $*" >&2; exit 1; }
for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
  command -v "$tool" >/dev/null || fail "$tool is missing (Debian: apt-get install systemd)"
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

# The staged box: the host's stock units (verify needs sysinit.target, network-online.target,
# ... under --root), ours where a package installs them, the sysusers/tmpfiles files.
unitdir="$root/usr/lib/systemd/system"
mkdir -p "$unitdir" "$root/etc" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
for d in /usr/lib/systemd/system /lib/systemd/system; do
  [ -d "$d" ] && { cp -R "$d/." "$unitdir/"; break; }
done
for u in "${UNITS[@]}"; do cp "systemd/$u" "$unitdir/"; done
cp "$SYSUSERS" "$root/usr/lib/sysusers.d/roadsight.conf"
cp "$TMPFILES" "$root/usr/lib/tmpfiles.d/roadsight.conf"

# verify exits 1 when an Exec*= binary is missing under --root and looks no further: an
# executable placeholder is all it needs. "-"-prefixed commands are not checked.
while read -r exe; do
  mkdir -p "$root$(dirname "$exe")"
  printf '#!/bin/sh\nexit 0\n' > "$root$exe"
  chmod 0755 "$root$exe"
done < <(sed -n 's/^Exec[A-Za-z]*=[-+!@:]*\(\/[^ ]*\).*/\1/p' "${UNITS[@]/#/systemd/}" | sort -u)

out=$(systemd-analyze --man=no verify --root="$root" "${UNITS[@]}" 2>&1) ||
  fail "systemd-analyze verify exited non-zero:"$'\n'"$out"
[ -z "$out" ] || fail "systemd-analyze verify printed:"$'\n'"$out"

# systemd takes a DeviceAllow= path literally (no globs, unlike the char-<name> form) and only
# says so when the unit starts.
bad=$(grep -Hn '^DeviceAllow=/[^ ]*[][*?]' "${UNITS[@]/#/systemd/}" || true)
[ -z "$bad" ] || fail "a DeviceAllow= path cannot hold a glob, use char-<name>:"$'\n'"$bad"

for u in "${UNITS[@]}"; do
  report=$(systemd-analyze security --offline=yes --root="$root" "$u" 2>&1) ||
    fail "$u: systemd-analyze security failed:"$'\n'"$report"
  exposure=$(sed -n "s/.*Overall exposure level for $u: \([0-9.]*\).*/\1/p" <<<"$report")
  [ -n "$exposure" ] || fail "$u: no exposure figure in:"$'\n'"$report"
  awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' ||
    fail "$u: exposure $exposure is above $MAX_EXPOSURE:"$'\n'"$(grep '✗' <<<"$report")"
  echo "check-units: $u: verify clean, exposure $exposure (max $MAX_EXPOSURE)"
done

# sysusers: syntax (--dry-run writes nothing), then every User=/Group=/SupplementaryGroups=
# name is ours or one of systemd's basic groups.
# As root the users are created in the staged root for real: tmpfiles.d below chowns to them.
dry=(--dry-run); [ "$(id -u)" -ne 0 ] || dry=()
cp /usr/lib/sysusers.d/basic.conf "$root/usr/lib/sysusers.d/" 2>/dev/null || true
out=$(SYSTEMD_LOG_LEVEL=warning systemd-sysusers --root="$root" "${dry[@]}" 2>&1) &&
  [ -z "$out" ] || fail "$SYSUSERS:"$'\n'"$out"
basic=/usr/lib/sysusers.d/basic.conf
for name in $(sed -n 's/^\(User\|Group\|SupplementaryGroups\)=//p' "${UNITS[@]/#/systemd/}" | tr ' ' '\n' | sort -u); do
  grep -Eqs "^[ug][[:space:]]+$name[[:space:]]" "$SYSUSERS" "$basic" ||
    fail "user or group '$name' of the units is not created by $SYSUSERS"
done

# tmpfiles: 252 has no --dry-run, so create into the staged root (needs root for the chown).
# Then every LoadCredential= directory of the units must exist there.
if [ "$(id -u)" -eq 0 ] || systemd-tmpfiles --help | grep -q -- --dry-run; then
  dry=(); [ "$(id -u)" -eq 0 ] || dry=(--dry-run)
  out=$(SYSTEMD_LOG_LEVEL=warning systemd-tmpfiles --root="$root" --create "${dry[@]}" roadsight.conf 2>&1) &&
    [ -z "$out" ] || fail "$TMPFILES:"$'\n'"$out"
  if [ ${#dry[@]} -eq 0 ]; then
    for dir in $(sed -n 's/^LoadCredential=[^:]*:\(\/.*\)/\1/p' "${UNITS[@]/#/systemd/}"); do
      [ -d "$root$dir" ] || fail "LoadCredential= directory $dir is not created by $TMPFILES"
    done
  fi
  echo "check-units: sysusers.d and tmpfiles.d clean"
else
  echo "check-units: sysusers.d clean; tmpfiles.d not checked (needs root or systemd >= 254)"
fi
