"""Self-check for anyone's INF265 Project 3: a report card of what the assignment requires.

    python -m tools.check PATH                  # a folder with the Part 2 scripts and/or the notebook
    python -m tools.check .                     # this project (everything passes); or: make check
    python -m tools.check subs/* --json > grades.json      # a teacher, one entry per folder
    python -m tools.check PATH --only dataset   # only the dataset checks (--list names them all)

Run it from this project's folder (the checks compare against its own implementation).

PATH is a folder holding the template's Part 2 files (config.py, tokenizer.py, dataset.py, model.py,
inference.py, utils.py: at least three together) and/or the Part 1 notebook (imdb_sentiment_encoder.ipynb,
or any notebook defining MultiheadAttention), at any depth: the course layout with
01_encoder_sentiment_classifier/ and 02_decoder_chatbot/ subfolders is found too. PATH may also be the
notebook itself. A folder whose subfolders each hold a submission (a teacher's folder of students) is
checked one submission at a time; a path that is no submission gets an entry saying why, and the
other paths are still checked.

Every check (tools/check/checks.py says what each requires) runs in its own Python process with a
time limit (--timeout, 60 s), so code that crashes, lacks a function or never returns gives an
"error" line for that check and the others still run; an exception in the checker's own code is "the
check could not run", not the student's error. Each failure says what the assignment requires, and
every fault the check saw, grouped by requirement, with its first input and how many inputs show it.
Exit status 0 only when every check passes (skipped checks, for a part not given, do not count against it).
"""

import argparse
import functools
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
PART2_FILES = ("config.py", "tokenizer.py", "dataset.py", "model.py", "inference.py", "utils.py")
PART2_NAMES = {"dataset.py": "class QADataset", "model.py": "class TransformerModel",
               "inference.py": "def top_p_sampling"}  # at least one of them: this assignment, not another
NOTEBOOK_NAME = "imdb_sentiment_encoder.ipynb"
SKIPPED_FOLDERS = {".venv", "venv", "env", ".env", "site-packages", "node_modules", ".git", "__pycache__",
                   ".ipynb_checkpoints", ".tox", "temp", "build", "dist"}
MAX_DEPTH = 6  # folders below PATH searched for the course layout
COURSE_FOLDERS = ("01_encoder", "02_decoder")  # the course's two subfolders: one submission, not two
STATUS_WORDS = {"pass": "pass ", "fail": "FAIL ", "error": "ERROR", "not run": "N/A  ", "skipped": "skip "}
WHAT_A_SUBMISSION_HOLDS = (f"a submission folder holds the template's Part 2 scripts ({', '.join(PART2_FILES)}; at "
                           f"least three of them, in one folder) and/or the Part 1 notebook ({NOTEBOOK_NAME}, or "
                           f"a notebook defining MultiheadAttention), at any depth (the course's "
                           f"01_encoder_sentiment_classifier/ and 02_decoder_chatbot/ layout too); PATH may also "
                           f"be the notebook itself")


class NotASubmission(Exception):
    """A path the checker cannot check as one submission; the message says why and what it needs."""


@dataclass
class Found:
    """One submission: its folder, and its Part 2 folder and Part 1 notebook (either may be None)."""

    path: str
    part2: str = None
    notebook: str = None
    problem: str = None  # why `path` is not a submission (then nothing is checked)


def is_part2_folder(folder):
    """At least three of the Part 2 scripts, and one of the names only this assignment has."""
    present = [name for name in PART2_FILES if os.path.isfile(os.path.join(folder, name))]
    if len(present) < 3:
        return False
    return any(os.path.isfile(os.path.join(folder, name)) and text in read(os.path.join(folder, name))
               for name, text in PART2_NAMES.items())


def is_assignment_notebook(path):
    return os.path.basename(path) == NOTEBOOK_NAME or "class MultiheadAttention" in read(path)


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def candidates(folder):
    """(Part 2 folders, assignment notebooks) anywhere below `folder`, following links once each and
    skipping virtual environments, caches and hidden folders."""
    part2, notebooks, seen = [], [], set()
    for here, subfolders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        depth = 0 if here == folder else os.path.relpath(here, folder).count(os.sep) + 1
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if d not in SKIPPED_FOLDERS and not d.startswith(".")
                               and depth < MAX_DEPTH)
        if is_part2_folder(here):
            part2.append(here)
        notebooks += [os.path.join(here, f) for f in sorted(files)
                      if f.endswith(".ipynb") and is_assignment_notebook(os.path.join(here, f))]
    return part2, notebooks


def find_submissions(path):
    """[Found] for `path`: one submission, or one per student folder when `path` holds several.

    NotASubmission when `path` is missing, is neither a folder nor a notebook, holds nothing of this
    assignment, or holds two Part 2 folders (or notebooks) that cannot be told apart.
    """
    path = os.path.abspath(path)
    if os.path.isfile(path):
        if path.endswith(".ipynb"):
            return [Found(path, None, path)]
        raise NotASubmission(f"not a submission: {path} is a file, neither a folder nor a notebook; "
                             f"{WHAT_A_SUBMISSION_HOLDS}")
    if not os.path.isdir(path):
        raise NotASubmission(f"no such file or folder: {path}; {WHAT_A_SUBMISSION_HOLDS}")
    part2, notebooks = candidates(path)
    if not part2 and not notebooks:
        raise NotASubmission(f"no file of INF265 Project 3 found in {path}: looked for a folder with at least "
                             f"three of {', '.join(PART2_FILES)} (one of them with QADataset, TransformerModel or "
                             f"top_p_sampling) and for {NOTEBOOK_NAME} or a notebook defining MultiheadAttention, "
                             f"in it and its subfolders")

    def top(folder):
        return os.path.relpath(folder, path).split(os.sep)[0]

    tops = {top(p) for p in part2} | {top(os.path.dirname(n)) for n in notebooks}
    if "." not in tops and len(tops) >= 2 and not all(t.startswith(COURSE_FOLDERS) for t in tops):
        # a teacher's folder of students: one submission per subfolder, never mixed
        return [found for name in sorted(tops) for found in _or_problem(os.path.join(path, name))]
    if "." not in tops and len(tops) == 1:  # all in one subfolder (assignments/src/...): look there
        return find_submissions(os.path.join(path, tops.pop()))
    named = [n for n in notebooks if os.path.basename(n) == NOTEBOOK_NAME]
    notebooks = named or notebooks
    for what, found in (("Part 2 folders", part2), ("Part 1 notebooks", notebooks)):
        if len(found) > 1:
            raise NotASubmission(f"{path} holds {len(found)} {what} that could each be the submission: "
                                 f"{', '.join(found)}; give the one to check")
    return [Found(path, part2[0] if part2 else None, notebooks[0] if notebooks else None)]


def _or_problem(path):
    """find_submissions(path), or one entry saying why `path` is not a submission."""
    try:
        return find_submissions(path)
    except NotASubmission as problem:
        return [Found(os.path.abspath(path), problem=str(problem))]


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
        outcome = dict(status="fail", got=failure.got, first_input=failure.first_input, faults=failure.faults)
    except checks.Skipped as skip:
        outcome = dict(status="skipped", got=str(skip))
    except checks.MissingCode as missing:
        outcome = dict(status="error", got=str(missing))
    except checks.CheckCouldNotRun as problem:
        outcome = dict(status="not run", got=f"the check could not run: {problem}")
    except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything
        where = where_raised(exc, task)
        if where is None:  # raised in the checker's own code: its problem, not the student's
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            outcome = dict(status="not run", got=f"the check could not run: {type(exc).__name__}: {exc} (in the "
                           f"checker's {os.path.basename(frame.filename)} line {frame.lineno}; not an error of "
                           f"the code checked, please report it)")
        else:
            outcome = dict(status="error", got=f"{type(exc).__name__}: {exc}{where}")
    with open(result_file, "w", encoding="utf-8") as f:
        json.dump(outcome, f)


class redirect_stdout_to_stderr:
    """Students' prints go to stderr, so they never mix with the result."""

    def __enter__(self):
        self.stdout, sys.stdout = sys.stdout, sys.stderr

    def __exit__(self, *exc):
        sys.stdout = self.stdout


def where_raised(exc, task):
    """' (at dataset.py line 42: ...)' for the innermost frame in the student's files (their
    scripts, or their notebook's cells), or None when the exception never passed through them."""
    places = [os.path.abspath(p) for p in (task.part2, task.notebook) if p]
    checker = [os.path.join(ROOT, "support"), os.path.join(ROOT, "tools"),  # when checking this project itself
               os.path.join(ROOT, ".venv")]

    def inside(filename, place):
        filename = os.path.abspath(filename.split("[cell ")[0])
        return filename == place or filename.startswith(place.rstrip(os.sep) + os.sep)

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if any(inside(f.filename, p) for p in places) and not any(inside(f.filename, c) for c in checker)
              and f"{os.sep}site-packages{os.sep}" not in f.filename]
    if not frames:
        return None
    frame = frames[-1]
    line = (frame.line or "").strip()
    return f" (at {os.path.basename(frame.filename)} line {frame.lineno}{': ' + line if line else ''})"


def check_folder(path, names, timeout, jobs, tokenizer_file):
    from tools.check import checks

    part2, notebook = path.part2, path.notebook
    tasks, skipped = [], {}
    for name in names:
        if checks.CHECKS[name].part == "Part 2" and part2 is None:
            skipped[name] = f"no Part 2 files ({', '.join(PART2_FILES)}) found"
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
    return dict(path=path.path, part2=part2, notebook=notebook, problem=None, results=results, counts=counts,
                passed=counts["fail"] == counts["error"] == counts["not run"] == 0 and counts["pass"] > 0)


def problem_report(found):
    """The entry of a path that is not a submission: nothing checked, and why."""
    return dict(path=found.path, part2=None, notebook=None, problem=found.problem, results=[],
                counts={s: 0 for s in STATUS_WORDS}, passed=False)


def report_card(report, seconds):
    lines = [f"INF265 Project 3 self-check of {report['path']}"]
    if report["problem"]:
        return "\n".join(lines + [f"  {report['problem']}"])
    lines += [f"  Part 2 files: {report['part2'] or 'not found'}",
              f"  Part 1 notebook: {report['notebook'] or 'not found'}"]
    width = max(len(r["check"]) for r in report["results"])
    for part in ("Part 2", "Part 1"):
        results = [r for r in report["results"] if r["part"] == part]
        if not results:
            continue
        if all(r["status"] == "skipped" for r in results):
            lines.append(f"\n{part}: {plural(len(results), 'check')} skipped ({results[0]['got']})")
            continue
        lines.append(f"\n{part}")
        for r in results:
            lines.append(f"  {STATUS_WORDS[r['status']]}  {r['check']:<{width}}  {short(r['requires'])}")
            if r["status"] == "fail" and len(r.get("faults") or []) > 1:  # every fault of the check
                lines.append(f"         requires: {r['requires']}")
                for fault in r["faults"]:
                    count = f" ({plural(fault['count'], 'input')})" if fault["count"] > 1 else ""
                    lines.append(f"         got:      {fault['got']}{count}")
                    lines.append(f"         input:    {fault['first_input']}")
            elif r["status"] in ("fail", "error", "not run"):
                lines.append(f"         requires: {r['requires']}")
                lines.append(f"         got:      {r['got']}")
                if r["first_input"]:
                    lines.append(f"         input:    {r['first_input']}")
            elif r["status"] == "skipped":
                lines.append(f"         ({r['got']})")
    c = report["counts"]
    could_not = f", {c['not run']} could not run" if c["not run"] else ""
    lines.append(f"\n{c['pass']} passed, {c['fail']} failed, {plural(c['error'], 'error')}{could_not}, "
                 f"{c['skipped']} skipped in {seconds:.0f} s")
    return "\n".join(lines)


def plural(n, word):
    """'1 check', '2 checks'"""
    return f"{n} {word}{'' if n == 1 else 's'}"


def select(names, only):
    """The check names `--only` words select: a group ("dataset", "notebook"), a whole name
    ("inference.top_p"), or the part after the dot ("own_attention"); a group wins over a part.

    >>> select(["dataset.items", "notebook.dataset", "notebook.attention"], ["dataset"])
    ['dataset.items']
    >>> select(["dataset.items", "notebook.own_attention"], ["own_attention"])
    ['notebook.own_attention']
    """
    chosen = set()
    for word in only:
        word = word.rstrip(".")
        group = [n for n in names if n.split(".")[0] == word]
        exact = [n for n in names if n == word]
        part = [n for n in names if n.split(".", 1)[-1] == word]
        chosen |= set(group or exact or part)
    return [n for n in names if n in chosen]


def short(text, width=70):
    return text if len(text) <= width else text[:width - 3].rsplit(" ", 1)[0] + " ..."


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.check", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("paths", nargs="*", metavar="PATH", help="folders (or notebooks) to check")
    parser.add_argument("--json", action="store_true", help="print one JSON object per PATH (a list)")
    parser.add_argument("--only", action="append",
                        help="run only these checks: a group (dataset, model, inference, notebook), a name "
                             "(inference.top_p) or the part after the dot (own_attention); repeatable")
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
    names = select(list(checks.CHECKS), args.only) if args.only else list(checks.CHECKS)
    if not names:
        parser.error(f"no check is named {' or '.join(args.only)} (see --list)")
    reports, start = [], time.perf_counter()
    for path in args.paths:  # every path gets its entry, whatever the others are
        for found in _or_problem(path):
            report = (problem_report(found) if found.problem else
                      check_folder(found, names, args.timeout, max(1, args.jobs), tokenizer_file))
            reports.append(report)
            if not args.json:
                print(report_card(report, time.perf_counter() - start), flush=True)
                start = time.perf_counter()
    if args.json:
        print(json.dumps(reports, indent=1))
    return 0 if all(r["passed"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
