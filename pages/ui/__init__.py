"""Helpers shared by the pages (``from pages.ui import common``); none of them is a page.

They live in a sub-folder because Streamlit's legacy pages/ mode, which serves a fresh server's
first request, makes a page of every ``pages/*.py`` file except ``__init__.py`` and never looks
into sub-folders (``script_runner._mpa_v1``: ``pages_folder.glob("*.py")``).
"""
