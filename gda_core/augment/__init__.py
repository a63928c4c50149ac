"""Generative data augmentation: synthetic training sets, selection filters, utility study, export.

- :func:`generate_synthetic`: ``ratio`` x the real training size, class-balanced or rebalancing.
- Selection filters (:class:`ConfidenceFilter`, :class:`RealismFilter`, :class:`ClusterFilter`,
  :class:`PrivacyFilter`), :func:`parse_filters` for spec strings, :func:`select`.
- :func:`run_study` -> :class:`StudyResult`: the leakage-free protocol: per scarcity level a
  generator trained on exactly the classifier's real subset; does adding its images help?
- :func:`export_zip` / :func:`export_npz` / :func:`export_folder`: files that load back with
  gda_core.data.load_dataset, with provenance.
"""

from __future__ import annotations

from .export import export, export_folder, export_npz, export_zip, provenance_path
from .generate import MODES, SyntheticSet, checkpoint_info, generate_synthetic, target_counts
from .select import (
    FILTER_HELP,
    FILTERS,
    ClusterFilter,
    ConfidenceFilter,
    Filter,
    PrivacyFilter,
    RealismFilter,
    SelectionContext,
    cluster_quotas,
    parse_filters,
    realism_scores,
    select,
)
from .study import SCOPES, plan_study, quick_budget, run_study, scarce_subset
from .study_report import StudyResult

__all__ = [
    "FILTERS",
    "FILTER_HELP",
    "MODES",
    "ClusterFilter",
    "ConfidenceFilter",
    "Filter",
    "PrivacyFilter",
    "RealismFilter",
    "SelectionContext",
    "SCOPES",
    "StudyResult",
    "SyntheticSet",
    "checkpoint_info",
    "cluster_quotas",
    "export",
    "export_folder",
    "export_npz",
    "export_zip",
    "generate_synthetic",
    "parse_filters",
    "plan_study",
    "provenance_path",
    "quick_budget",
    "realism_scores",
    "run_study",
    "scarce_subset",
    "select",
    "target_counts",
]
