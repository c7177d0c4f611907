#!/usr/bin/env bash
# Opens a report.html in headless Chromium: it must finish rendering with no
# script error, show every section and its charts, and leave a screenshot.
#   check_report.sh CHROMIUM REPORT_HTML SCREENSHOT_PNG
set -euo pipefail
chromium=$1 report=$2 screenshot=$3
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking)
dom=$(timeout 120 "$chromium" "${flags[@]}" --dump-dom "file://$report" 2>/dev/null)
if ! grep -q '<body[^>]*data-rendered="ok"' <<<"$dom"; then
  echo "check_report: $report did not finish rendering"
  exit 1
fi
if grep -q '<body[^>]*data-errors=' <<<"$dom"; then
  echo "check_report: script errors: $(grep -o 'data-errors="[^"]*"' <<<"$dom")"
  exit 1
fi
for section in model training activations gradients pictures; do
  grep -q "<section id=\"$section\"" <<<"$dom" || { echo "check_report: no '$section' section"; exit 1; }
done
charts=$(grep -o '<svg' <<<"$dom" | wc -l)
pictures=$(grep -o '<img' <<<"$dom" | wc -l)
if ((charts < 5 || pictures < 3)); then
  echo "check_report: only $charts charts and $pictures pictures"
  exit 1
fi
rm -f "$screenshot"
timeout 120 "$chromium" "${flags[@]}" --hide-scrollbars --window-size=1280,2400 --screenshot="$screenshot" \
  "file://$report" >/dev/null 2>&1
[[ -s $screenshot ]] || { echo "check_report: no screenshot"; exit 1; }
echo "check_report: report renders with $charts charts and $pictures pictures; screenshot $screenshot"
