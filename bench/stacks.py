"""Where the main thread's time went, from py-spy's raw stacks (`bench.intake --profile DIR`).

`python -m bench.stacks FILE [FRAME ...]`: for each FRAME (a function's name as py-spy writes
it, `provider_callback (bot/web/callbacks.py)`; the event loop's `Handle._run` when none is
given), its share of the main thread's samples and the share of each function it called.
Line numbers are dropped, so a function is one entry however many lines it was sampled on.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE = re.compile(r":\d+\)$")
LOOP = "Handle._run (asyncio/events.py)"


def main_stacks(path: Path) -> list[tuple[list[str], int]]:
    """The main thread's stacks, outermost frame first, with their sample counts."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [LINE.sub(")", frame) for frame in stack.split(";")]
        if frames[0].startswith("thread ("):  # recorded with --threads
            if "MainThread" not in frames[0]:
                continue
            frames = frames[1:]
        elif frames[0].startswith("Thread._bootstrap"):
            continue
        stacks.append((frames, int(count)))
    return stacks


def breakdown(stacks: list[tuple[list[str], int]], frame: str) -> tuple[int, Counter[str]]:
    """Samples with `frame` on the stack, and how they split among the frames it called."""
    within, callees = 0, Counter[str]()
    for frames, count in stacks:
        if frame in frames:
            within += count
            below = frames.index(frame) + 1
            callees[frames[below] if below < len(frames) else "(itself)"] += count
    return within, callees


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("frames", nargs="*", default=[LOOP])
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    stacks = main_stacks(args.file)
    total = sum(count for _, count in stacks)
    for frame in args.frames:
        within, callees = breakdown(stacks, frame)
        print(f"{100 * within / total:5.1f}%  {frame}  ({within} of {total} samples)")
        for callee, count in callees.most_common(args.top):
            print(f"        {100 * count / total:5.1f}%  {callee}")


if __name__ == "__main__":
    main()
