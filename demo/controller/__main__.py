"""`python -m demo.controller --spec <file.json> [--roles api,control,analytics]`: run one
simulated controller (or some of its roles: a container each) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .spec import SpecError, load_spec


async def _run(spec_path: Path, roles: list[str]) -> int:
    from .server import Controller

    spec = load_spec(spec_path)
    controller = Controller(spec, roles)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await controller.start()
        await stop.wait()
    finally:
        await controller.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.controller",
                                     description="Simulated Contrail controller (demo world)")
    parser.add_argument("--spec", required=True, type=Path, help="controller spec JSON file")
    parser.add_argument("--roles", default="api,control,analytics",
                        help="comma-separated, of api, control, analytics (default: all)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    unknown = sorted(set(roles) - {"api", "control", "analytics"})
    if unknown or not roles:
        print(f"demo.controller: --roles {args.roles!r}: unknown role(s) "
              f"{', '.join(unknown) or '(none given)'} (known: api, control, analytics)",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cassandra").setLevel(logging.WARNING)
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    try:
        return asyncio.run(_run(args.spec, roles))
    except SpecError as exc:
        print(f"demo.controller: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        logging.getLogger("demo.controller").exception("controller failed")
        print(f"demo.controller: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
