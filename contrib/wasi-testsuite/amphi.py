"""A runtime adapter for WebAssembly's wasi-testsuite: runs each test through
`amphi run`, the way its wasmtime adapter runs them through `wasmtime run`.

    python3 test-runner/wasi_test_runner.py -t tests/... \\
        -r /path/to/amphi/contrib/wasi-testsuite/amphi.py

Environment: AMPHI (the amphi command, default `amphi`; may hold options);
AMPHI_ROOT / AMPHI_STATE pick the store, as for amphi itself.

Each test module is packed once into an image (`amphi image pack --wasm`,
named by the module's sha256, so a rebuilt module gets a new image) and run
in a container on the host network (a test that serves prints the address
the runner connects to, as under wasmtime) with stdin open (`-i`). A test's
directories are bind-mounted under /wasi-testsuite/ and preopened under
the names the test asks for (`--wasm-preopen PATH::NAME`): the test root as
the guest's `/` in the current suite, `fs-tests.dir` and the like in older
ones. Nothing else is preopened, as under a bare `wasmtime run --dir`.
"""

import hashlib
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any, List

AMPHI = shlex.split(os.getenv("AMPHI", "amphi"))


def get_name() -> str:
    return "amphi"


def get_version() -> str:
    result = subprocess.run(AMPHI + ["--version"], encoding="UTF-8",
                            capture_output=True, check=True)
    # "amphi 0.1.0"
    return result.stdout.split()[-1]


def get_wasi_versions() -> List[str]:
    return ["wasm32-wasip1"]


def get_wasi_worlds() -> List[str]:
    return ["wasi:cli/command"]


def _image(test_path: str) -> str:
    digest = hashlib.sha256(Path(test_path).read_bytes()).hexdigest()
    ref = f"wasi-testsuite/{digest[:16]}:latest"
    have = subprocess.run(AMPHI + ["image", "inspect", ref],
                          capture_output=True, check=False)
    if have.returncode != 0:
        subprocess.run(AMPHI + ["image", "pack", "--wasm", test_path, "-t", ref],
                       capture_output=True, check=True)
    return ref


def _dirs(third: Any) -> List[tuple]:
    """(host, guest) pairs from either form the runner passes: a list of
    them (older suites), or the one root dir the guest gets as `/`."""
    if third is None:
        return []
    if isinstance(third, (str, os.PathLike)):
        return [(Path(third), "/")]
    return [(Path(h), g) for h, g in third]


def compute_argv(test_path: str, args_env_dirs: Any, *_rest: Any) -> List[str]:
    args, env, third = args_env_dirs
    argv = AMPHI + ["run", "--rm", "-i", "--network", "host"]
    for k, v in env.items():
        argv += ["-e", f"{k}={v}"]
    dirs = _dirs(third)
    for i, (host, guest) in enumerate(dirs):
        path = f"/wasi-testsuite/{i}"
        argv += ["-v", f"{Path(host).resolve()}:{path}",
                 "--wasm-preopen", f"{path}::{guest}"]
    if not dirs:
        argv += ["--wasm-preopen", "none"]
    argv += [_image(test_path)]
    argv += args
    return argv
