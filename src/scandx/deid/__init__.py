"""De-identification (PS3.15 Annex E Basic Application Level Confidentiality Profile)."""

from scandx.deid.tree import DeidOptions, DeidSummary, deidentify_tree

__all__ = ["DeidOptions", "DeidSummary", "deidentify_tree"]
