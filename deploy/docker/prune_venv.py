"""Image builds: drop from a service's virtual environment what the service never loads.

Run in a Dockerfile's builder stage after `uv sync` (bind-mounted, so it is not part of any image):

    python prune_venv.py --venv /app/.venv --lock uv.lock --package emostream-classifier --protos-only tensorflow
    python prune_venv.py --venv /app/.venv --remove tensorflow/include --uninstall libclang

--protos-only PKG keeps only PKG's generated protobuf modules (`*_pb2.py`) and uninstalls every
package that the service reaches only through PKG (read from uv.lock). The classifier needs this for
TensorFlow: tensorflow-serving-api imports TensorFlow's protos from the `tensorflow` package, and
that is all it uses of its 1.8 GB. The Dockerfile imports the service afterwards, so a pruned
module the service does need fails the build, not the deployment.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

PROTO_SUFFIX = "_pb2.py"


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"prune_venv: expected one site-packages under {venv}, found {len(found)}")
    return found[0]


def only_through(lock: Path, package: str, via: str) -> set[str]:
    """Packages in `package`'s dependency closure that are reached only through `via` (not `via` itself)."""
    graph = {
        p["name"]: [d["name"] for d in p.get("dependencies", [])] for p in tomllib.loads(lock.read_text())["package"]
    }

    def closure(skip: str | None) -> set[str]:
        seen: set[str] = set()
        todo = [package]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name != skip:
                todo.extend(graph.get(name, []))
        return seen

    return closure(None) - closure(via) - {via}


def keep_protos(package_dir: Path) -> int:
    """Delete everything in `package_dir` but `*_pb2.py`; empty `__init__.py` files keep it importable."""
    kept = 0
    for path in sorted(package_dir.rglob("*"), reverse=True):  # children before their folders
        if path.is_file() or path.is_symlink():
            if path.name.endswith(PROTO_SUFFIX):
                kept += 1
            else:
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for folder in [package_dir, *(p for p in package_dir.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").write_text("")
    return kept


def uninstall(venv: Path, names: list[str]) -> None:
    if names:
        subprocess.run(["uv", "pip", "uninstall", "--python", str(venv / "bin" / "python"), *sorted(names)], check=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune_venv.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--lock", type=Path, help="uv.lock (for --protos-only)")
    parser.add_argument("--package", help="the service's package in uv.lock (for --protos-only)")
    parser.add_argument("--protos-only", metavar="PKG", help="keep only PKG's *_pb2.py modules")
    parser.add_argument("--remove", action="append", default=[], metavar="PATH", help="site-packages/PATH to delete")
    parser.add_argument("--uninstall", action="append", default=[], metavar="PKG", help="package to uninstall")
    args = parser.parse_args(argv)
    site = site_packages(args.venv)
    names = list(args.uninstall)
    if args.protos_only:
        if not (args.lock and args.package):
            parser.error("--protos-only needs --lock and --package")
        names += only_through(args.lock, args.package, args.protos_only)
        package_dir = site / args.protos_only.replace("-", "_")
        if not package_dir.is_dir():
            parser.error(f"{package_dir} does not exist")
        print(f"prune_venv: {args.protos_only}: kept {keep_protos(package_dir)} protobuf modules")
    for relative in args.remove:
        target = site / relative
        if not target.exists():
            parser.error(f"{target} does not exist")
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        print(f"prune_venv: removed {relative}")
    uninstall(args.venv, names)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
