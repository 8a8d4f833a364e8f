"""Schemathesis over the whole /api/v2 OpenAPI schema, against the running app, with every check.

Run twice: on the embedded default (`make run`: SQLite, in-memory layers, worker in the server)
and on PostgreSQL + Redis. Every operation the schema lists is fuzzed (new endpoints included,
nothing is named here), with a real API key for those that need one. Passing means: no 5xx, no
status the schema does not document, no response off its schema, nothing the schema allows
refused and nothing it forbids accepted. The figures (operations, cases) are printed.

Bounded so both runs together stay within a few minutes on a 2-core machine: FUZZ_EXAMPLES cases
per operation and phase (more locally with e.g. FUZZ_EXAMPLES=200), a fixed seed so a run can
be repeated exactly (FUZZ_SEED to explore others).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.served_app import served_app

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
SEED = int(os.environ.get("FUZZ_SEED", "4"))
# A crash inside hypothesis on Python 3.11 (describing a strategy re-parses lambda sources, and
# CPython's AST constructor sometimes reports a recursion mismatch): the tool's fault, not a finding.
# The run is repeated once with the next seed; API failures are never retried.
CONFIG = Path(__file__).with_name("schemathesis.toml")
TOOL_CRASH = "SystemError: AST constructor recursion depth mismatch"


def _schemathesis(url: str, api_key: str, report_dir: Path, seed: int = SEED) -> tuple[subprocess.CompletedProcess[str], dict]:
    report_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", f"{url}/api/v2/openapi.json",
        "--max-examples", str(EXAMPLES), "--seed", str(seed), "--workers", "2",
        "--header", f"X-API-Key: {api_key}", "--request-timeout", "10",
        "--report", "json", "--report-dir", str(report_dir), "--output-truncate", "false",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})
    reports = sorted(report_dir.glob("json-*.json"))
    assert reports, f"schemathesis wrote no report:\n{done.stdout}\n{done.stderr}"
    return done, json.loads(reports[-1].read_text())


def tool_crash_in_coverage_only(stdout: str) -> bool:
    """The summary shows the coverage phase errored and the examples, fuzzing and stateful phases passed."""
    return "🚫 Coverage" in stdout and all(f"✅ {phase}" in stdout for phase in ("Examples", "Fuzzing", "Stateful"))


@pytest.mark.parametrize("kind", ["embedded", "postgres"])
def test_the_fuzzer_finds_no_server_error_and_no_schema_mismatch_in_any_operation(kind: str, tmp_path: Path) -> None:
    with served_app(kind) as app:
        operations = sum(len(methods) for methods in httpx.get(f"{app.url}/api/v2/openapi.json").json()["paths"].values())
        done, report = _schemathesis(app.url, app.api_key, tmp_path / "first")
        if report["errors"] and not report["failures"] and TOOL_CRASH in done.stdout:
            done, report = _schemathesis(app.url, app.api_key, tmp_path / "again", seed=SEED + 1)
        log = app.log.read_text()
    cases = report["test_cases"]
    print(f"\nfuzz {kind}: {report['operations']['tested']}/{operations} operations, {cases['generated']} cases, "
          f"{cases['with_failures']} failing, {len(report['failures'])} kinds of failure, {report['running_time']:.0f} s")
    assert report["operations"]["tested"] == report["operations"]["total"] == operations, report["operations"]
    assert report["failures"] == [] and cases["with_failures"] == 0, done.stdout[-20000:]
    if report["errors"]:
        # Errors here are schemathesis's own: its coverage phase sometimes crashes inside hypothesis
        # while generating (seen on two seeds in a row on a clean clone), before any request. They
        # are excused only when every other phase ran to the end; any API failure still fails.
        assert tool_crash_in_coverage_only(done.stdout), done.stdout[-20000:]
        print(f"fuzz {kind}: schemathesis's coverage phase crashed ({len(report['errors'])} runtime errors); the other phases passed")
    else:
        assert done.returncode == 0, done.stdout[-20000:]
    assert cases["generated"] >= operations * EXAMPLES, cases
    assert "Traceback" not in log, log[-5000:]
