"""Profile a live ``hookgate serve`` under the ingest load with py-spy (bench-only tool).

    .venv/bin/pip install py-spy            # once; see bench/README.md
    .venv/bin/python -m bench.profile --backend postgres --mix dup50 --duration 15

Starts hookgate on a fresh database, warms it up with wrk, then runs wrk and
``py-spy record --format raw`` side by side, and prints the top functions by inclusive and by
self samples (from the collapsed stacks).  ``--svg PATH`` also writes a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import _common as c
from bench.ingest import run_wrk

PY_SPY = str(c.VENV_BIN / "py-spy")


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number so
    # one function is one entry, and shorten site-packages paths.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", str(c.ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def summarise(collapsed: str, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if total == 0:
        return "no samples\n"
    lines = [f"{total} samples\n", "| inclusive % | function |", "|---|---|"]
    lines += [f"| {n / total:.1%} | `{f}` |" for f, n in inclusive.most_common(top)]
    lines += ["", "| self % | function |", "|---|---|"]
    lines += [f"| {n / total:.1%} | `{f}` |" for f, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--mix", choices=("unique", "dup50"), default="dup50")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--scheduler", action="store_true", help="keep the in-process scheduler on")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--svg", help="also write a flame graph here")
    parser.add_argument("--raw", help="also keep the collapsed stacks here")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    if not os.path.exists(PY_SPY) or shutil.which("wrk") is None:
        print("needs py-spy in the venv and wrk: see bench/README.md", file=sys.stderr)
        return 2
    dup_ratio = 0.5 if args.mix == "dup50" else 0.0
    env = {} if args.scheduler else {"HOOKGATE_SCHEDULER": "0"}
    with c.database(args.backend, "prof") as url:
        workspace = c.create_workspace(url)
        with c.start_hookgate(url, env) as server:
            wrk = {"connections": args.connections, "threads": 1, "dup_ratio": dup_ratio}
            run_wrk(server.base_url, workspace.emailbison_path, duration_s=3, run=1, **wrk)
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "stacks.txt"
                spy = subprocess.Popen(
                    [
                        PY_SPY,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--duration",
                        f"{int(args.duration)}",
                        "--rate",
                        str(args.rate),
                        "--format",
                        "raw",
                        "--output",
                        str(raw),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                result: dict[str, object] = {}

                def load() -> None:
                    result.update(
                        run_wrk(
                            server.base_url,
                            workspace.emailbison_path,
                            duration_s=args.duration,
                            run=2,
                            **wrk,
                        )
                    )

                thread = threading.Thread(target=load)
                thread.start()
                spy.wait(timeout=args.duration + 60)
                thread.join()
                collapsed = raw.read_text() if raw.exists() else ""
            if args.raw:
                Path(args.raw).write_text(collapsed)
            if args.svg:
                subprocess.run(
                    [
                        PY_SPY,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--duration",
                        "5",
                        "--output",
                        args.svg,
                        "--nonblocking",
                    ],
                    check=False,
                    capture_output=True,
                )
    requests = int(result.get("requests", 0))  # type: ignore[call-overload]
    duration = int(result.get("duration_us", 1)) / 1e6  # type: ignore[call-overload]
    print(
        f"### Profile: hookgate {args.backend}, {args.mix}, wrk -c{args.connections}, "
        f"{args.duration:g}s, scheduler {'on' if args.scheduler else 'off'} "
        f"({requests / duration:,.0f} req/s while sampled)\n"
    )
    print(summarise(collapsed, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
