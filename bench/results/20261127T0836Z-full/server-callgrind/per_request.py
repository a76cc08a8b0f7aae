"""Instructions per request of the worker from run.sh's two runs: (3,000-run minus
600-run) / 2,400, by function. usage: per_request.py TAG inc|exc N"""
import glob
import os
import re
import subprocess
import sys

WORK = os.environ.get("WORK", "/tmp/lbcore-cg")
def load(path, inclusive):
    out = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", path], capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)", line)
        if m and not m.group(2).startswith(("=>","*")):
            v = int(m.group(1).replace(",", "")); name = re.sub(r"\s*\[/.*", "", m.group(2).strip()); name = re.sub(r"^/tmp/python-build[^:]*:|^/project/[^:]*:", "", name)
            d[name] = d.get(name, 0) + v
    return d
tag = sys.argv[1]; inc = sys.argv[2] == "inc"; N = int(sys.argv[3])
a = load(max(glob.glob(f"{WORK}/cg.{tag}.600.*"), key=os.path.getsize), inc)
b = load(max(glob.glob(f"{WORK}/cg.{tag}.3000.*"), key=os.path.getsize), inc)
rows = sorted(((b.get(k, 0) - a.get(k, 0)) / 2400, k) for k in set(a) | set(b))
for v, k in reversed(rows[-N:]):
    print(f"{v:10.0f}  {k[:140]}")
