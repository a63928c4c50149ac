"""Evaluation on the six axes of the extended generative trilemma (docs METRICS.md).

Pure metric functions take features (N, D) or images (N, C, H, W) in [0, 1]; ``evaluate`` runs them
all on a model and returns a ``Report`` whose ``scores`` are the six radar axes in [0, 1].
"""

from __future__ import annotations

from .claims import CLAIMS_NOTE, PAPER_CLAIMS, check_claims, claim_sentence, claims_from_reports
from .classifier import (
    ARCHITECTURES,
    DEFAULT_BUDGET,
    ClassifierBudget,
    SmallCNN,
    accuracy,
    build_classifier,
    features,
    predict,
    train_classifier,
)
from .comparison import (
    comparability,
    compare,
    fmt_with_interval,
    per_class_rows,
    radar_figure,
    radar_png,
    reading,
    table_rows,
    trilemma_reading,
    write_comparison,
)
from .evaluation import balanced_label_order, evaluate, held_out_bits_per_dim
from .extractors import (
    FeatureExtractor,
    default_cache_dir,
    get_extractor,
    list_extractors,
    register_extractor,
)
from .fid import fid, kid
from .intervals import Estimate, bootstrap_mean, bootstrap_stat, difference, over_replicates
from .manifold import density_coverage, knn_radii, prdc, precision_recall
from .privacy import nearest_ssim, ssim, ssim_matrix
from .report import AXES, AXIS_HELP, BPD_HELP, HEADLINE_RAW, RAW_META, Report, normalise_scores
from .robustness import DeepFoolResult, deepfool, deepfool_rho
from .speed import sampling_speed, speed_score
from .utility import utility

__all__ = [
    "trilemma_reading",
    "AXES",
    "CLAIMS_NOTE",
    "PAPER_CLAIMS",
    "Estimate",
    "bootstrap_mean",
    "bootstrap_stat",
    "check_claims",
    "claim_sentence",
    "claims_from_reports",
    "comparability",
    "difference",
    "fmt_with_interval",
    "over_replicates",
    "per_class_rows",
    "table_rows",
    "AXIS_HELP",
    "BPD_HELP",
    "DEFAULT_BUDGET",
    "HEADLINE_RAW",
    "RAW_META",
    "ARCHITECTURES",
    "ClassifierBudget",
    "DeepFoolResult",
    "FeatureExtractor",
    "Report",
    "SmallCNN",
    "accuracy",
    "balanced_label_order",
    "build_classifier",
    "compare",
    "deepfool",
    "deepfool_rho",
    "default_cache_dir",
    "density_coverage",
    "evaluate",
    "features",
    "fid",
    "get_extractor",
    "held_out_bits_per_dim",
    "kid",
    "knn_radii",
    "list_extractors",
    "nearest_ssim",
    "normalise_scores",
    "prdc",
    "precision_recall",
    "predict",
    "radar_figure",
    "radar_png",
    "reading",
    "register_extractor",
    "sampling_speed",
    "speed_score",
    "ssim",
    "ssim_matrix",
    "train_classifier",
    "utility",
    "write_comparison",
]
