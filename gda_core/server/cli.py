"""``python -m gda_core worker`` (the job queue's consumer) and ``python -m gda_core workspace``
(the server owner's workspace commands: new, password, list, delete)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from ..errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("worker", help="run the job queue's worker (the app starts one when none runs)")
    p.add_argument("--app-data", default=None, help="the app's data folder (default $GDA_APP_DATA or the user data folder)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("workspace", help="manage the server's workspaces (server owner)")
    p.add_argument("action", choices=["new", "password", "list", "delete"])
    p.add_argument("token", nargs="?", default=None, help="the workspace's token (password, delete)")
    p.add_argument("--name", default=None, help="a name shown in the app (new)")
    p.add_argument("--password", action="store_true", help="ask for a password that the workspace then requires (new, password)")
    p.add_argument("--no-password", action="store_true", help="remove the workspace's password (password)")
    p.add_argument("--app-data", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workspace)


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from .config import load_config
    from .queue import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_worker(load_config(args.app_data))


def _ask_password() -> str:
    pw = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(pw) < 8:
        raise ConfigError("a workspace password needs at least 8 characters")
    return pw


def cmd_workspace(args: argparse.Namespace) -> int:
    from .config import load_config
    from .workspaces import create_workspace, delete_workspace, dir_bytes, open_workspace

    cfg = load_config(args.app_data)
    if args.action == "new":
        ws = create_workspace(cfg, name=args.name, password=_ask_password() if args.password else None)
        print(json.dumps({"token": ws.id, "link": f"/?ws={ws.id}"}) if args.json else f"workspace {ws.name}: open the app at /?ws={ws.id}")
        return 0
    if args.action == "list":
        # Tokens are not kept on the server (a folder is named by a digest of its token): the list
        # names folders; a workspace's link is the one printed when it was made.
        rows = []
        for d in sorted(cfg.workspaces_dir.glob("*")) if cfg.workspaces_dir.is_dir() else []:
            info = _read_info(d)
            if info is not None:
                rows.append({"folder": d.name, "name": str(info.get("name") or ""), "password": bool(info.get("password")),
                             "bytes": dir_bytes(d)})  # fmt: skip
        print(json.dumps(rows, indent=2) if args.json else "\n".join(f"{r['folder']}  {r['name']:20} {r['bytes']:>12} B"
                                                                       f"{'  (password)' if r['password'] else ''}" for r in rows))  # fmt: skip
        return 0
    ws = open_workspace(cfg, args.token)
    if ws is None:
        raise ConfigError(f"no workspace with token '{args.token}'")
    if args.action == "password":
        ws.set_password(None if args.no_password else _ask_password())
        print(f"workspace {ws.name}: password {'removed' if args.no_password else 'set'}")
    else:
        delete_workspace(cfg, ws)
        print(f"workspace {ws.name} deleted")
    return 0


def _read_info(folder) -> dict | None:
    try:
        d = json.loads((folder / "workspace.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None
