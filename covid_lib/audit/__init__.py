"""``covid_lib audit``: the book's shortcut checks on anyone's chest X-ray dataset.

- :mod:`.manifest`: read and check a CSV manifest (one-line :class:`ManifestError`).
- :mod:`.measures`: the measurements (metadata factors, metadata baseline, leakage and
  duplicates, image-statistics and lung-mask probes), each a tidy table with patient intervals.
- :mod:`.model`: with ``--model``, a trained model's AUC per metadata group, its score by
  source within each class and its saliency's in-lung share (section 6).
- :mod:`.findings`: the flag rule and the findings, worst first.
- :mod:`.execute`: the parameterised audit notebook run like a chapter, plus its HTML page.

The layer above :mod:`covid_lib.book` (it uses the book's runner), below the command line.
"""

from covid_lib.audit.findings import MARGIN, is_flagged, rank_findings, validation_note
from covid_lib.audit.manifest import AuditManifest, ManifestError, load_manifest, parse_labels
from covid_lib.audit.measures import SETTINGS, AuditSettings, get_settings, run_audit
from covid_lib.audit import figures

__all__ = ["MARGIN", "SETTINGS", "AuditManifest", "AuditSettings", "ManifestError", "figures", "get_settings",
           "is_flagged", "load_manifest", "parse_labels", "rank_findings", "run_audit", "validation_note"]
