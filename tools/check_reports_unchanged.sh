#!/usr/bin/env bash
# Rebuild reports/ from results/ and fail unless it is byte for byte the committed reports/.
# Usage (from the repository root): tools/check_reports_unchanged.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-python}"
"$PYTHON" run_all.py --report-only > /dev/null
changes="$(git status --porcelain --untracked-files=all -- reports)"
if [ -n "$changes" ]; then
    echo "reports/ differs from the committed pages:"
    echo "$changes"
    git diff --stat -- reports
    exit 1
fi
echo "reports/ rebuilt byte for byte identical"
