"""Analyses that judge trained models and datasets: the protocol and its claims (C1-C6), shortcut
probes, embeddings, saliency, the loss landscape and the checklist.

One layer above ``grid`` and below ``report``: an analysis reads run records and data, never a
chapter helper. Tartaglione et al. 2020, Sec. IV; Ben Ahmed et al.; the KTH report.
"""
