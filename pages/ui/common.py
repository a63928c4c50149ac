"""Deprecated facade: the helpers moved to pages/ui/{session, display, datasets, checkpoints, progress,
train_fields}.py (split by what the pages need). Kept for one release so that branches still writing
``common.X`` (the Train page is being edited elsewhere) merge and run unchanged; import from the new
modules in new code. Remove after the next release."""

from __future__ import annotations

from pages.ui.checkpoints import (  # noqa: F401
    all_runs,
    load_run_cached,
    offer_real_images,
    open_run,
    run_label,
    run_picker,
    runs_dir,
)
from pages.ui.datasets import (  # noqa: F401
    current_dataset,
    data_options,
    dataset_description,
    dataset_for_run,
    dataset_names,
    load_dataset_cached,
    prepared_dataset,
    prepared_warnings,
    save_upload,
)
from pages.ui.display import (  # noqa: F401
    curves_figure,
    fmt_seconds,
    plain,
    show_error,
    show_grid,
    upscaled,
)
from pages.ui.progress import (  # noqa: F401
    job_status_text,
    live,
    show_job_progress,
)
from pages.ui.session import (  # noqa: F401
    APP,
    DEFAULT_DATA,
    DISTILL_HINT,
    config,
    device_label,
    iterative_families,
    job_queue,
    keep,
    model_families,
    owner,
    remember,
    set_data_options,
    setup,
    workspace,
)
from pages.ui.train_fields import (  # noqa: F401
    FIELD_HELP,
    FIXED_FIELDS,
    MAIN_FIELDS,
)
