"""python -m analysis analyze|recommend ARGS... (same as pql-scale analyze|recommend)."""

import sys

from .cli import analyze_main, recommend_main

if __name__ == "__main__":
    cmds = {"analyze": analyze_main, "recommend": recommend_main}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print("usage: python -m analysis {analyze,recommend} ...", file=sys.stderr)
        sys.exit(2)
    sys.exit(cmds[sys.argv[1]](sys.argv[2:]))
