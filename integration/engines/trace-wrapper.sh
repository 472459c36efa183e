#!/bin/sh
# Template (run-all.sh fills in @BRIG@ and @TRACE@): what the engines call as
# their runtime when BRIG_ENGINES_TRACE=1. It logs each command line, runs
# brig, and logs a failure's exit code with the last lines of its --log file.
trace="@TRACE@"
echo "$(date +%T.%N) [$PPID] $*" >>"$trace"
log=
prev=
for a in "$@"; do
  case "$prev" in --log) log=$a ;; esac
  case "$a" in --log=*) log=${a#--log=} ;; esac
  prev=$a
done
"@BRIG@" "$@"
rc=$?
if [ $rc != 0 ]; then
  echo "$(date +%T.%N) [$PPID] exit $rc of: $*" >>"$trace"
  [ -n "$log" ] && tail -n 3 "$log" 2>&1 | sed 's/^/    log: /' >>"$trace"
fi
exit $rc
