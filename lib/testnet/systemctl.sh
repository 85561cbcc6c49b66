#!/bin/sh
# systemctl for baton testnet hosts: a small service supervisor that answers
# the systemctl verbs runbooks use, so one runbook drives the testnet and
# production (real systemd) with the same commands, over ssh.
#
# Units: /etc/systemd/system/NAME.service (the host's own, private /etc), else
# the packaged /lib/systemd/system/NAME.service (Debian's inspircd and knot
# units work as they are). [Service] keys understood, anything else is ignored:
#   ExecStart=        required; run by /bin/sh as `exec ...`; must stay in the foreground
#   ExecStartPre=     repeatable; a leading '-' ignores its failure, '+' runs it as root
#   ExecReload=       e.g. /bin/kill -HUP $MAINPID
#   ExecStop=         run before the stop signal; $MAINPID is set
#   User= Group=      never root for services; default root
#   WorkingDirectory= Environment=KEY=VALUE ...  EnvironmentFile=[-]FILE (KEY=VALUE lines)
#   RuntimeDirectory=NAME (/run/NAME) StateDirectory=NAME (/var/lib/NAME), owned by User
#   AmbientCapabilities=CAP_NET_BIND_SERVICE ... (granted through setpriv)
#   Type= simple, exec and notify all mean: ExecStart stays in the foreground
#   KillSignal=       default SIGTERM; TimeoutStopSec= seconds before SIGKILL, default 10
# No cgroups, dependencies or restart policies. Processes live in their own
# session; the main pid is also the process group that stop cleans up.
#
# State: /run/units/NAME.pid (main pid), NAME.pgid, NAME.failed (status of a
# main process that died on its own). Output: /var/log/units/NAME.log.
# Enabled = a symlink in /etc/systemd/system/multi-user.target.wants/;
# `systemctl boot` starts enabled units, as the testnet does when a host comes back
# (a unit that fails to start is reported; the others still start, as on a real boot).
# Masked = /etc/systemd/system/NAME.service is a symlink to /dev/null: start and
# enable refuse, as systemd does; a unit whose own file is there cannot be masked.
#
# Verbs: start stop restart try-restart reload kill is-active is-failed
# is-enabled enable disable mask unmask status show cat list-units reset-failed
# daemon-reload boot

UNITS=/etc/systemd/system
PACKAGED=/lib/systemd/system
WANTS=$UNITS/multi-user.target.wants
STATE=/run/units
LOGS=/var/log/units
SVC_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

quiet=; now=; value_only=; props=; kill_signal=

say() { [ -n "$quiet" ] || printf '%s\n' "$*"; }
die() { printf 'systemctl: %s\n' "$1" >&2; exit "${2:-1}"; }

unit_name() { u=${1%.service}; case $u in */* | '' | .*) die "invalid unit name $1" ;; esac; }

load() {
  file=$UNITS/$u.service
  if masked || [ ! -f "$file" ]; then file=$PACKAGED/$u.service; fi
  [ -f "$file" ] || return 1
  ExecStart=; ExecReload=; ExecStop=; User=; Group=; WorkingDirectory=/; Environment=
  RuntimeDirectory=; StateDirectory=; caps=; KillSignal=TERM; TimeoutStopSec=10; pres=0; section=
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[! 	]*}"}
    case $line in '' | '#'* | ';'*) continue ;; '['*) section=$line; continue ;; esac
    [ "$section" = '[Service]' ] || continue
    key=${line%%=*}; key=${key%"${key##*[! 	]}"}
    value=${line#*=}; value=${value#"${value%%[! 	]*}"}
    case $key in
      ExecStart) ExecStart=${value#[-@+!:]} ;;
      ExecStartPre) pres=$((pres + 1)); eval "pre_$pres=\$value" ;;
      ExecReload) ExecReload=${value#[-@+!:]} ;;
      ExecStop) ExecStop=${value#[-@+!:]} ;;
      User) User=$value ;;
      Group) Group=$value ;;
      WorkingDirectory) WorkingDirectory=${value#-} ;;
      Environment) Environment="$Environment $value" ;;
      EnvironmentFile) env_file "$value" ;;
      RuntimeDirectory) RuntimeDirectory="$RuntimeDirectory $value" ;;
      StateDirectory) StateDirectory="$StateDirectory $value" ;;
      AmbientCapabilities)
        for c in $value; do c=$(echo "${c#CAP_}" | tr 'A-Z' 'a-z'); caps="$caps,+$c"; done ;;
      KillSignal) KillSignal=${value#SIG} ;;
      TimeoutStopSec) TimeoutStopSec=${value%s} ;;
    esac
  done <"$file"
  [ -n "$ExecStart" ] || die "$u.service has no ExecStart" 1
  [ -n "$User" ] || User=root
  [ -n "$Group" ] || Group=$(id -gn "$User" 2>/dev/null) || die "$u.service: no user $User on this host" 1
  return 0
}

# KEY=VALUE lines of an EnvironmentFile become Environment entries (sh quoting).
env_file() {
  f=${1#-}
  if [ ! -f "$f" ]; then
    case $1 in -*) return 0 ;; *) die "$u.service: EnvironmentFile $f is missing" 1 ;; esac
  fi
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in '' | '#'* | ';'*) continue ;; *=*) Environment="$Environment $l" ;; esac
  done <"$f"
}

need_unit() { load || die "Unit $u.service not found." 5; }

masked() { [ -L "$UNITS/$u.service" ] && [ "$(readlink "$UNITS/$u.service")" = /dev/null ]; }

main_pid() { pid=$(cat "$STATE/$u.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

state_of() {
  if main_pid; then echo active; elif [ -e "$STATE/$u.failed" ]; then echo failed; else echo inactive; fi
}

# Run a command line as the unit's user with a clean environment (in a subshell: it execs).
run_as() {
  cmd=$1
  eval "set -- $Environment"
  if [ "$User" != root ]; then
    caps=${caps#,}
    if [ -n "$caps" ]; then
      set -- "$@" setpriv --reuid="$User" --regid="$Group" --init-groups --inh-caps="$caps" --ambient-caps="$caps"
    else
      set -- "$@" setpriv --reuid="$User" --regid="$Group" --init-groups
    fi
  fi
  home=$(getent passwd "$User" | cut -d: -f6)
  cd "$WorkingDirectory" || exit 200
  exec env -i PATH="$SVC_PATH" HOME="${home:-/}" USER="$User" LOGNAME="$User" LANG=C.UTF-8 \
    MAINPID="${MAINPID:-}" "$@" /bin/sh -c "$cmd"
}

supervise() {
  need_unit
  echo $$ >"$STATE/$u.pgid"
  (run_as "exec $ExecStart") &
  child=$!
  echo "$child" >"$STATE/$u.pid"
  wait "$child"
  status=$?
  if [ ! -e "$STATE/$u.stopping" ]; then
    echo "$status" >"$STATE/$u.failed"
    echo "systemctl: $u.service main process $child exited, status=$status"
  fi
  rm -f "$STATE/$u.pid" "$STATE/$u.pgid" "$STATE/$u.stopping"
}

start() {
  ! masked || die "Failed to start $u.service: Unit $u.service is masked." 1
  need_unit
  main_pid && return 0
  mkdir -p "$STATE" "$LOGS"
  rm -f "$STATE/$u.failed" "$STATE/$u.stopping" "$STATE/$u.pid"
  for d in $RuntimeDirectory; do install -d -m 0755 -o "$User" -g "$Group" "/run/$d" || return 1; done
  for d in $StateDirectory; do install -d -m 0755 -o "$User" -g "$Group" "/var/lib/$d" || return 1; done
  i=1
  while [ "$i" -le "$pres" ]; do
    eval "pre=\$pre_$i"
    optional= privileged=
    while :; do
      case $pre in
        -*) optional=1; pre=${pre#-} ;;
        +*) privileged=1; pre=${pre#+} ;;
        [@!:]*) pre=${pre#?} ;;
        *) break ;;
      esac
    done
    if ! (if [ -n "$privileged" ]; then User=root Group=root caps=; fi; run_as "$pre") >>"$LOGS/$u.log" 2>&1 </dev/null && [ -z "$optional" ]; then
      echo 1 >"$STATE/$u.failed"
      die "Job for $u.service failed: ExecStartPre failed. See $LOGS/$u.log." 1
    fi
    i=$((i + 1))
  done
  setsid -f "$0" __supervise "$u" >>"$LOGS/$u.log" 2>&1 </dev/null
  i=0
  while [ ! -s "$STATE/$u.pid" ] && [ ! -e "$STATE/$u.failed" ] && [ "$i" -lt 100 ]; do
    sleep 0.02; i=$((i + 1))
  done
  # A main process that dies at once (bad config, port in use) fails the start.
  sleep 0.2
  main_pid || die "Job for $u.service failed: the main process exited. See $LOGS/$u.log." 1
}

stop() {
  need_unit
  if ! main_pid; then rm -f "$STATE/$u.pid" "$STATE/$u.pgid"; return 0; fi
  pgid=$(cat "$STATE/$u.pgid" 2>/dev/null)
  : >"$STATE/$u.stopping"
  [ -z "$ExecStop" ] || (MAINPID=$pid run_as "$ExecStop") >>"$LOGS/$u.log" 2>&1 </dev/null
  kill -s "$KillSignal" "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt $((TimeoutStopSec * 20)) ]; do
    sleep 0.05; i=$((i + 1))
  done
  [ -z "$pgid" ] || /bin/kill -s KILL -- "-$pgid" 2>/dev/null
  kill -s KILL "$pid" 2>/dev/null
  rm -f "$STATE/$u.pid" "$STATE/$u.pgid" "$STATE/$u.stopping" "$STATE/$u.failed"
  return 0
}

reload() {
  need_unit
  main_pid || die "Job for $u.service failed: the unit is not active." 1
  [ -n "$ExecReload" ] || die "Job type reload is not applicable for unit $u.service." 1
  (MAINPID=$pid run_as "$ExecReload") >>"$LOGS/$u.log" 2>&1 </dev/null ||
    die "Job for $u.service failed: ExecReload failed. See $LOGS/$u.log." 1
}

enabled() { [ -L "$WANTS/$u.service" ]; }

status() {
  if masked; then
    echo "* $u.service"
    echo "     Loaded: masked (Reason: Unit $u.service is masked.)"
    echo "     Active: $(state_of)"
    [ "$(state_of)" = active ]
    return
  fi
  if ! load; then say "Unit $u.service could not be found."; return 4; fi
  st=$(state_of)
  main_pid || pid=
  en=disabled; enabled && en=enabled
  echo "* $u.service"
  echo "     Loaded: loaded ($file; $en)"
  case $st in
    active) echo "     Active: active (running)"; echo "   Main PID: $pid" ;;
    failed) echo "     Active: failed (Result: exit-code, status=$(cat "$STATE/$u.failed"))" ;;
    *) echo "     Active: inactive (dead)" ;;
  esac
  if [ -f "$LOGS/$u.log" ]; then echo; tail -n 10 "$LOGS/$u.log"; fi
  [ "$st" = active ]
}

show() {
  load || { LoadState=not-found; }
  st=$(state_of)
  main_pid || pid=0
  en=disabled; enabled && en=enabled
  if masked; then LoadState=masked; en=masked; fi
  for p in $(echo "${props:-Id,LoadState,ActiveState,SubState,MainPID,UnitFileState}" | tr ',' ' '); do
    case $p in
      Id) v=$u.service ;;
      LoadState) v=${LoadState:-loaded} ;;
      ActiveState) v=$st ;;
      SubState) case $st in active) v=running ;; failed) v=failed ;; *) v=dead ;; esac ;;
      MainPID) v=$pid ;;
      UnitFileState) v=$en ;;
      *) v= ;;
    esac
    if [ -n "$value_only" ]; then printf '%s\n' "$v"; else printf '%s=%s\n' "$p" "$v"; fi
  done
}

each_unit() {
  for f in "$UNITS"/*.service; do
    [ -f "$f" ] || continue
    n=${f##*/}; printf '%s\n' "${n%.service}"
  done
}

verb=
set -- "$@" --end--
while [ "$1" != --end-- ]; do
  a=$1; shift
  case $a in
    -q | --quiet) quiet=1 ;;
    --now) now=1 ;;
    --value) value_only=1 ;;
    -p | --property) props="$props,$1"; shift ;;
    --property=*) props="$props,${a#--property=}" ;;
    -s | --signal) kill_signal=$1; shift ;;
    --signal=*) kill_signal=${a#--signal=} ;;
    --no-pager | --no-block | --system | --no-legend | --plain | --full | -l | --kill-whom=* | --type=* | --all | -a) ;;
    -*) die "unsupported option $a" 2 ;;
    *) if [ -z "$verb" ]; then verb=$a; else set -- "$@" "$a"; fi ;;
  esac
done
shift
props=${props#,}
[ -n "$verb" ] || die 'usage: systemctl VERB [UNIT...] (see the comment at the top of this file)' 2

rc=0
case $verb in
  daemon-reload) exit 0 ;;
  list-units | list-unit-files)
    for u in $(each_unit); do load >/dev/null 2>&1; printf '%-24s loaded %s\n' "$u.service" "$(state_of)"; done
    exit 0 ;;
  boot)
    for link in "$WANTS"/*.service; do
      [ -L "$link" ] || continue
      n=${link##*/}; unit_name "$n"
      masked && continue
      (start) || printf 'systemctl: boot: %s.service failed to start\n' "$u" >&2
    done
    exit 0 ;;
  __supervise) unit_name "$1"; supervise; exit 0 ;;
esac
[ $# -gt 0 ] || die "$verb needs a unit name" 2
for arg in "$@"; do
  unit_name "$arg"
  case $verb in
    start) (start) || rc=$? ;;
    stop) (stop) || rc=$? ;;
    restart) (stop && start) || rc=$? ;;
    try-restart) if (load && main_pid); then (stop && start) || rc=$?; fi ;;
    reload) (reload) || rc=$? ;;
    kill)
      need_unit
      if main_pid; then
        pgid=$(cat "$STATE/$u.pgid" 2>/dev/null)
        /bin/kill -s "${kill_signal:-$KillSignal}" -- "-${pgid:-$pid}" || rc=1
      fi ;;
    is-active) st=inactive; load 2>/dev/null && st=$(state_of); say "$st"; [ "$st" = active ] || rc=3 ;;
    is-failed) st=inactive; load 2>/dev/null && st=$(state_of); say "$st"; [ "$st" = failed ] || rc=1 ;;
    is-enabled)
      if masked; then say masked; rc=1; continue; fi
      need_unit; if enabled; then say enabled; else say disabled; rc=1; fi ;;
    enable)
      if masked; then
        printf 'Failed to enable unit: Unit file %s is masked.\n' "$UNITS/$u.service" >&2; rc=1; continue
      fi
      need_unit; mkdir -p "$WANTS"; ln -sfn "../$u.service" "$WANTS/$u.service"
      [ -z "$now" ] || (start) || rc=$? ;;
    mask)
      if [ -e "$UNITS/$u.service" ] && ! masked; then
        printf 'Failed to mask unit: File %s already exists.\n' "$UNITS/$u.service" >&2; rc=1; continue
      fi
      mkdir -p "$UNITS"
      if ! masked; then ln -sfn /dev/null "$UNITS/$u.service"; say "Created symlink $UNITS/$u.service -> /dev/null."; fi
      [ -z "$now" ] || ! load 2>/dev/null || (stop) || rc=$? ;;
    unmask)
      if masked; then rm -f "$UNITS/$u.service"; say "Removed \"$UNITS/$u.service\"."; fi ;;
    disable)
      need_unit; rm -f "$WANTS/$u.service"
      [ -z "$now" ] || (stop) || rc=$? ;;
    status) (status) || rc=$? ;;
    show) (show) ;;
    cat) need_unit; echo "# $file"; cat "$file" ;;
    reset-failed) rm -f "$STATE/$u.failed" ;;
    *) die "unknown verb $verb" 2 ;;
  esac
done
exit $rc
