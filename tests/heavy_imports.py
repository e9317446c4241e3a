"""Which heavy libraries a command imports: the answers from a posterior (query, suggest) must
need numpy alone."""

import json
import subprocess
import sys

HEAVY = ("torch", "pymc", "pytensor", "jax")


def heavy_imports(argv: list[str]) -> list:
    """``[exit status, imported?...]`` of ``bayes-prune argv`` run in a fresh interpreter, one
    flag per library of :data:`HEAVY`."""
    code = ("import sys, json\nfrom bayes_prune.cli import main\n"
            f"rc = main({argv!r})\n"
            f"print(json.dumps([rc] + [m in sys.modules for m in {HEAVY!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])
