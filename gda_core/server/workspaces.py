"""Workspaces: one private folder per user of a shared server.

``<app data>/workspaces/<id>/`` holds everything a user makes: ``uploads/`` (the files as sent),
``datasets/`` (uploads decoded by a worker into plain arrays), ``runs/``, ``evaluations/``,
``exports/``, ``jobs/`` (each job's log and preview), ``study-cache/`` and ``eval-cache/`` (an
evaluation's feature extractor and stage outputs: counted in the quota, gone with the workspace).
Folders are created 0700. The id is a random token (the app keeps it in the page's URL); knowing it is what gives
access, unless the server owner also set a password for the workspace (scrypt hash in
``workspace.json``). The folder is named by a digest of the token, never the token itself: paths
end up in run configs, cards and labels, and a path must not open the workspace. Folders of an
older version, named by the token, are renamed when the workspace is next opened.

Shipped checkpoints are read-only and visible to all. A user can publish one of their runs: a
read-only copy in ``<app data>/published/``, listed in everyone's pickers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, ConfigError, DataError
from ..runtime import atomic_write_bytes, atomic_write_json
from .config import ServerConfig

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
FOLDER_RE = re.compile(r"^w[0-9a-f]{32}$")
SUBDIRS = ("uploads", "datasets", "runs", "evaluations", "exports", "jobs", "study-cache", "eval-cache")
INFO = "workspace.json"
STATE = "state.json"
NOTE = "note.json"
#: What a run zip may hold (anything else is refused): weights, config, cards, history, preview, saved evaluations.
RUN_FILES = frozenset({"model.safetensors", "config.json", "history.json", "preview.png", "MODEL_CARD.md", "DATA_CARD.md", NOTE})
MAX_RUN_ZIP_MEMBERS = 200
MAX_RUN_ZIP_BYTES = 2 * 1024**3
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def folder_id(token: str) -> str:
    """The workspace folder's name for ``token``: a digest that does not give the token back."""
    return "w" + hashlib.sha256(b"gda-workspace:" + str(token).encode()).hexdigest()[:32]


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


#: scrypt cost: N = 2^17, r = 8, p = 1 (OWASP's current minimum); it needs 128 * r * N = 128 MiB, over
#: OpenSSL's default 32 MiB cap, hence maxmem. A hash of an older version records its own N.
SCRYPT_N = 2**17
_SCRYPT_MAXMEM = 256 * 1024**2
#: Wrong passwords allowed per workspace and per client in a window, then refused until it passes.
MAX_PASSWORD_FAILURES_WORKSPACE = 20
MAX_PASSWORD_FAILURES_CLIENT = 5
PASSWORD_WINDOW_S = 15 * 60.0
#: An address that opened a workspace with its password within this time is not held back by that
#: workspace's limit (only by its own): a stranger with the link cannot lock the owner out by guessing.
KNOWN_CLIENT_S = 30 * 24 * 3600.0
ATTEMPTS = "password_attempts.json"


def _scrypt(password: str, salt: bytes, n: int = SCRYPT_N) -> str:
    # hashlib.scrypt releases the GIL, so a hash on a session's script thread does not stall the others.
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=8, p=1, maxmem=_SCRYPT_MAXMEM).hex()


def safe_name(name: str, fallback: str = "file") -> str:
    """A file or folder name made of letters, digits, '-', '_' and '.', not starting with a dot."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(str(name)).name).lstrip(".")
    return cleaned[:100] or fallback


def _read_dict(path: Path) -> dict:
    """A JSON object from ``path``; {} when the file is missing, unreadable or not an object."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks are not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


@dataclass(frozen=True)
class Workspace:
    id: str
    root: Path

    def __getattr__(self, name: str) -> Path:
        sub = name.replace("_", "-")
        if sub in SUBDIRS:
            return _private_dir(self.root / sub)
        raise AttributeError(name)

    # -- identity --------------------------------------------------------------------------------
    def info(self) -> dict:
        return _read_dict(self.root / INFO)

    @property
    def name(self) -> str:
        return str(self.info().get("name") or self.id[:8])

    @property
    def has_password(self) -> bool:
        return bool(self.info().get("password"))

    def check_password(self, password: str) -> bool:
        rec = self.info().get("password")
        if not rec:
            return True
        try:
            n = int(rec.get("n", 2**14))  # a hash without its cost is of the first version (N = 2^14)
            if n not in (2**14, SCRYPT_N):
                return False
            ok = hmac.compare_digest(_scrypt(password, bytes.fromhex(rec["salt"]), n), rec["hash"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        if ok and n != SCRYPT_N:
            self.set_password(password)  # raise an old hash's cost now that the password is known
        return ok

    def set_password(self, password: str | None) -> None:
        info = self.info()
        if password:
            salt = secrets.token_bytes(16)
            info["password"] = {"salt": salt.hex(), "hash": _scrypt(password, salt), "n": SCRYPT_N}
        else:
            info.pop("password", None)
        atomic_write_json(self.root / INFO, info)

    # -- what the pages keep (the current dataset's options) ----------------------------------------
    def state(self) -> dict:
        return _read_dict(self.root / STATE)

    def save_state(self, **values: object) -> None:
        atomic_write_json(self.root / STATE, {**self.state(), **values})

    # -- disk ------------------------------------------------------------------------------------
    def usage_bytes(self) -> int:
        return dir_bytes(self.root)

    def check_quota(self, cfg: ServerConfig, extra: int = 0) -> None:
        """Refuse new work when the workspace (plus ``extra`` bytes about to be written) is over its quota."""
        used = self.usage_bytes()
        if used + extra > cfg.workspace_quota_bytes:
            from ..data.safety import human_bytes

            raise DataError(f"workspace quota: this workspace uses {human_bytes(used)}{f' (+{human_bytes(extra)} new)' if extra else ''}, "
                            f"over the limit workspace_quota_bytes = {human_bytes(cfg.workspace_quota_bytes)}; delete runs or uploads first")  # fmt: skip

    def save_upload(self, cfg: ServerConfig, name: str, data: bytes) -> Path:
        """Write an uploaded file into the private uploads folder (same bytes -> same path)."""
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = _private_dir(self.uploads / digest) / safe_name(name, "upload")
        if not path.exists():
            self.check_quota(cfg, len(data))
            atomic_write_bytes(path, data)
            os.chmod(path, 0o600)
        return path

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is inside this workspace (symlinks resolved)."""
        try:
            return Path(path).resolve().is_relative_to(self.root.resolve())
        except OSError:
            return False


def attempt_password(cfg: ServerConfig, ws: Workspace, password: str, client: str | None) -> bool:
    """Check a password typed at a workspace's gate, under attempt limits: after too many wrong ones
    for this workspace (any client) or from this client (any workspace) within the window, refuse
    (one-line ConfigError) without hashing until the window has passed. An address that opened this
    workspace before (within KNOWN_CLIENT_S) is held back only by its own limit, so guesses from
    elsewhere cannot lock the owner out (behind a proxy that hides addresses, every user is one address)."""
    from filelock import FileLock

    keys = [f"ws:{folder_id(ws.id)}"] + ([f"client:{client}"] if client else [])
    limits = {keys[0]: MAX_PASSWORD_FAILURES_WORKSPACE, **({keys[1]: MAX_PASSWORD_FAILURES_CLIENT} if client else {})}
    known = f"ok:{folder_id(ws.id)}:{client}" if client else None
    path = cfg.app_data / ATTEMPTS
    with FileLock(str(path) + ".lock"):
        now = time.time()
        log = {k: [t for t in v if isinstance(t, (int, float)) and now - t < (KNOWN_CLIENT_S if k.startswith("ok:") else PASSWORD_WINDOW_S)]
               for k, v in _read_dict(path).items() if isinstance(v, list)}  # fmt: skip
        for k in keys:
            if k == keys[0] and known and log.get(known):
                continue  # this address has opened the workspace before: only its own limit applies
            if len(log.get(k, [])) >= limits[k]:
                wait = max(1, int((min(log[k]) + PASSWORD_WINDOW_S - now) // 60) + 1)
                who = "this workspace" if k == keys[0] else "this address"
                raise ConfigError(f"too many wrong passwords for {who}; try again in {wait} minute{'s' * (wait != 1)}")
    ok = ws.check_password(password)
    with FileLock(str(path) + ".lock"):
        log = {k: v for k, v in _read_dict(path).items() if isinstance(v, list)}
        for k in keys:
            log[k] = [] if ok and k == keys[0] else [*log.get(k, [])[-50:], time.time()] if not ok else log.get(k, [])
        if ok and known:
            log[known] = [time.time()]
        atomic_write_json(path, log)
    return ok


def create_workspace(cfg: ServerConfig, *, name: str | None = None, password: str | None = None) -> Workspace:
    _private_dir(cfg.workspaces_dir)
    token = secrets.token_urlsafe(18)
    ws = Workspace(token, _private_dir(cfg.workspaces_dir / folder_id(token)))
    atomic_write_json(ws.root / INFO, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "name": name or ""})
    if password:
        ws.set_password(password)
    return ws


def open_workspace(cfg: ServerConfig, token: str | None) -> Workspace | None:
    """The workspace with this token, or None (malformed or unknown token)."""
    if not token or not TOKEN_RE.match(str(token)):
        return None
    root = cfg.workspaces_dir / folder_id(str(token))
    legacy = cfg.workspaces_dir / str(token)
    # A digest-named folder is never a legacy one: its name must not open it (it is no token).
    if not (root / INFO).is_file() and not FOLDER_RE.match(str(token)) and (legacy / INFO).is_file() and not legacy.is_symlink():
        _migrate(cfg, str(token), legacy, root)
    if not (root / INFO).is_file():
        return None
    return Workspace(str(token), root)


def _migrate(cfg: ServerConfig, token: str, legacy: Path, root: Path) -> None:
    """Rename a folder named by its token (older versions) to its digest name, and rewrite the
    token-bearing paths its own files record (run configs, prepared datasets, the page state)."""
    try:
        legacy.rename(root)
    except OSError:
        return  # another process migrated it meanwhile (or cannot now): the next open finds it
    old, new = str(legacy.resolve(strict=False)), str(root.resolve())
    for f in root.rglob("*"):
        if f.suffix in (".json", ".md") and f.is_file() and not f.is_symlink():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = f.read_text(encoding="utf-8")
                if old in text or str(legacy) in text:
                    atomic_write_bytes(f, text.replace(old, new).replace(str(legacy), new).encode("utf-8"))


def delete_workspace(cfg: ServerConfig, ws: Workspace) -> None:
    """Remove the workspace's folder (uploads, runs, everything) and its jobs' records."""
    from .store import JobStore

    shutil.rmtree(ws.root, ignore_errors=True)
    JobStore(cfg.app_data / "jobs.db").delete_workspace(ws.id)


# -- run management ------------------------------------------------------------------------------


def _own(ws: Workspace, folder: str | os.PathLike, marker: str, what: str) -> Path:
    """``folder`` if it is a folder of this workspace's runs holding ``marker``, else a one-line ConfigError."""
    path = Path(folder)
    if not ws.owns(path) or path.resolve().parent != ws.runs.resolve() or not (path / marker).is_file():
        raise ConfigError(f"{path.name} is not one of this workspace's {what}")
    return path


def _own_run(ws: Workspace, run_dir: str | os.PathLike) -> Path:
    return _own(ws, run_dir, "config.json", "runs")


def _write_members(folder: Path, members: dict[str, bytes]) -> None:
    """A run's checked files (run-relative keys) written under ``folder``."""
    for key, content in members.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(content)


def run_note(run_dir: str | os.PathLike) -> str:
    try:
        d = json.loads((Path(run_dir) / NOTE).read_text(encoding="utf-8"))
        return str(d.get("note", ""))[:2000] if isinstance(d, dict) else ""
    except (OSError, ValueError):
        return ""


def set_run_note(ws: Workspace, run_dir: str | os.PathLike, note: str) -> None:
    atomic_write_json(_own_run(ws, run_dir) / NOTE, {"note": str(note)[:2000]})


def rename_run(ws: Workspace, run_dir: str | os.PathLike, new_name: str, busy: set[str]) -> Path:
    path = _own_run(ws, run_dir)
    if str(path) in busy:
        raise ConfigError(f"{path.name} is being trained; wait or cancel the job first")
    if not _NAME_RE.match(new_name or ""):
        raise ConfigError("a run name is 1-100 letters, digits, '.', '-' or '_', starting with a letter or digit")
    dst = path.parent / new_name
    if dst.exists():
        raise ConfigError(f"a run named {new_name} already exists")
    path.rename(dst)
    return dst


def delete_run(ws: Workspace, run_dir: str | os.PathLike, busy: set[str]) -> None:
    path = _own_run(ws, run_dir)
    if str(path) in busy:
        raise ConfigError(f"{path.name} is being trained; cancel the job first")
    shutil.rmtree(path)


# -- sweeps: a folder of runs (setting<i>-seed<s>) and its sweep.json, under the workspace's runs ----------------


def _own_sweep(ws: Workspace, sweep_dir: str | os.PathLike) -> Path:
    return _own(ws, sweep_dir, "sweep.json", "sweeps")


def list_sweeps(ws: Workspace) -> list[dict]:
    """The workspace's sweep folders, newest first: {path, title, runs, size_bytes}. A sweep's runs sit one
    folder down, so the run pickers never see them; a sweep.json that cannot be read is still listed (to delete)."""
    from ..sweep import SweepResult, setting_label

    out = []
    for f in ws.runs.glob("*/sweep.json"):
        d = f.parent
        try:
            res = SweepResult.from_dict(json.loads(f.read_text(encoding="utf-8")))
            grid = "; ".join(setting_label(g) for g in res.grid)[:200]
            title = f"{res.family} on {Path(res.dataset).name}: {len(res.grid)} settings x {len(res.seeds)} seeds ({grid})"
        except (OSError, ValueError, ConfigError):
            title = "sweep.json unreadable"
        runs = sorted(r.name for r in d.iterdir() if r.is_dir() and not r.is_symlink() and (r / "config.json").is_file()
                      and (r / "model.safetensors").is_file())  # fmt: skip
        out.append({"path": d, "title": title, "runs": runs, "size_bytes": dir_bytes(d), "mtime": f.stat().st_mtime})
    return sorted(out, key=lambda x: -x["mtime"])


def delete_sweep(ws: Workspace, sweep_dir: str | os.PathLike, busy: set[str]) -> None:
    path = _own_sweep(ws, sweep_dir)
    if str(path) in busy:
        raise ConfigError(f"{path.name} is being written by a sweep job; cancel it first")
    shutil.rmtree(path)


def keep_sweep_run(cfg: ServerConfig, ws: Workspace, sweep_dir: str | os.PathLike, run_name: str) -> Path:
    """A copy of one of a sweep's runs among the workspace's runs (``<sweep>-<run>``), so it can be sampled,
    compared and published like any other: the files a run zip holds (no training state), counted against the quota."""
    sweep = _own_sweep(ws, sweep_dir)
    src = sweep / str(run_name)
    if not _NAME_RE.match(str(run_name)) or src.parent != sweep or not (src / "config.json").is_file() or src.is_symlink():
        raise ConfigError(f"{run_name} is not a run of the sweep {sweep.name}")
    dst = ws.runs / f"{sweep.name}-{run_name}"[:100]
    if dst.exists():
        raise ConfigError(f"{dst.name} is already among your runs")
    members = _zip_members(cfg, ws, run_zip_bytes(src))  # the checks and the quota of an uploaded run
    staging = ws.runs / f".{dst.name}.part"
    shutil.rmtree(staging, ignore_errors=True)
    _write_members(staging, members)
    os.replace(staging, dst)
    return dst


def run_zip_bytes(run_dir: str | os.PathLike) -> bytes:
    """A run as a zip: weights, config, cards, history, preview, note and saved evaluations (no training state)."""
    path = Path(run_dir)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(path.iterdir()):
            if f.name in RUN_FILES and f.is_file() and not f.is_symlink():
                zf.write(f, f"{path.name}/{f.name}")
        for f in sorted((path / "eval").glob("*.json")):
            if f.is_file() and not f.is_symlink():
                zf.write(f, f"{path.name}/eval/{f.name}")
    return buf.getvalue()


#: Caps on one run zip's members, by their declared (uncompressed) size: a text file, the preview,
#: a saved evaluation (each also read as a Report), and how many evaluations.
MAX_RUN_TEXT_BYTES = 16 * 1024**2
MAX_RUN_PREVIEW_BYTES = 8 * 1024**2
MAX_REPORT_BYTES = 2 * 1024**2
MAX_RUN_REPORTS = 50


def _member_cap(cfg: ServerConfig, key: str) -> int:
    if key == "model.safetensors":
        return 8 * cfg.max_model_params + 1024**2  # float64 at the model budget, plus its header
    if key == "preview.png":
        return MAX_RUN_PREVIEW_BYTES
    return MAX_REPORT_BYTES if key.startswith("eval/") else MAX_RUN_TEXT_BYTES


def _run_key(filename: str) -> str:
    """A member's name inside the run (``<run>/config.json`` or ``config.json``); unsafe or unexpected ones refused."""
    parts = [p for p in filename.replace("\\", "/").split("/") if p]
    if any(p in ("..", ".") for p in parts) or filename.startswith("/"):
        raise CheckpointError(f"the run zip has an unsafe member path '{filename}'; refused")
    inner = parts[1:] if len(parts) > 1 and parts[1:] and (parts[1] in RUN_FILES or parts[1] == "eval") else parts
    key = "/".join(inner)
    if not (key in RUN_FILES or (len(inner) == 2 and inner[0] == "eval" and inner[1].endswith(".json"))):
        raise CheckpointError(f"the run zip holds '{filename}', which is not part of a run (pickled weights and other files are refused)")
    return key


def check_run_zip(cfg: ServerConfig, ws: Workspace, zf: zipfile.ZipFile, *, quota: bool = True) -> list[tuple[zipfile.ZipInfo, str]]:
    """From the zip's directory alone (nothing inflated): every member's name and declared size
    against its cap, and (``quota``) the declared total against what is left of the workspace's quota."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > MAX_RUN_ZIP_MEMBERS:
        raise CheckpointError(f"the run zip holds {len(infos)} files, over the limit of {MAX_RUN_ZIP_MEMBERS}; refused")
    out = [(i, _run_key(i.filename)) for i in infos]
    if sum(1 for _i, k in out if k.startswith("eval/")) > MAX_RUN_REPORTS:
        raise CheckpointError(f"the run zip holds more than {MAX_RUN_REPORTS} saved evaluations; refused")
    from ..data.safety import human_bytes

    for info, key in out:
        if info.file_size > _member_cap(cfg, key):
            raise CheckpointError(f"the run zip member '{info.filename}' declares {human_bytes(info.file_size)}, over the "
                                  f"{human_bytes(_member_cap(cfg, key))} a run's {key} may hold; refused")  # fmt: skip
    total = sum(i.file_size for i, _k in out)
    if total > MAX_RUN_ZIP_BYTES:
        raise CheckpointError(f"the run zip declares {human_bytes(total)} unpacked, over {human_bytes(MAX_RUN_ZIP_BYTES)}; refused")
    if quota:
        ws.check_quota(cfg, total)
    return out


def _open_zip(source: bytes | str | os.PathLike) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    except (zipfile.BadZipFile, OSError):
        raise CheckpointError("the uploaded file is not a zip archive") from None


def _zip_members(cfg: ServerConfig, ws: Workspace, source: bytes | str | os.PathLike, *, quota: bool = True) -> dict[str, bytes]:
    """The members of an uploaded run zip, by name inside the run, each read no further than its
    declared size (checked first, :func:`check_run_zip`); a saved evaluation must read as a report."""
    with _open_zip(source) as zf:
        out: dict[str, bytes] = {}
        for info, key in check_run_zip(cfg, ws, zf, quota=quota):
            try:
                with zf.open(info) as fh:
                    content = fh.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
                raise CheckpointError(f"the run zip member '{info.filename}' cannot be read ({str(exc)[:80]}); refused") from None
            if len(content) > info.file_size:
                raise CheckpointError(f"the run zip member '{info.filename}' inflates past its declared size; refused")
            if key.startswith("eval/"):
                _check_report(info.filename, content)
            out[key] = content
    return out


def _check_report(name: str, content: bytes) -> None:
    from ..errors import GDAError
    from ..metrics import Report

    try:
        Report.from_dict(json.loads(content))
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError, GDAError):
        raise CheckpointError(f"the run zip's saved evaluation '{name}' is not a valid report; refused") from None


def import_run_zip(cfg: ServerConfig, ws: Workspace, source: bytes | str | os.PathLike, name: str) -> Path:
    """Add an uploaded run zip (bytes, or a file: the import job's) to the workspace after validating
    it as an untrusted checkpoint (gda_core.checkpoints.load_run: config checked, tensor shapes from
    the header, no NaN), no larger than the server's model budget. Runs in a worker job (the
    ``import`` kind): it inflates the members and builds the model, which the web server must not."""
    from ..checkpoints import build_from_config, load_run, read_config

    members = _zip_members(cfg, ws, source)
    if "config.json" not in members or "model.safetensors" not in members:
        raise CheckpointError("the run zip needs config.json and model.safetensors")
    members = scrub_members(members, ws, keep_own=True)
    base = safe_name(Path(name).stem, "run")
    staging = _private_dir(ws.jobs / f".import-{secrets.token_hex(4)}")
    try:
        _write_members(staging, members)
        del members
        n = sum(p.numel() for p in build_from_config(read_config(staging), staging, meta=True).parameters())
        if n > cfg.max_model_params:
            raise CheckpointError(
                f"model budget: the uploaded run has {n:,} parameters, over the limit max_model_params = {cfg.max_model_params:,}"
            )
        load_run(staging, device="cpu")
        target = ws.runs / base
        i = 1
        while target.exists():
            i += 1
            target = ws.runs / f"{base}-{i}"
        staging.rename(target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


PRIVATE_DATA = "private:"


def _is_named(source: str) -> bool:
    from ..data import list_datasets

    return str(source).lower() in {d.name for d in list_datasets()}


def _scrub_value(value: object, secrets_: list[str]) -> object:
    """Strings with a secret replaced and absolute paths cut to their last part, all through a JSON value."""
    if isinstance(value, dict):
        return {k: _scrub_value(v, secrets_) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, secrets_) for v in value]
    if isinstance(value, str):
        for sec in secrets_:
            value = value.replace(sec, "<workspace>")
        if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", value):
            value = Path(value.replace("\\", "/")).name
    return value


def scrub_config(cfg_json: dict, ws: Workspace, *, keep_own: bool) -> dict:
    """A run config with no server path left in it: a dataset that is not a named one becomes
    ``private:<file name>`` (its data stays with the workspace that trained it), ``data_dir`` is
    dropped, and every other absolute path is cut to its last part. ``keep_own``: a dataset inside
    ``ws`` itself is kept (a run imported back into its own workspace can still be evaluated)."""
    out = dict(cfg_json)
    data = dict(out.get("data") or {}) if isinstance(out.get("data"), dict) else {}
    source = str(data.get("source", ""))
    own = keep_own and bool(source) and ws.owns(source)
    if data and not own:
        if source and not _is_named(source) and not source.startswith(PRIVATE_DATA):
            data["source"] = PRIVATE_DATA + safe_name(Path(source.replace("\\", "/")).name, "data")
        data["data_dir"] = None
    rest = _scrub_value({k: v for k, v in out.items() if k != "data"}, _secrets(ws))
    return {**rest, **({"data": data if own else _scrub_value(data, _secrets(ws))} if data else {})}


def _secrets(ws: Workspace) -> list[str]:
    """What must not leave a workspace in a file: its token and its folder's paths (longest first)."""
    return sorted({str(ws.root.resolve()), str(ws.root), ws.id}, key=len, reverse=True)


def scrub_members(members: dict[str, bytes], ws: Workspace, *, keep_own: bool) -> dict[str, bytes]:
    """A run's files with its config scrubbed (:func:`scrub_config`) and the workspace's token and
    folder paths taken out of every text file (cards, history, note, saved evaluations)."""
    out = dict(members)
    for key, content in members.items():
        if key == "config.json":
            try:
                cfg_json = json.loads(content)
            except ValueError:
                raise CheckpointError("the run's config.json is not valid JSON") from None
            if not isinstance(cfg_json, dict):
                raise CheckpointError("the run's config.json is not a JSON object")
            out[key] = json.dumps(scrub_config(cfg_json, ws, keep_own=keep_own), indent=2).encode()
        elif key.endswith((".json", ".md")):
            text = content.decode("utf-8", errors="replace")
            for sec in _secrets(ws):
                text = text.replace(sec, "<workspace>")
            out[key] = text.encode("utf-8")
    return out


def publish_run(cfg: ServerConfig, ws: Workspace, run_dir: str | os.PathLike, busy: set[str]) -> Path:
    """A read-only copy of one of this workspace's runs in the published area, visible to all."""
    path = _own_run(ws, run_dir)
    if str(path) in busy:
        raise ConfigError(f"{path.name} is being trained; publish it when the job is over")
    dst = cfg.published_dir / f"{path.name}-{hashlib.sha256(ws.id.encode()).hexdigest()[:6]}"
    if dst.exists():
        raise ConfigError(f"{path.name} is already published; unpublish it first to publish a newer version")
    cfg.published_dir.mkdir(parents=True, exist_ok=True)
    staging = cfg.published_dir / f".{dst.name}.part"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    # The run's own files, read as an upload would be (the copy goes outside the workspace: no quota).
    members = scrub_members(_zip_members(cfg, ws, run_zip_bytes(path), quota=False), ws, keep_own=False)
    _write_members(staging, members)
    cfg_json = json.loads((staging / "config.json").read_text())
    cfg_json["published_by"] = hashlib.sha256(ws.id.encode()).hexdigest()[:16]
    (staging / "config.json").write_text(json.dumps(cfg_json, indent=2))
    for root, dirs, files in os.walk(staging):
        for f in files:
            os.chmod(os.path.join(root, f), 0o444)
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o555)
    staging.rename(dst)
    os.chmod(dst, 0o555)
    return dst


def published_by(ws: Workspace, run_dir: Path) -> bool:
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return cfg.get("published_by") == hashlib.sha256(ws.id.encode()).hexdigest()[:16]


def unpublish_run(cfg: ServerConfig, ws: Workspace, run_dir: str | os.PathLike) -> None:
    path = Path(run_dir)
    if path.resolve().parent != cfg.published_dir.resolve() or not published_by(ws, path):
        raise ConfigError(f"{path.name} was not published from this workspace")
    for root, dirs, _files in os.walk(path):
        os.chmod(root, 0o755)
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    shutil.rmtree(path)


def check_data_source(cfg: ServerConfig, ws: Workspace, source: str, data_dir: str | None = None) -> None:
    """Refuse a dataset this workspace may not read: another workspace's upload (a published run
    records its owner's data as ``private:<name>``; older ones its path), or a server path when the
    server owner has not allowed them. Named datasets (digits, MedMNIST) are open to all, in the
    shared download folder or a ``data_dir`` inside this workspace (anywhere else a download would
    write outside every quota, and reading it is reading a server path)."""
    source = str(source)
    if data_dir not in (None, "") and not ws.owns(data_dir):
        raise DataError("a dataset folder (data_dir) outside this workspace is refused on a shared server; leave it empty to use "
                        "the shared download folder")  # fmt: skip
    if source.startswith(PRIVATE_DATA):
        raise DataError("this run's training data belongs to the workspace that trained it: what needs it (nearest images, evaluation, "
                        "augmentation) is not available for it")  # fmt: skip
    if _is_named(source) or ws.owns(source):
        return
    if Path(source).resolve().is_relative_to(cfg.app_data.resolve()):
        raise DataError("this run's training data belongs to another workspace: what needs it (nearest images, evaluation, augmentation) "
                        "is not available for it")  # fmt: skip
    if not cfg.allow_server_paths:
        raise DataError("reading datasets from paths on the server is off (the server owner turns it on with allow_server_paths)")
