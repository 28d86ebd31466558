"""Self-check for anyone's INF265 Project 3: a report card of what the assignment requires.

    python -m tools.check PATH                  # a folder with the Part 2 scripts and/or the notebook
    python -m tools.check .                     # this project (everything passes); or: make check
    python -m tools.check subs/* --json > grades.json      # a teacher, one entry per folder
    python -m tools.check PATH --only dataset   # only the checks whose name contains "dataset"

Run it from this project's folder (the checks compare against its own implementation).

PATH is a folder holding the template's Part 2 files (config.py, tokenizer.py, dataset.py, model.py,
inference.py, utils.py) and/or the Part 1 notebook (imdb_sentiment_encoder.ipynb, or any notebook
defining MultiheadAttention); the course layout with 01_encoder_sentiment_classifier/ and
02_decoder_chatbot/ subfolders is found too. PATH may also be the notebook itself.

Every check (tools/check/checks.py says what each requires) runs in its own Python process with a
time limit (--timeout, 60 s), so code that crashes, lacks a function or never returns gives an
"error" line for that check and the others still run. Each failure says what the assignment requires,
what the code did, and the first input on which it differs. Exit status 0 only when every check
passes (skipped checks, for a part not given, do not count against it).
"""

import argparse
import functools
import glob
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this project
PART2_FILES = ("config.py", "dataset.py", "model.py", "inference.py")
STATUS_WORDS = {"pass": "pass ", "fail": "FAIL ", "error": "ERROR", "skipped": "skip "}


def find_submission(path):
    """(Part 2 folder or None, notebook path or None) inside `path`."""
    path = os.path.abspath(path)
    if os.path.isfile(path) and path.endswith(".ipynb"):
        return None, path
    if not os.path.isdir(path):
        raise SystemExit(f"tools.check: {path} is neither a folder nor a notebook")
    folders = [path] + sorted(p for p in glob.glob(os.path.join(path, "*")) if os.path.isdir(p))
    part2 = next((f for f in folders if any(os.path.isfile(os.path.join(f, n)) for n in PART2_FILES)), None)
    notebooks = [n for f in folders for n in sorted(glob.glob(os.path.join(f, "*.ipynb")))]
    named = [n for n in notebooks if os.path.basename(n) == "imdb_sentiment_encoder.ipynb"]
    defining = [n for n in notebooks if "class MultiheadAttention" in open(n, encoding="utf-8",
                                                                           errors="replace").read()]
    return part2, (named or defining or [None])[0]


ENV = dict(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg",
           OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
# On Linux each check is a fork of this process after it has imported the usual libraries once (a
# fresh interpreter spends 3 to 8 s importing torch, datasets, sklearn); elsewhere a new interpreter.
CAN_FORK = sys.platform.startswith("linux") and not os.environ.get("INF265_CHECK_NO_FORK")
WARM_MODULES = {"": ("torch", "numpy", "tokenizers", "tqdm"), "dataset.": ("datasets",),
                "notebook.": ("nbformat", "datasets", "matplotlib.pyplot", "sklearn.metrics")}


@dataclass
class Task:
    name: str
    part2: str
    notebook: str
    tokenizer: str


class Job:
    """One check running in its own process, with its own working folder and log."""

    def __init__(self, task, work, reference):
        self.task, self.start = task, time.perf_counter()
        self.folder = os.path.join(work, task.name)
        os.makedirs(self.folder)
        self.result_file, self.log_file = (os.path.join(self.folder, n) for n in ("result.json", "log.txt"))
        if CAN_FORK:
            self.process = multiprocessing.get_context("fork").Process(
                target=forked_child, args=(task, self.result_file, self.log_file, reference), daemon=True)
            self.process.start()
        else:
            with open(self.log_file, "w") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "tools.check", "--child", task.name, "--result",
                     self.result_file, "--part2", task.part2 or "", "--notebook", task.notebook or "",
                     "--tokenizer", task.tokenizer or ""],
                    cwd=self.folder, env=dict(os.environ, **ENV, PYTHONPATH=ROOT), stdout=log,
                    stderr=subprocess.STDOUT)

    def running(self):
        return self.process.is_alive() if CAN_FORK else self.process.poll() is None

    def seconds(self):
        return time.perf_counter() - self.start

    def result(self, timeout):
        """The check's result; a hang or a crash of its process becomes an "error"."""
        if self.running():
            self.process.kill()
            result = dict(status="error", got=f"did not finish within {timeout:g} s (an endless loop, or much "
                                              "too slow); the other checks still ran")
        elif os.path.isfile(self.result_file):
            with open(self.result_file, encoding="utf-8") as f:
                result = json.load(f)
        else:
            code = self.process.exitcode if CAN_FORK else self.process.returncode
            with open(self.log_file, encoding="utf-8", errors="replace") as f:
                tail = (f.read().strip().splitlines() or ["(no output)"])[-1]
            result = dict(status="error", got=f"the check's process ended with exit code {code}: {tail}")
        return dict(dict(got="", first_input=""), check=self.task.name, seconds=round(self.seconds(), 1),
                    **result)


def run_checks(tasks, timeout, jobs):
    """Run each task in its own process, at most `jobs` at once; results by check name."""
    reference = warm_up(tuple(t.name for t in tasks)) if tasks else None
    results, pending, running = {}, list(tasks), []
    with tempfile.TemporaryDirectory(prefix="inf265-check-") as work:
        while pending or running:
            while pending and len(running) < jobs:
                running.append(Job(pending.pop(0), work, reference))
            time.sleep(0.02)
            for job in [j for j in running if not j.running() or j.seconds() > timeout]:
                running.remove(job)
                results[job.task.name] = job.result(timeout)
    return results


@functools.cache
def warm_up(names):
    """Import, once, what the checks `names` need (forked checks then start at once)."""
    if not CAN_FORK:
        return None
    os.environ.update(ENV)
    import importlib

    from tools.check import checks
    for prefix, modules in WARM_MODULES.items():
        for module in modules if any(n.startswith(prefix) for n in names) else ():
            try:
                importlib.import_module(module)
            except ImportError:
                pass
    return checks.Reference(notebook=any(n.startswith("notebook.") for n in names))


def forked_child(task, result_file, log_file, reference):
    os.chdir(os.path.dirname(result_file))
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    run_in_child(task, result_file, reference)


def run_in_child(task, result_file, reference=None):
    """Inside the check's own process: (load the reference,) hide it, run the student's code."""
    from tools.check import checks

    outcome = {}
    try:
        with redirect_stdout_to_stderr():
            import torch
            torch.set_num_threads(1)
            # The reference is loaded before the student's folder shadows our module names.
            reference = reference or checks.Reference(notebook=task.name.startswith("notebook."))
            checks.isolate(task.part2 or None, patch_datasets=task.name.startswith("dataset."))
            submission = checks.Submission(task.part2 or None, task.notebook or None, task.tokenizer or None,
                                           reference)
            checks.CHECKS[task.name].run(submission)
        outcome = dict(status="pass")
    except checks.Failed as failure:
        outcome = dict(status="fail", got=failure.got, first_input=failure.first_input)
    except checks.Skipped as skip:
        outcome = dict(status="skipped", got=str(skip))
    except checks.MissingCode as missing:
        outcome = dict(status="error", got=str(missing))
    except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything
        outcome = dict(status="error", got=f"{type(exc).__name__}: {exc}{where_raised(exc, task)}")
    with open(result_file, "w", encoding="utf-8") as f:
        json.dump(outcome, f)


class redirect_stdout_to_stderr:
    """Students' prints go to stderr, so they never mix with the result."""

    def __enter__(self):
        self.stdout, sys.stdout = sys.stdout, sys.stderr

    def __exit__(self, *exc):
        sys.stdout = self.stdout


def where_raised(exc, task):
    """' (at dataset.py line 42: ...)' for the innermost frame in the student's files."""
    folders = [os.path.abspath(p) for p in (task.part2, task.notebook) if p]
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if any(os.path.abspath(f.filename).startswith(d) for d in folders) or "notebook cell" in f.filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {os.path.basename(frame.filename)} line {frame.lineno}: {(frame.line or '').strip()})"


def check_folder(path, names, timeout, jobs, tokenizer_file):
    from tools.check import checks

    part2, notebook = find_submission(path)
    tasks, skipped = [], {}
    for name in names:
        if checks.CHECKS[name].part == "Part 2" and part2 is None:
            skipped[name] = "no Part 2 files (config.py, dataset.py, model.py, inference.py) found"
        elif checks.CHECKS[name].part == "Part 1" and notebook is None:
            skipped[name] = "no Part 1 notebook found"
        else:
            tasks.append(Task(name, part2, notebook, tokenizer_file))
    results = run_checks(tasks, timeout, jobs)
    results = [dict(part=checks.CHECKS[n].part, requires=checks.CHECKS[n].requires,
                    **(results[n] if n in results else
                       dict(check=n, status="skipped", got=skipped[n], first_input="", seconds=0.0)))
               for n in names]
    counts = {s: sum(r["status"] == s for r in results) for s in STATUS_WORDS}
    return dict(path=os.path.abspath(path), part2=part2, notebook=notebook, results=results, counts=counts,
                passed=counts["fail"] == counts["error"] == 0 and counts["pass"] > 0)


def report_card(report, seconds):
    lines = [f"INF265 Project 3 self-check of {report['path']}",
             f"  Part 2 files: {report['part2'] or 'not found'}",
             f"  Part 1 notebook: {report['notebook'] or 'not found'}"]
    width = max(len(r["check"]) for r in report["results"])
    for part in ("Part 2", "Part 1"):
        results = [r for r in report["results"] if r["part"] == part]
        if not results:
            continue
        if all(r["status"] == "skipped" for r in results):
            lines.append(f"\n{part}: {len(results)} checks skipped ({results[0]['got']})")
            continue
        lines.append(f"\n{part}")
        for r in results:
            lines.append(f"  {STATUS_WORDS[r['status']]}  {r['check']:<{width}}  {short(r['requires'])}")
            if r["status"] in ("fail", "error"):
                lines.append(f"         requires: {r['requires']}")
                lines.append(f"         got:      {r['got']}")
                if r["first_input"]:
                    lines.append(f"         input:    {r['first_input']}")
            elif r["status"] == "skipped":
                lines.append(f"         ({r['got']})")
    c = report["counts"]
    lines.append(f"\n{c['pass']} passed, {c['fail']} failed, {c['error']} errors, {c['skipped']} skipped "
                 f"in {seconds:.0f} s")
    return "\n".join(lines)


def short(text, width=70):
    return text if len(text) <= width else text[:width - 3].rsplit(" ", 1)[0] + " ..."


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.check", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("paths", nargs="*", metavar="PATH", help="folders (or notebooks) to check")
    parser.add_argument("--json", action="store_true", help="print one JSON object per PATH (a list)")
    parser.add_argument("--only", action="append", help="run only checks whose name contains this")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per check (default 60)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="checks run at once")
    parser.add_argument("--tokenizer", help="the student's tokenizer.json for the QADataset checks "
                                            "(default: a small one trained in memory)")
    parser.add_argument("--list", action="store_true", help="list the checks and what each requires")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--part2", help=argparse.SUPPRESS)
    parser.add_argument("--notebook", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_in_child(Task(args.child, args.part2, args.notebook, args.tokenizer), args.result)
    from tools.check import checks

    if args.list:
        for c in checks.CHECKS.values():
            print(f"{c.name:<30} {c.part}: {c.requires}")
        return 0
    if not args.paths:
        parser.error("give a folder to check, e.g. python -m tools.check .")
    tokenizer_file = os.path.abspath(args.tokenizer) if args.tokenizer else None
    if tokenizer_file and not os.path.isfile(tokenizer_file):
        parser.error(f"--tokenizer {args.tokenizer}: no such file")
    names = [n for n in checks.CHECKS if not args.only or any(o in n for o in args.only)]
    if not names:
        parser.error(f"no check's name contains {' or '.join(args.only)} (see --list)")
    reports, start = [], time.perf_counter()
    for path in args.paths:
        report = check_folder(path, names, args.timeout, max(1, args.jobs), tokenizer_file)
        if not report["part2"] and not report["notebook"]:
            report["passed"] = False
        reports.append(report)
        if not args.json:
            print(report_card(report, time.perf_counter() - start), flush=True)
            start = time.perf_counter()
    if args.json:
        print(json.dumps(reports, indent=1))
    return 0 if all(r["passed"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
