"""A benchmark script run on an earlier commit and on the working tree, alternately, in one run.

    .venv/bin/python bench/before_after.py REV bench/bench_decode.py --repeats 3
    .venv/bin/python bench/before_after.py REV --rounds 3 --pick "^this project" bench/bench_train.py --models tiny

REV (a commit, tag or branch) is checked out beside this folder, as ../NAME-before-REV (a git worktree,
made once; `git worktree remove` deletes it), and the
script runs there and here with the same arguments and the same Python, `--rounds` times, before
then after, so that both meet the same state of the machine. Of each run's output it prints the
lines matching --pick (a regular expression; default: lines starting with "this project"), and for
each such line the ratio of its first number after the name, before / after, over the rounds.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import print_machine_header  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*\.?\d*)")


def worktree(rev):
    """The folder holding `rev` checked out (made with git worktree the first time)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    # Beside this checkout, so that paths relative to it (../shared/data) mean the same in both trees.
    folder = os.path.join(os.path.dirname(ROOT), f"{os.path.basename(ROOT)}-before-{sha}")
    if not os.path.isdir(folder):
        subprocess.run(["git", "worktree", "add", "--detach", folder, sha], cwd=ROOT, check=True,
                       capture_output=True)
    return folder, sha


def picked(output, pattern):
    """{label: first number} of the lines matching `pattern`; the label is the text before it."""
    found = {}
    for line in output.splitlines():
        if re.search(pattern, line):
            match = NUMBER.search(line)
            if match:
                found[line[:match.start()].strip()] = float(match.group(1).replace(",", ""))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", help="the earlier commit")
    parser.add_argument("script", help="the benchmark script, relative to the repository root")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pick", default=r"^this project", help="regular expression of the lines to compare")
    args, rest = parser.parse_known_args()
    print_machine_header("as the script says")
    before, sha = worktree(args.rev)
    figures = {"before": [], "after": []}
    for round_ in range(1, args.rounds + 1):
        for name, folder in (("before", before), ("after", ROOT)):
            result = subprocess.run([sys.executable, args.script, *rest], cwd=folder, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"{args.script} failed {name} ({folder}):\n{result.stderr[-3000:]}")
            lines = picked(result.stdout, args.pick)
            figures[name].append(lines)
            print(f"round {round_}, {name} ({sha if name == 'before' else 'working tree'}): "
                  + "; ".join(f"{label} {value:g}" for label, value in lines.items()), flush=True)
    print(f"\n{'':40s} {'before':>10s} {'after':>10s} {'before / after':>15s}  (medians of {args.rounds} rounds)")
    for label in figures["after"][0]:
        if all(label in run for run in figures["before"]):
            b = statistics.median(run[label] for run in figures["before"])
            a = statistics.median(run[label] for run in figures["after"])
            print(f"{label[:40]:40s} {b:10.4g} {a:10.4g} {b / a:14.3f}x")


if __name__ == "__main__":
    main()
