"""pages/ui/common.py is a facade kept for one release over the modules it was split into: every
public helper the pages used as ``common.X`` must still be there, and be the same object (a copy
would have its own st.cache_resource and its own state)."""

from __future__ import annotations

import inspect

from pages.ui import checkpoints, common, datasets, display, progress, session, train_fields


def test_common_reexports_every_public_helper_of_the_split_modules():
    for mod in (session, datasets, checkpoints, display, progress, train_fields):
        public = [n for n, v in vars(mod).items() if not n.startswith("_") and getattr(v, "__module__", mod.__name__) == mod.__name__
                  and (inspect.isfunction(v) or n.isupper())]  # fmt: skip
        assert public, mod.__name__
        for name in public:
            assert getattr(common, name) is getattr(mod, name), f"common.{name} is not {mod.__name__}.{name}"


def test_plain_escapes_markdown_from_its_new_home():
    assert display.plain("[x](http://e) *a*") == "\\[x\\]\\(http://e\\) \\*a\\*"
