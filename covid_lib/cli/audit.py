"""``python -m covid_lib audit MANIFEST --out DIR``: the book's shortcut checks on any dataset.

::

    python -m covid_lib audit my_xrays.csv --out audit_report            # profile cpu
    python -m covid_lib audit my_xrays.csv --out /tmp/a --profile smoke  # seconds, a first look
    python -m covid_lib audit my_xrays.csv --out a --model covid-CORDA+ChestXRay-resnet18-kermany_full-cpu-s0-9b18846ae0

Writes ``audit.ipynb``, ``audit.html`` and the tables (``findings.csv``...) under ``--out`` and
nothing elsewhere. A bad manifest is one line on stderr (exit 2) before any kernel starts.
Only the standard library is imported here; :mod:`covid_lib.audit` is imported by the command.
"""

from __future__ import annotations

import argparse
import time


def _cmd_audit(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.audit.execute import audit_dataset
    from covid_lib.book.runner import ChapterFailed

    t0 = time.perf_counter()
    try:
        paths = audit_dataset(args.manifest, args.out, profile=args.profile, device=args.device,
                              model=args.model, seed=args.seed, progress=not args.quiet)
    except ChapterFailed as err:
        print(f"error: {err}")
        return 1
    import pandas as pd

    flagged = pd.read_csv(paths["findings"])
    flagged = flagged[flagged["flag"]]
    print(f"{len(flagged)} finding(s) flagged" + (":" if len(flagged) else ""))
    for i, line in enumerate(flagged["sentence"], 1):
        print(f"  {i}. {line}")
    print(f"wrote {paths['html']} and {paths['notebook']} in {time.perf_counter() - t0:.0f} s")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``audit`` command."""
    p = subparsers.add_parser(
        "audit", help="shortcut audit of a chest X-ray dataset (CSV manifest) into a notebook and HTML page",
        description="Run the book's shortcut checks on a CSV manifest (columns path, label; optional "
                    "patient_id, source or site, view, age, sex, date, split): the label against each "
                    "metadata column, a metadata-only baseline, patients and duplicates across splits, "
                    "image-statistics and lung-mask probes; with --model, the model's scores by group and "
                    "source and its saliency in the lungs. Writes only under --out.")
    p.add_argument("manifest", metavar="MANIFEST", help="the CSV manifest (image paths relative to its folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--model", default=None, metavar="CHECKPOINT",
                   help="a two-class model to audit too: a run id of this project, its record or checkpoint "
                        "folder, or its model.pt (its chain comes from the run's record); adds its AUC per "
                        "metadata group, its scores by source within each class and its saliency's in-lung share")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"],
                   help="smoke: seconds, a first look; cpu: the default; paper: more images, larger")
    p.add_argument("--seed", type=int, default=0, help="folds, subsampling and bootstrap seed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_audit)
