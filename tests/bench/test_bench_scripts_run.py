"""Every benchmark script still runs (with small counts) and prints figures.

Benchmarks measure; this only guards them against rot. No timing is asserted.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_runs_quick_and_prints_its_figures():
    result = subprocess.run(
        # Two at a time: no figure is checked, and the scripts wait on processes as much
        # as they compute.
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--jobs", "2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for script in sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "run_all.py"):
        assert f"=== {script}: exit 0" in result.stdout, f"{script} was not run by run_all.py"
    # Each script printed something beyond the runner's own banner lines.
    figures = [line for line in result.stdout.splitlines() if line and not line.startswith("===")]
    assert len(figures) >= 20
