"""The names the library and its command line share, in one light module (no torch, no pandas), so
that ``python -m covid_lib ... --help`` lists choices without importing the library's heavy layers.

The library's own tables are keyed by these names and checked against them in the tests:
:data:`covid_lib.data.SOURCES`, :data:`covid_lib.data.COMPOSITIONS`, :data:`covid_lib.grid.GRIDS`;
:data:`covid_lib.runs.CLASSIFIERS` and :data:`covid_lib.runs.PRETRAIN_SOURCES` are these tuples.
"""

#: Every data source (:data:`covid_lib.data.SOURCES`), the pre-training-only ``kermany_full`` included.
SOURCE_NAMES: tuple[str, ...] = ("cohen", "hannover", "kermany", "kermany_full", "nih", "montgomery", "shenzhen")
#: The compositions of the paper's Table I (:data:`covid_lib.data.COMPOSITIONS`), in its column order.
COMPOSITION_NAMES: tuple[str, ...] = ("CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay",
                                      "COVID-ChestXRay")
#: The classifiers (:func:`covid_lib.models.create_model` names).
ARCHS: tuple[str, ...] = ("resnet18", "resnet50", "conv8")
#: Pre-training sources: ChestXRay (``kermany``: 563 training images of the working copy;
#: ``kermany_full``: the whole set, issue 17) and RSNA (``nih``).
PRETRAIN_SOURCES: tuple[str, ...] = ("kermany", "nih", "kermany_full")
#: The named grids (:data:`covid_lib.grid.GRIDS`).
GRID_NAMES: tuple[str, ...] = ("table2", "table3", "conv8", "table4", "seeds", "ablation", "precision", "unseen",
                               "planted", "pretrain_full", "table2_full", "conv8_full", "table3_full",
                               "ablation_full", "resolution")
#: The scales the claims are judged at (:data:`covid_lib.report.judge.SCALES`): 563 ChestXRay
#: pre-training images, or the whole set.
SCALE_NAMES: tuple[str, ...] = ("563", "full")
