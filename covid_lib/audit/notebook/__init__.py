"""The audit notebook's jupytext source (``audit.py``), shipped with the package so an installed
``covid_lib`` finds it; it is executed by :func:`covid_lib.audit.execute.audit_dataset`, never imported."""
