"""``python -m covid_lib book ...``: run the chapters, register and check the executed book.

::

    python -m covid_lib book list                    # chapters: fresh / stale / not executed
    python -m covid_lib book run 01 --profile cpu    # into the scratch folder _build/chapters
    python -m covid_lib book run 01 --profile paper -p device cuda --into book/chapters  # publish
    python -m covid_lib book register _build/chapters/01_data.ipynb  # after plain papermill
    python -m covid_lib book check                   # exit 1: a chapter stale, not executed or from a dirty tree
    python -m covid_lib book sync                    # regenerate the tables in book/reproduce.md

Only the standard library is imported here; :mod:`covid_lib.book` is imported by the commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from covid_lib.names import SCALE_NAMES

#: Mirrors covid_lib.book.chapters (not imported here, to keep ``--help`` instant).
_CHAPTERS_DIR = "book/chapters"
_SCRATCH_DIR = "_build/chapters"


def _publishing(into: str | None) -> bool:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book import CHAPTERS_DIR

    return into is not None and Path(into).resolve() == CHAPTERS_DIR.resolve()


def _sync_if_published(into: str | None) -> None:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book import REPRODUCE_PAGE, sync_pages
    from covid_lib.paths import REPO_ROOT

    if _publishing(into) and REPRODUCE_PAGE.is_file() and sync_pages():
        print(f"updated the generated tables in {REPRODUCE_PAGE.relative_to(REPO_ROOT).parent}/")


def _cmd_list(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book import chapter_status, list_chapters

    for chapter in list_chapters():
        st = chapter_status(chapter, args.chapters_dir, check_data=not args.no_data_check)
        rec = st.record
        extra = f"  profile={rec.get('profile')}  {rec.get('wall_time_s')} s" if rec else ""
        dirty = ", not publishable" if rec and st.unpublishable else ""
        print(f"{chapter.stem:<24} {st.state}{dirty}{extra}")
        for reason in [*st.reasons, *st.unpublishable]:
            print(f"    - {reason}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book import chapter_status, list_chapters

    bad = 0
    for chapter in list_chapters():
        st = chapter_status(chapter, args.chapters_dir, check_data=not args.no_data_check)
        if not st.publishable:  # one line per chapter: stale, not executed, or from a dirty tree
            bad += 1
            state = st.state if not st.fresh else "not publishable"
            print(f"{chapter.stem}: {state}: " + "; ".join([*st.reasons, *st.unpublishable]), file=sys.stderr)
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book.pages import pages_out_of_date

    from covid_lib.report.judge import read_verdicts
    from covid_lib.analysis.protocol import protocol_hash

    judged = read_verdicts()
    if judged is not None and judged.get("protocol_hash") != protocol_hash():
        bad += 1
        print(f"verdicts.json: judged under protocol {judged.get('protocol_hash')}, the protocol is now "
              f"{protocol_hash()}; run `python -m covid_lib book judge`", file=sys.stderr)
    for page in pages_out_of_date():
        bad += 1
        print(f"{page.name}: generated tables out of date; run `python -m covid_lib book sync`", file=sys.stderr)
    if not bad:
        print(f"{len(list_chapters())} chapter(s) fresh, each executed from a clean work tree")
    return 1 if bad else 0


def _run_profile(args: argparse.Namespace) -> str:
    """The profile of ``book run``: ``--profile`` or ``-p profile`` (the same thing), else ``cpu``."""
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.profiles import get_profile

    given = [value for name, value in args.parameters if name == "profile"]
    if getattr(args, "profile_given", False):
        given.insert(0, args.profile)
    if len(set(given)) > 1:
        raise ValueError(f"profile given twice ({' and '.join(repr(g) for g in given)}); "
                         "--profile X and -p profile X are the same: give one")
    return get_profile(given[0] if given else args.profile).name


class _StoreProfile(argparse.Action):
    """Store ``--profile`` and note that it was given (so ``-p profile X`` can tell it from the default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.profile_given = True


def _cmd_run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book import (
        ChapterFailed, list_chapters, parse_parameters, read_record, resolve_chapter, run_chapter, run_outputs,
        tracked_changes,
    )

    chapters = [resolve_chapter(c) for c in args.chapters] or list_chapters()
    if not chapters:
        raise ValueError("no chapters in notebooks/")
    profile = _run_profile(args)
    pairs = [(name, value) for name, value in args.parameters if name != "profile"]
    # Every -p is checked against each chapter's parameters cell before anything executes.
    per_chapter = {chapter.stem: parse_parameters(chapter, pairs) for chapter in chapters}
    for parameters in per_chapter.values():
        if args.data_root is not None:
            parameters["data_root"] = args.data_root
        parameters.setdefault("device", args.device)
        # lazy: imported when the command runs, so that --help stays light
        from covid_lib.profiles import check_device

        check_device(str(parameters["device"]))  # -p device too, before any chapter runs
    if _publishing(args.into) and not args.allow_missing_checkpoints:
        # lazy: imported when the command runs, so that --help stays light
        from covid_lib.book.checkpoints import missing_checkpoints_problem

        problem = missing_checkpoints_problem([c.stem for c in chapters], profile)
        if problem:
            raise ValueError(problem)
    written: set[str] = set()  # tracked files the chapters of this run wrote (e.g. 12's audit CSV, read by 14)
    for chapter in chapters:
        print(f"running {chapter.stem} with profile {profile} ...", flush=True)
        before = tracked_changes()
        try:
            out = run_chapter(chapter, profile=profile, parameters=per_chapter[chapter.stem], output_dir=args.into,
                              kernel_name=args.kernel, log_output=args.log_output, progress_bar=not args.quiet,
                              written_in_run=sorted(written))
        except ChapterFailed as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        wrote = run_outputs(before)
        written |= wrote
        print(f"wrote {out} in {read_record(out)['wall_time_s']} s"
              + (f" (and {', '.join(sorted(wrote))}: commit it with the chapter)" if wrote else ""))
    if not _publishing(args.into):
        print(f"(scratch copy; publish with --into {_CHAPTERS_DIR})")
    _sync_if_published(args.into)
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book import register_executed

    out = register_executed(args.notebook, chapter=args.chapter, output_dir=args.into)
    print(f"registered {out}")
    _sync_if_published(str(Path(out).parent))
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book import sync_pages
    from covid_lib.book.pages import PAGE_BLOCKS
    from covid_lib.paths import REPO_ROOT

    changed = sync_pages()
    names = ", ".join(str(p.relative_to(REPO_ROOT)) for p in PAGE_BLOCKS if p.is_file())
    print(("updated " if changed else "up to date: ") + names)
    return 0


def _cmd_judge(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.book import sync_pages
    from covid_lib.book.staleness import rejudged_chapters
    from covid_lib.report.judge import VERDICTS_JSON, write_c4, write_findings_inputs, write_verdicts

    for scale in args.c4:
        print(f"C4 at scale {scale}: encoder features and k-NN predictions -> {write_c4(scale, profile=args.profile, data_root=args.data_root)}")
    if args.findings:
        for path in write_findings_inputs(profile=args.profile, data_root=args.data_root):
            print(f"findings' analysis record -> {path}")
    data = write_verdicts(profile=args.profile, data_root=args.data_root)
    for scale, d in data["scales"].items():
        print(f"{d['label']}: " + ", ".join(f"{c} {v['outcome']}" for c, v in d["claims"].items()))
    print("findings beyond the paper: " + ", ".join(f"{f} {v['outcome']}" + (" (not evaluated)" if v.get("not_evaluated")
                                                                              else "")
                                                     for f, v in data["findings"].items()))
    sync_pages()
    print(f"wrote {VERDICTS_JSON} (protocol {data['protocol_hash']}) and synced the verdicts page")
    behind = rejudged_chapters()
    if behind:
        print(f"chapters showing a re-judged verdict (stale until re-executed): {', '.join(behind)}; "
              f"`python -m covid_lib book run {' '.join(c[:2] for c in behind)} --into book/chapters`")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``book`` command group (list, check, run, register, sync)."""
    book = subparsers.add_parser("book", help="run the chapters and check the executed book",
                                 description="Run the chapters with papermill, register and check the executed book.")
    cmds = book.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def status_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--chapters-dir", default=None, metavar="DIR",
                       help=f"folder of the executed chapters to inspect (default {_CHAPTERS_DIR})")
        p.add_argument("--no-data-check", action="store_true", help="do not compare the data version")
        return p

    p = status_options(cmds.add_parser("list", help="chapters and their status (fresh / stale / not executed)"))
    p.set_defaults(func=_cmd_list)

    p = status_options(cmds.add_parser(
        "check", help="exit 1 when a chapter is stale, not executed or executed from a dirty work tree",
        description="Exit 1 when a chapter is stale, not executed, or was executed from a dirty work tree or "
                    "an uncommitted source (its provenance record's git state), printing one line per such "
                    "chapter; also when the generated tables of book/reproduce.md are out of date."))
    p.set_defaults(func=_cmd_check)

    p = cmds.add_parser("run", help="execute chapters with papermill (all when none is named)",
                        description=f"Execute chapters with papermill into {_SCRATCH_DIR} (git-ignored); "
                                    f"--into {_CHAPTERS_DIR} publishes them into the book. A failed run "
                                    "replaces nothing.")
    p.add_argument("chapters", nargs="*", metavar="CHAPTER", help="01_data, data or 01 (default: every chapter)")
    p.add_argument("--profile", default="cpu", action=_StoreProfile,
                   help="compute profile: smoke, cpu or paper (default cpu; -p profile X is the same)")
    p.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="set a chapter parameter (papermill's -p); the name must be in the chapter's parameters "
                        "cell and the value must read as its default's type, checked before anything runs")
    p.add_argument("--into", default=None, metavar="DIR",
                   help=f"where the executed chapters go (default {_SCRATCH_DIR}; {_CHAPTERS_DIR} publishes "
                        "them and updates book/reproduce.md)")
    p.add_argument("--data-root", default=None, help="the data root (default: $COVID_LIB_DATA or ../shared/data)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N; -p device wins (default auto)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.add_argument("--log-output", action="store_true", help="print the cells' output as they run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-missing-checkpoints", action="store_true",
                   help="publish chapters that read model checkpoints even when this machine caches none "
                   "of the profile (they would list every model as 'no checkpoint')")
    p.set_defaults(func=_cmd_run)

    p = cmds.add_parser("register", help="add the provenance record to a chapter executed with plain papermill",
                        description="Add the provenance record to a notebook that plain papermill executed from "
                                    "a chapter source, so that `book check` accepts it.")
    p.add_argument("notebook", help="the executed notebook papermill wrote")
    p.add_argument("--chapter", default=None, help="the chapter it comes from (default: from the file name)")
    p.add_argument("--into", default=None, metavar="DIR",
                   help=f"write the registered notebook there (default: in place; {_CHAPTERS_DIR} publishes it)")
    p.set_defaults(func=_cmd_register)

    p = cmds.add_parser("sync", help="regenerate the profile, parameter and runtime tables in book/reproduce.md")
    p.set_defaults(func=_cmd_sync)
    p = cmds.add_parser("judge", help="judge every claim under the protocol from the run records (book/verdicts.json)")
    p.add_argument("--profile", default="cpu", help="the records' profile (default cpu)")
    p.add_argument("--data-root", default=None, help="data root (run ids hash the data version)")
    p.add_argument("--c4", nargs="*", default=[], choices=SCALE_NAMES, metavar="SCALE",
                   help="first compute C4's encoder features and k-NN predictions at these scales "
                        f"({', '.join(SCALE_NAMES)}): "
                        "restores the fine-tuned checkpoints by retraining where they are not cached")
    p.add_argument("--findings", action="store_true",
                   help="first compute the analysis records of F4 (saliency shares) and F5 (SOM nodes) from the "
                        "checkpoints cached here (results/claims/f4.*, f5.*); never retrains")
    p.set_defaults(func=_cmd_judge)
