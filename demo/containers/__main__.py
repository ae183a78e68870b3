"""`python -m demo.containers check | build | down --net N`.

check  one line: whether the engine can run here (exit 0) or why not (exit 1)
build  the demo's images, once (debootstrap, import, build); exit 1 with the reason if the
       engine cannot run or the build fails
down   remove every container labelled with demo network N (what `issu demo down` does)
"""

from __future__ import annotations

import argparse
import sys

from demo.containers.compute import remove_net_containers
from demo.containers.engine import EngineUnavailable, engine_problem
from demo.containers.images import cache_dir, ensure_images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.containers")
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("check")
    sub.add_parser("build")
    down = sub.add_parser("down")
    down.add_argument("--net", type=int, required=True)
    args = parser.parse_args(argv)
    problem = engine_problem()
    if problem:
        print(f"containers: the engine cannot run here: {problem}", file=sys.stderr)
        return 1
    if args.verb == "check":
        print("containers: podman with runc works")
    elif args.verb == "build":
        try:
            report = ensure_images()
        except EngineUnavailable as exc:
            print(f"containers: {exc}", file=sys.stderr)
            return 1
        for image, how in report.images.items():
            print(f"containers: {image} {how}")
        print(f"containers: images ready in {report.seconds:.0f} s (base {report.base}, "
              f"cache {cache_dir()})")
    else:
        names = remove_net_containers(args.net)
        print(f"containers: removed {len(names)} container(s) of net {args.net}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
