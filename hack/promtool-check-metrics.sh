#!/usr/bin/env bash
# `promtool check metrics` on the operator's /metrics text (OpenMetrics) from FILE or stdin:
# prints promtool's lint problems and exits non-zero on any, or on text that is no OpenMetrics
# exposition of sbomjob's metrics (an empty input would pass the lint).
#
# promtool lints the Prometheus text format, which names a counter family with its _total
# suffix (as Prometheus stores the series) and has no "# UNIT" or "# EOF" lines; OpenMetrics
# names the family without the suffix. So counter families are renamed and those lines left out
# first, after checking that the text ends with "# EOF".
#
# promtool: $SBOMJOB_PROMTOOL, else e2e/cluster/promtool.sh's (built there if missing).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
promtool=${SBOMJOB_PROMTOOL:-$("$here/../e2e/cluster/promtool.sh")}
text=$(cat "${1:-/dev/stdin}")
if [[ $(tail -n 1 <<<"$text") != "# EOF" ]] || ! grep -q '^# TYPE sbomjob_' <<<"$text"; then
  echo "not an OpenMetrics exposition of sbomjob_ metrics (no '# TYPE sbomjob_' line, or no final '# EOF')" >&2
  exit 1
fi
awk '
  /^# HELP / { held = $0; next }
  /^# TYPE / {
    if ($4 == "counter") { sub("^# HELP " $3 " ", "# HELP " $3 "_total ", held); $3 = $3 "_total" }
    if (held != "") print held
    held = ""; print; next
  }
  /^# (UNIT|EOF)/ { next }
  { print }
' <<<"$text" | "$promtool" check metrics
