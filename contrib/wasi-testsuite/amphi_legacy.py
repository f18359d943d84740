"""The same adapter (amphi.py) for older wasi-testsuite runners, which run
their adapter as a command: `amphi_legacy.py --version` prints `amphi
VERSION`; `amphi_legacy.py --test-file T [--arg A]... [--env K=V]...
[--dir D]...` runs test T and exits with its code, each D preopened under
its own name, as under `wasmtime run --dir D`.

(Current runners load amphi.py as a module instead, and take an adapter
that prints anything for --version to be of this older kind.)
"""

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "amphi_adapter", Path(__file__).with_name("amphi.py"))
assert _spec is not None and _spec.loader is not None
amphi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(amphi)

parser = argparse.ArgumentParser()
parser.add_argument("--version", action="store_true")
parser.add_argument("--test-file", action="store")
parser.add_argument("--arg", action="append", default=[])
parser.add_argument("--env", action="append", default=[])
parser.add_argument("--dir", action="append", default=[])
args = parser.parse_args()

if args.version:
    print(f"{amphi.get_name()} {amphi.get_version()}")
    sys.exit(0)

env = dict(kv.split("=", 1) for kv in args.env)
dirs = [(Path(d), d) for d in args.dir]
argv = amphi.compute_argv(args.test_file, (args.arg, env, dirs))
sys.exit(subprocess.run(argv, check=False).returncode)
