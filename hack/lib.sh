# The helpers every script of the project shares: phase headers, log lines, pass/fail/skip
# reporting with its summary line, and processes started in the background in a session of
# their own and stopped with everything they started. Sourced, never run:
#   . "$(dirname "${BASH_SOURCE[0]}")/<relative path to>/hack/lib.sh"
# shellcheck shell=bash

# ================================================================= output =====================

# step TEXT...: a phase header. CI finds the phases by the lines starting with "====".
step() { printf '\n==== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

# log TEXT...: "HH:MM:SS [$LOG_TAG] TEXT" on stderr (LOG_TAG: the script's short name).
log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "${LOG_TAG:-sbomjob}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ================================================================= checks =====================
# One line per check ("ok    NAME", "FAIL  NAME" with an excerpt of its output, "skip  NAME"),
# then `summary`: "N passed, M failed" (", K skipped" when some were), false if any failed.

passed=0 failed=0 skipped=0
# Which part of a failed check's output file is shown: head or tail, and how many lines.
REPORT_DETAIL=${REPORT_DETAIL:-head}
REPORT_DETAIL_LINES=${REPORT_DETAIL_LINES:-20}

pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
# fail NAME [FILE]: FILE holds the check's output; an excerpt is shown, indented.
fail() {
  failed=$((failed + 1))
  printf 'FAIL  %s\n' "$1"
  [[ -z ${2:-} ]] || "$REPORT_DETAIL" -n "$REPORT_DETAIL_LINES" -- "$2" | sed 's/^/      | /'
}
skip() { skipped=$((skipped + 1)); printf 'skip  %s\n' "$1"; }

# summary [--always-skipped] [PREFIX]: the last line of a checking script, after an empty
# line; --always-skipped prints ", 0 skipped" too. Returns 1 when a check failed.
# Both arguments are optional (most scripts pass none):
# shellcheck disable=SC2120
summary() {
  local always=0
  if [[ ${1:-} == --always-skipped ]]; then always=1; shift; fi
  echo
  if ((skipped || always)); then
    echo "${1:+$1: }$passed passed, $failed failed, $skipped skipped"
  else
    echo "${1:+$1: }$passed passed, $failed failed"
  fi
  ((failed == 0))
}

# ================================================================= processes ==================

# proc_alive PID: the process exists and is not a zombie (daemons reparented to PID 1 may be
# reaped late).
proc_alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# bg_start VAR LOG COMMAND...: runs COMMAND in the background in a session of its own
# (setsid), stdin from /dev/null, stdout and stderr to LOG, and stores its pid in VAR. A
# non-interactive shell's background job is no process-group leader, so setsid execs in
# place: the pid is also the id of the process group that COMMAND's children join.
bg_start() {
  local var=$1 out=$2
  shift 2
  setsid "$@" </dev/null >"$out" 2>&1 &
  printf -v "$var" '%s' "$!"
}

# bg_stop PID...: SIGTERM to each PID's process group (the command and what it started);
# empty or finished ones are skipped.
bg_stop() {
  local pid
  for pid in "$@"; do
    [[ -n $pid ]] || continue
    kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
}

# Long-running daemons with a pid file each: PIDDIR/NAME.pid and PIDDIR/NAME.cmd (the program,
# to tell our process from a later one with the same pid), output appended to LOGDIR/NAME.log.

# daemon_running PIDDIR NAME PID: PID still runs the program daemon_start recorded for NAME.
daemon_running() {
  local want
  want=$(cat "$1/$2.cmd" 2>/dev/null) || return 0
  grep -qF -- "$(basename "$want")" <<<"$(tr '\0' ' ' 2>/dev/null <"/proc/$3/cmdline")"
}

# daemon_alive PIDDIR NAME: the daemon NAME runs.
daemon_alive() {
  local pid
  [[ -f $1/$2.pid ]] || return 1
  pid=$(cat "$1/$2.pid")
  proc_alive "$pid" && daemon_running "$1" "$2" "$pid"
}

# daemon_start PIDDIR LOGDIR NAME COMMAND...: runs COMMAND detached (nohup, own session),
# appending to LOGDIR/NAME.log; dies if NAME already runs.
daemon_start() {
  local pids=$1 logs=$2 name=$3
  shift 3
  if daemon_alive "$pids" "$name"; then die "$name already running (pid $(cat "$pids/$name.pid"))"; fi
  log "starting $name"
  # 8>&- 9>&-: daemons must not inherit (and so hold) the scripts' lock files.
  nohup setsid "$@" </dev/null >>"$logs/$name.log" 2>&1 8>&- 9>&- &
  echo $! >"$pids/$name.pid"
  echo "$1" >"$pids/$name.cmd"
}

# daemon_stop PIDDIR NAME [TIMEOUT]: SIGTERM, then SIGKILL after TIMEOUT seconds (15); a pid
# file whose process is no longer ours is only removed.
daemon_stop() {
  local pids=$1 name=$2 timeout=${3:-15} pid i
  [[ -f $pids/$name.pid ]] || return 0
  pid=$(cat "$pids/$name.pid")
  if proc_alive "$pid" && ! daemon_running "$pids" "$name" "$pid"; then
    log "$name: pid $pid is no longer ours (stale pid file), not killing it"
  elif proc_alive "$pid"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      proc_alive "$pid" || break
      sleep 0.1
    done
    if proc_alive "$pid"; then
      log "$name did not stop on SIGTERM, killing"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$pids/$name.pid" "$pids/$name.cmd"
}
