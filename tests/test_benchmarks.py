"""Every script in benchmarks/ runs (issue 22: `make bench` broke at import and nothing noticed): each
with `--smoke`, tiny sizes, its table printed. The tables' figures are not checked here (they are
timings); that the scripts run and print them is."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"

# command -> the scripts it runs (run_all.py starts scale.py and bench_metrics.py; gpu_smoke.sh starts gpu_smoke.py)
RUNS = {
    ("run_all.py",): {"run_all.py", "scale.py", "bench_metrics.py"},
    ("pins_cost.py",): {"pins_cost.py"},
    ("error_rates.py",): {"error_rates.py"},
    ("gpu_smoke.sh",): {"gpu_smoke.sh", "gpu_smoke.py"},
}


def test_every_benchmark_script_is_run_below():
    scripts = {p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh")}
    assert scripts == set().union(*RUNS.values()), "a script in benchmarks/ that no test runs"


@pytest.mark.slow
@pytest.mark.parametrize("script", [c[0] for c in RUNS])
def test_benchmark_runs_and_prints_its_table(script, tmp_path):
    cmd = ["bash" if script.endswith(".sh") else sys.executable, str(BENCH / script), "--smoke"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "|" in r.stdout or "{" in r.stdout, r.stdout[-2000:]
    assert not list(tmp_path.iterdir()), "a smoke run writes nothing into the working directory"
