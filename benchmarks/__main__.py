"""Entry point: ``python -m benchmarks <name> [options]``."""

from __future__ import annotations

import importlib
import sys

from .registry import BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "--list"}:
        print("usage: python -m benchmarks <name> [options]   (python -m benchmarks <name> --help)\n")
        for name, summary in BENCHMARKS.items():
            print(f"  {name:<14} {summary}")
        return 0
    name = argv[0]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; expected one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f".{name}", __package__)
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
