#!/usr/bin/env bash
# Runs the vitest suite and ends with the line CI reads: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp /tmp/g8os-vitest-XXXXXX.json)
trap 'rm -f "$report"' EXIT
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
code=$?
node -e '
const fs = require("fs");
let r = {};
try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch {}
const passed = r.numPassedTests ?? 0;
// A test file that failed to load counts as a failure too.
const failedSuites = (r.testResults ?? []).filter((t) => t.status === "failed" && (t.assertionResults ?? []).length === 0).length;
const failed = (r.numFailedTests ?? 0) + failedSuites + (r.testResults ? 0 : 1);
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
process.exit(failed > 0 ? 1 : 0);
' "$report"
summary=$?
[ $code -ne 0 ] && [ $summary -eq 0 ] && exit $code
exit $summary
