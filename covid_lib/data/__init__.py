"""Data layer: sources -> one validated manifest schema -> patient-level splits -> compositions.

See :mod:`covid_lib.data.sources` (loading and validation), :mod:`covid_lib.data.splits`
(patient-level splits and the leakage audit), :mod:`covid_lib.data.dedup` (duplicates) and
:mod:`covid_lib.data.compose` (the paper's Table I rebuilt from public sources).
"""

from covid_lib.data.compose import (
    COMPOSITIONS,
    STAND_INS,
    compose,
    counts_in_test,
    global_splits,
    stand_in_table,
    table_one,
    table_one_wide,
)
from covid_lib.data.dedup import cached_image_hashes, duplicate_pairs, image_hashes
from covid_lib.data.sources import (
    FRONTAL_VIEWS,
    PRETRAIN_ONLY_SOURCES,
    SOURCES,
    STUDY_SOURCES,
    DataError,
    ImageReadError,
    SourceData,
    data_version,
    load_cohen,
    load_hannover,
    load_kermany,
    load_kermany_full,
    load_montgomery,
    load_nih,
    load_shenzhen,
    load_source,
    load_sources,
    read_image,
    read_mask,
    summary_table,
)
from covid_lib.data.source_splits import (MEASURES, PARTS, SOURCE_SPLITS, SourceSplit, adapt_rows,
                                         part_rows, source_split_counts, source_split_rows)
from covid_lib.data.full_copy import audit_pretraining, full_copy_splits
from covid_lib.data.subsets import PRETRAIN_LABELS, limit_rows, pretrain_rows
from covid_lib.data.splits import SPLITS, SplitAudit, SplitLeakError, assign_splits, audit_splits

__all__ = [
    "COMPOSITIONS", "STAND_INS", "compose", "global_splits", "stand_in_table", "summary_table",
    "table_one", "table_one_wide", "counts_in_test", "load_cohen", "load_hannover", "load_kermany", "load_kermany_full", "load_montgomery",
    "load_nih", "load_shenzhen",
    "FRONTAL_VIEWS", "PRETRAIN_ONLY_SOURCES", "SOURCES", "STUDY_SOURCES", "audit_pretraining", "full_copy_splits", "SPLITS", "DataError", "ImageReadError", "SourceData", "SplitAudit",
    "SplitLeakError", "assign_splits", "audit_splits", "cached_image_hashes", "data_version",
    "duplicate_pairs", "image_hashes", "load_source", "load_sources", "read_image", "read_mask",
    "PRETRAIN_LABELS", "limit_rows", "pretrain_rows",
    "MEASURES", "PARTS", "SOURCE_SPLITS", "SourceSplit", "adapt_rows", "part_rows", "source_split_counts",
    "source_split_rows",
]
