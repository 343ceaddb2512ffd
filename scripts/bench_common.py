"""What the interleaved `*_vs_torch.py` comparisons share: the CPU's name for their
tables, and running one side of a comparison and reading its figure from its output."""

import platform
import re
import subprocess
import sys


def cpu_model():
    """The CPU's model name (Linux /proc/cpuinfo, else what platform knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_and_match(who, cmd, env, pattern):
    """Run `cmd`; the match of `pattern` in its stdout. Exits naming `who` (the calling
    script) when the command fails or prints no match."""
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{who}: {' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    m = re.search(pattern, out.stdout)
    if not m:
        sys.exit(f"{who}: no result line in the output of {' '.join(cmd)}:\n{out.stdout}")
    return m
