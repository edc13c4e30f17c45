"""Chapter helpers: one module per chapter of the book (tables, figures, record readers for
display), on top of :mod:`covid_lib.analysis`. ``common`` holds what several chapters share.
"""
