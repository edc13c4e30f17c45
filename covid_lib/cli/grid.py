"""``python -m covid_lib grid run|status NAME ...``, ``grid compute NAME [NAME ...]``, ``grid collect SOURCE``,
``grid list``:
named grids of runs (:mod:`covid_lib.grid`)."""

from __future__ import annotations

import argparse

from covid_lib.names import GRID_NAMES



def _cmd_run(args: argparse.Namespace) -> int:
    """Run every missing run of a grid; finished runs are skipped, failures reported."""
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.grid import run_grid

    report = run_grid(args.name, args.profile, executor=args.executor, address=args.address, device=args.device,
                      data_root=args.data_root, storage=args.storage, fp32_twins=args.fp32_twins)
    print(f"grid {args.name} ({args.profile}): {report.summary()}")
    if report.failed:  # each failed run printed its one line (and where its traceback is) as it failed
        # lazy: imported when the command runs, so that --help stays light
        from covid_lib.runs import failures_dir

        print(f"{len(report.failed)} failed; their tracebacks are under {failures_dir()}")
    return 1 if report.failed else 0


def _cmd_status(args: argparse.Namespace) -> int:
    """Show the state of every run of a grid: done, did not learn, collapsed, recorded (no
    checkpoint here: a committed run others start from, its weights not cached), failed, missing."""
    # lazy: imported when the command runs, so that --help stays light
    import pandas as pd

    from covid_lib.grid import fp32_twin_problem, grid_specs, grid_status, status_counts

    specs = grid_specs(args.name, args.profile, data_root=args.data_root)
    status = grid_status(specs, args.profile, storage=args.storage)
    with pd.option_context("display.width", 250, "display.max_colwidth", 80, "display.max_rows", 500):
        print(status.to_string(index=False))
    counts = status_counts(status)
    print(f"grid {args.name} ({args.profile}): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    problem = fp32_twin_problem(specs, "auto", args.storage) if counts["missing"] else None
    if problem:  # `grid run` (device auto) would refuse on this machine: say so now
        print(f"note: `grid run {args.name}` stops on this machine: {problem}")
    return 0


def _cmd_compute(args: argparse.Namespace) -> int:
    """Compute spent on grids, from each recorded run's timings.json: per grid its runs, recorded and
    missing, hours and median training speed, and the estimated hours of the missing runs (work of
    recorded runs of the same composition over the speed of the same arch and input size; a size
    never recorded is extrapolated by pixel count); the last row counts each run once (grids share runs)."""
    # lazy: imported when the command runs, so that --help stays light
    import pandas as pd

    from covid_lib.grid import fp32_twin_problem, grid_compute, grid_specs

    versions: dict = {}  # the data versions grid_compute computed, reused for the note below
    table = grid_compute(args.names, args.profile, data_root=args.data_root, versions=versions)
    with pd.option_context("display.width", 200):
        print(table.astype(object).where(table.notna(), "").to_string(index=False))
    print("hours left are at the recorded runs' speeds, on the kinds of machine that recorded them")
    missing = dict(zip(table["grid"], table["missing"]))
    stops = [n for n in args.names if missing.get(n)  # a grid with every run recorded has nothing to stop
             and fp32_twin_problem(grid_specs(n, args.profile, data_root=args.data_root, versions=versions))]
    if stops:
        print(f"note: `grid run` stops on this machine for {', '.join(stops)}: this CPU has no native bf16, which "
              "their runs ask for (`grid status NAME` says more)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    """List the named grids with their runs (pre-trainings included) and what they rebuild."""
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.grid import GRIDS, with_pretrainings

    for name, (what, build) in GRIDS.items():
        print(f"{name:<10} {len(with_pretrainings(build(args.profile))):>3} runs  {what}")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    """Copy the finished run records of another checkout (a grid's work tree, pinned at one commit)
    or records folder into this one: complete records this one lacks, each copied whole; a record
    already here is never overwritten (one with different files is reported, and the exit status is
    1). Then `python -m covid_lib book sync` and commit results/."""
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.runs.collect import collect_records

    try:
        report = collect_records(args.source, dry_run=args.dry_run)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"grid collect: {err}") from None
    for run_id in report.copied:
        print(("would copy " if args.dry_run else "copied ") + run_id)
    for run_id in report.conflicts:
        print(f"different here, left alone: {run_id} (compare the two folders)")
    print(f"grid collect: {report.summary(dry_run=args.dry_run)}")
    if report.copied and not args.dry_run:
        print("next: python -m covid_lib book sync, then commit results/ and book/")
    return 1 if report.conflicts else 0


def _common(p: argparse.ArgumentParser) -> None:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.profiles import PROFILES  # stdlib-only module: cheap

    p.add_argument("name", choices=GRID_NAMES, help="grid name (see covid_lib.grid)")
    p.add_argument("--profile", default="cpu", choices=list(PROFILES), help="compute profile")
    p.add_argument("--data-root", default=None,
                   help="data root, also on Ray workers (default: $COVID_LIB_DATA or ../shared/data)")
    p.add_argument("--storage", default=None, help="checkpoint folder (default: the cache's runs folder)")


def register_cli(subparsers) -> None:
    """Add the ``grid`` command group (``run``, ``status``, ``compute``, ``collect``, ``list``)."""
    g = subparsers.add_parser("grid", help="run named grids of runs (the paper's tables) and show their status",
                              description="Named grids of runs: " + ", ".join(GRID_NAMES) + ". Records go to "
                              "results/<run_id>/ ($COVID_LIB_RESULTS), written by this process.")
    sub = g.add_subparsers(dest="grid_command", required=True)
    r = sub.add_parser("run", help="run every missing run of a grid (finished runs are skipped)",
                       description=_cmd_run.__doc__)
    _common(r)
    r.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: in this process; ray: one Ray task per run")
    r.add_argument("--address", default=None,
                   help="Ray cluster address (auto: a running cluster; default: start a local instance)")
    r.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    r.add_argument("--fp32-twins", action="store_true",
                   help="on a CPU without native bf16, train the fp32 twins (other run ids) of a grid's bf16 runs; "
                   "without it such a grid is refused")
    r.set_defaults(func=_cmd_run)
    s = sub.add_parser("status", help="done, missing, failed and did-not-learn runs of a grid",
                       description=_cmd_status.__doc__)
    _common(s)
    s.set_defaults(func=_cmd_status)
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.profiles import PROFILES

    c = sub.add_parser("compute", help="hours and speed of the recorded runs of grids, hours left (estimated)",
                       description=_cmd_compute.__doc__)
    c.add_argument("names", nargs="+", choices=GRID_NAMES, metavar="NAME", help="grid names (see `grid list`)")
    c.add_argument("--profile", default="cpu", choices=list(PROFILES), help="compute profile")
    c.add_argument("--data-root", default=None, help="data root (default: $COVID_LIB_DATA or ../shared/data)")
    c.set_defaults(func=_cmd_compute)
    co = sub.add_parser("collect", help="copy finished run records from another checkout or records folder",
                        description=_cmd_collect.__doc__)
    co.add_argument("source", help="a checkout (its results/ is read) or a records folder")
    co.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")
    co.set_defaults(func=_cmd_collect)
    ls = sub.add_parser("list", help="the named grids, their sizes and what they rebuild", description=_cmd_list.__doc__)
    ls.add_argument("--profile", default="cpu", choices=list(PROFILES), help="compute profile (sizes of the seeds grid)")
    ls.set_defaults(func=_cmd_list)
