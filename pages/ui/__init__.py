"""Helpers shared by the pages (``from pages.ui import session, datasets, ...``); none of them is a page.

session: set-up, server settings, workspace, job queue, family lists, widget values kept across pages;
datasets: dataset choice and loading; checkpoints: run pickers and loading; display: literal text,
errors, grids, curves; progress: job progress; train_fields: the Train page's field help; runs: the
Train page's "Manage runs" tab; common: a deprecated facade over the first six.

They live in a sub-folder because Streamlit's legacy pages/ mode, which serves a fresh server's
first request, makes a page of every ``pages/*.py`` file except ``__init__.py`` and never looks
into sub-folders (``script_runner._mpa_v1``: ``pages_folder.glob("*.py")``).
"""
