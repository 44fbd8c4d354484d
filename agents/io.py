"""Writing files safely: the one writer for every file and folder the project writes.

Two layers:

* **Atomic writes** (:func:`atomic_path`, :func:`atomic_write_text`, :func:`atomic_write_json`,
  :func:`atomic_save`): the content goes to a temporary file in the target's folder, is flushed
  to disk, and is renamed into place (``os.replace``), so a kill at any moment leaves either the
  old file or the new one, never half of one. Files get the user's umask (``0644`` under the
  usual ``022``), not the ``0600`` of :func:`tempfile.mkstemp`. A target that exists and is not
  a regular file (a device, a folder, a FIFO, a symbolic link, e.g. ``/dev/stdout``) is refused:
  renaming over it would replace the link or turn a device node into a regular file.

* **Outputs a user names** (``--out``, ``--json``, ``--csv``, ``--plot``): one rule for every
  command, checked by :func:`plan_file` / :func:`plan_folder` before any work starts:

  - an explicit path that exists is refused (:class:`OutputError`, one line) unless ``force``;
  - ``force`` replaces only an output this tool wrote before and nobody changed since: a small
    manifest records it (``.flywheel-output.json`` inside an output folder; a hidden sidecar
    ``.NAME.flywheel-output.json`` beside an output file) with the SHA-256 of every file. A run
    folder, a folder holding anything the manifest does not list, or a file edited since is
    never replaced;
  - a default location that exists (``RUN/eval``, ``runs/benchmark.json``) gets the next free
    name (``eval-2``, ``benchmark-2.json``), and :attr:`Output.note` says so in one line;
  - the folder must exist and be writable (the project's own ``runs/`` is made when missing: a
    fresh clone has none, and the README's commands write there), the name must fit the file
    system, and a file's extension must be one the writer supports (a plot's format follows
    its extension).

  Then :func:`write_output_file` / :func:`output_folder` write through the atomic layer and
  leave the manifest. Nothing is ever renamed away or deleted unless the manifest proves this
  tool wrote it.

A fault hook (:func:`fault_hook`) lets tests make every write fail as a full disk would
(``ENOSPC`` raised after the data is written, before the rename), without a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

MANIFEST = ".flywheel-output.json"
TOOL = "flywheel"
#: marker in every temporary name, so a leftover of a killed write is recognisable
TEMP_MARK = ".flywheel-tmp-"
#: formats matplotlib's Agg backend writes, by extension
PLOT_FORMATS = ("png", "pdf", "svg", "eps", "ps")
#: longest file name most file systems take (bytes); longer names fail with ENAMETOOLONG
NAME_MAX = 255

RUNS_DIR = Path(__file__).resolve().parent.parent / "runs"
"""The project's ``runs/``: the one folder an output may be named in before it exists."""


def in_project_runs(path: str | Path) -> bool:
    """``path`` is an entry of the project's ``runs/`` folder itself (not deeper)."""
    return Path(os.path.abspath(path)).parent == Path(os.path.abspath(RUNS_DIR))


_writer: str | None = None


def set_writer(name: str) -> None:
    """Name the command whose outputs this process writes from now on (each script's ``main``
    calls it with its own name): the manifest records it, and ``--force`` replaces only an
    output the same command wrote (``sensitivity.py --force`` never replaces an evaluation)."""
    global _writer
    _writer = name


def current_writer() -> str:
    """The command writing now: :func:`set_writer`'s name, else the program's (``sys.argv[0]``)."""
    if _writer:
        return _writer
    return _program(sys.argv[0] if sys.argv else "") or "python"


def _program(command: str) -> str | None:
    """The program of a command line: ``evaluate`` of ``scripts/evaluate.py ...`` and of
    ``flywheel evaluate ...`` (the console's subcommands spell ``_`` as ``-``)."""
    words = str(command or "").split()
    if not words:
        return None
    first = Path(words[0]).stem
    return words[1].replace("-", "_") if first == "flywheel" and len(words) > 1 else first


def _writer_of(doc: dict) -> str | None:
    """The command that wrote a manifest: its ``writer``, or for manifests older than that key the
    program of its ``command`` line (``evaluate.py ...`` or ``flywheel evaluate ...``)."""
    writer = doc.get("writer")
    if isinstance(writer, str) and writer:
        return writer
    return _program(doc.get("command"))


class OutputError(ValueError):
    """An output path cannot be used (exists, not ours, not writable, wrong kind). One line."""


# --------------------------------------------------------------------------- fault injection

_FAULT: Callable[[Path], None] | None = None


@contextlib.contextmanager
def fault_hook(hook: Callable[[Path], None]) -> Iterator[None]:
    """Call ``hook(final_path)`` before every rename into place while the block runs.

    A hook that raises ``OSError(errno.ENOSPC, ...)`` behaves like a disk that filled up during
    the write: the temporary file is removed and the target keeps its old content.
    """
    global _FAULT
    previous, _FAULT = _FAULT, hook
    try:
        yield
    finally:
        _FAULT = previous


def disk_full(path: Path) -> None:
    """A fault hook: the disk is full (``ENOSPC``) for every write."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


# --------------------------------------------------------------------------- permissions and checks


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    return 0o777 & ~current_umask()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_target(path: str | Path, what: str | None = None) -> None:
    """Refuse a target that exists and is not a regular file (device, folder, FIFO, link)."""
    path = Path(path)
    what = what or str(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{what}: cannot inspect ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        raise OutputError(f"{what} is a symbolic link (to {target}); name a regular file, the writer never replaces links")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{what} is {_kind(st.st_mode)}, not a regular file; name a file path")


def check_name(path: Path, what: str) -> None:
    """Each path component must fit the file system's name limit (a 300-character name does not)."""
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise OutputError(f"{what}: the name '{part[:40]}...' is {len(os.fsencode(part))} bytes; at most {NAME_MAX} are allowed")
    if len(os.fsencode(str(path.absolute()))) > 4000:
        raise OutputError(f"{what}: the path is too long")


def check_folder_writable(folder: Path, what: str, create: bool = False) -> None:
    """The folder exists (or, with ``create``, can be made) and a file can be created in it."""
    folder = folder if str(folder) else Path(".")
    probe_dir = folder
    if not folder.is_dir():
        if folder.exists():
            raise OutputError(f"{what}: {folder} is not a folder")
        if not create:
            raise OutputError(f"{what}: folder {folder} does not exist; create it first")
        probe_dir = next((p for p in folder.absolute().parents if p.exists()), Path("/"))
        if not probe_dir.is_dir():
            raise OutputError(f"{what}: {probe_dir} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".probe{TEMP_MARK}", dir=probe_dir)
    except OSError as exc:
        raise OutputError(f"{what}: cannot write in {probe_dir} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def describe_os_error(exc: OSError, what: str) -> str:
    """One line for a failed write (``cannot write X: No space left on device``)."""
    reason = exc.strerror or str(exc)
    return f"cannot write {what}: {reason}"


# --------------------------------------------------------------------------- atomic writes


def _temp_name(path: Path) -> str:
    # short stem: the temporary name must fit NAME_MAX even when the target's name nearly does
    return f".{path.stem[:64]}{TEMP_MARK}{secrets.token_hex(4)}{path.suffix or '.tmp'}"


def _no_space_left(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, create_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary name keeps the suffix (SB3 appends ``.zip`` to names without one). The file
    ends with the user's umask. A target that is not a regular file raises :class:`OutputError`.
    """
    path = Path(path)
    check_regular_target(path)
    if create_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.parent / _temp_name(path)
    try:
        try:
            yield tmp_path
        except OSError as exc:
            if exc.errno is not None and exc.filename in (None, str(tmp_path)):  # name the file the user knows, not the temporary
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise
        except Exception as exc:
            if _no_space_left(path.parent):  # a library that wraps the OSError (torch's zip writer)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            raise
        if not tmp_path.exists():  # the writer wrote nothing: an empty file
            tmp_path.touch()
        os.chmod(tmp_path, file_mode())
        _fsync_path(tmp_path)
        if _FAULT is not None:
            _FAULT(path)
        check_regular_target(path)  # it may have become a link or a device meanwhile
        os.replace(tmp_path, path)
        _fsync_path(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_save(path: str | Path, save: Callable[[str], Any]) -> None:
    """Call ``save(tmp_path)`` (e.g. ``model.save``) and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        save(str(tmp))


def stale_temporaries(folder: str | Path) -> list[Path]:
    """Leftovers of writes killed before their rename (recognised by :data:`TEMP_MARK`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if TEMP_MARK in p.name and p.name.startswith("."))


# --------------------------------------------------------------------------- manifests


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    """Where the manifest of an output file lives: ``.NAME.flywheel-output.json`` beside it."""
    return path.parent / f".{path.name}{MANIFEST}"


def _manifest(files: dict[str, str], kind: str) -> dict:
    return {
        "tool": TOOL,
        "kind": kind,
        "writer": current_writer(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": files,
    }


def _read_manifest(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("tool") != TOOL or not isinstance(doc.get("files"), dict):
        return None
    return doc


def _folder_files(folder: Path) -> dict[str, Path]:
    """Every entry under ``folder`` but the manifest, by relative POSIX path (folders end in ``/``)."""
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            full = Path(root) / name
            rel = full.relative_to(folder).as_posix()
            if rel == MANIFEST:
                continue
            found[rel + ("/" if name in dirs and not full.is_symlink() else "")] = full
    return found


def looks_like_run_folder(folder: Path) -> bool:
    """A training run folder (``config.yaml`` with ``checkpoints/`` or ``model.zip``)."""
    return (folder / "config.yaml").is_file() and ((folder / "checkpoints").is_dir() or (folder / "model.zip").is_file())


def _other_writer(doc: dict) -> str | None:
    """Why a manifest's output is not this command's to replace (another command wrote it), or None."""
    writer, now = _writer_of(doc), current_writer()
    if writer is not None and writer != now:
        return f"it was written by {writer}, not {now}"
    return None


def why_not_ours_file(path: Path) -> str | None:
    """``None`` if ``path`` is an output file this tool wrote and nobody changed since."""
    doc = _read_manifest(sidecar_path(path))
    if doc is None or doc.get("kind") != "file":
        return "it was not written by this tool"
    other = _other_writer(doc)
    if other:
        return other
    want = doc["files"].get(path.name)
    try:
        have = sha256_file(path)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if want != have:
        return "it was changed since this tool wrote it"
    return None


def why_not_ours_folder(folder: Path) -> str | None:
    """``None`` if ``folder`` is an output folder this tool wrote, holding nothing else, unchanged."""
    if looks_like_run_folder(folder):
        return "it is a training run folder"
    doc = _read_manifest(folder / MANIFEST)
    if doc is None or doc.get("kind") != "folder":
        return f"it was not written by this tool (no {MANIFEST})"
    other = _other_writer(doc)
    if other:
        return other
    listed: dict[str, str] = doc["files"]
    present = _folder_files(folder)
    for rel, full in present.items():
        if rel.endswith("/"):
            if rel in listed:
                continue
            if not any(name.startswith(rel) for name in listed):
                return f"it holds {rel}, which this tool did not write"
            continue
        if rel not in listed:
            return f"it holds {rel}, which this tool did not write"
        if full.is_symlink() or not full.is_file():
            return f"{rel} is no longer a regular file"
        if sha256_file(full) != listed[rel]:
            return f"{rel} was changed since this tool wrote it"
    for sub in present:
        if sub.endswith("/") and looks_like_run_folder(folder / sub.rstrip("/")):
            return f"it holds the training run folder {sub}"
    return None


# --------------------------------------------------------------------------- planning outputs


@dataclass(frozen=True)
class Output:
    """A checked output location.

    :ivar path: where the output will be written (the next free name for a taken default).
    :ivar kind: ``"file"`` or ``"folder"``.
    :ivar replace: an earlier output of this tool at ``path`` will be replaced (``force``).
    :ivar note: one line for the user when the location differs from the one asked for, or an
        earlier output is replaced; ``None`` otherwise.
    :ivar option: the flag naming it (``--out``), for messages.
    :ivar create_parents: the missing parent folders are made when writing (default locations).
    """

    path: Path
    kind: str
    replace: bool = False
    note: str | None = None
    option: str = "output"
    create_parents: bool = False

    @property
    def format(self) -> str:
        """The file's format, from its extension (``"png"``, ``"pdf"``, ``"csv"``...)."""
        return self.path.suffix.lower().lstrip(".")


def _what(option: str, path: Path) -> str:
    return f"{option} {path}"


def next_free(path: Path) -> Path:
    """``name-2.ext``, ``name-3.ext``, ... the first that does not exist (a link counts as taken)."""
    stem, suffix = (path.stem, path.suffix) if path.suffix and not path.is_dir() else (path.name, "")
    for k in range(2, 10_000):
        candidate = path.with_name(f"{stem}-{k}{suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise OutputError(f"{path}: no free name up to {stem}-9999{suffix}; clean up old outputs")


def _check_suffix(path: Path, option: str, suffixes: Sequence[str] | None) -> None:
    if suffixes is None:
        return
    have = path.suffix.lower().lstrip(".")
    allowed = [s.lower().lstrip(".") for s in suffixes]
    if have not in allowed:
        shown = f"'.{have}'" if have else "no extension"
        raise OutputError(f"{option} {path}: {shown} is not supported; use one of {', '.join('.' + s for s in allowed)}")


def plan_file(
    path: str | Path,
    *,
    option: str,
    explicit: bool = True,
    force: bool = False,
    suffixes: Sequence[str] | None = None,
    create_parents: bool = False,
) -> Output:
    """Check an output file before the work starts (see the module docstring for the rule).

    :param option: the flag that named it (``"--csv"``), for messages.
    :param explicit: the user named it; ``False`` for a default location (a taken default gets
        the next free name instead of an error).
    :param suffixes: allowed extensions (``("png", "pdf")``); ``None`` accepts any.
    :param create_parents: make missing parent folders when writing (default locations only).
    :raises OutputError: one line saying what is wrong and what is allowed.
    """
    path = Path(path)
    what = _what(option, path)
    check_name(path, what)
    if explicit and os.path.lexists(path):
        check_regular_target(path, what)  # a device, a folder, a link: say that first
    _check_suffix(path, option, suffixes)
    create_parents = create_parents or in_project_runs(path)
    check_folder_writable(path.parent, what, create=create_parents)
    if not os.path.lexists(path):
        return Output(path, "file", option=option, create_parents=create_parents)
    try:
        check_regular_target(path, what)
    except OutputError:
        free = next_free(path)
        return Output(free, "file", note=f"{path} exists; writing {free}", option=option, create_parents=create_parents)
    return _existing(path, "file", what, why_not_ours_file(path), option=option, explicit=explicit, force=force,
                     create_parents=create_parents)


def plan_folder(
    path: str | Path,
    *,
    option: str,
    explicit: bool = True,
    force: bool = False,
    create_parents: bool = False,
) -> Output:
    """Check an output folder before the work starts; like :func:`plan_file` for folders.

    ``force`` replaces a folder only if its manifest lists everything in it, unchanged; a run
    folder (or a folder holding one) is never replaced.
    """
    path = Path(path)
    what = _what(option, path)
    check_name(path, what)
    create_parents = create_parents or in_project_runs(path)
    check_folder_writable(path.parent, what, create=create_parents)
    if not os.path.lexists(path):
        return Output(path, "folder", option=option, create_parents=create_parents)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        if explicit:
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else ("a file" if stat.S_ISREG(st.st_mode) else _kind(st.st_mode))
            raise OutputError(f"{what} exists and is {kind}, not an output folder; choose another path")
        free = next_free(path)
        return Output(free, "folder", note=f"{path} exists; writing {free}", option=option, create_parents=create_parents)
    return _existing(path, "folder", what, why_not_ours_folder(path), option=option, explicit=explicit, force=force,
                     create_parents=create_parents)


def _existing(path: Path, kind: str, what: str, reason: str | None, *, option: str, explicit: bool, force: bool,
              create_parents: bool) -> Output:
    """The rule for an output ``path`` that exists: ``--force`` replaces it only when ``reason``
    (why it is not this tool's earlier output) is None; an explicit path is otherwise refused,
    a default one gets the next free name."""
    if force and reason is None:
        return Output(path, kind, replace=True, note=f"replacing {path} (written earlier by this tool; --force)", option=option,
                      create_parents=create_parents)
    if explicit:
        if force:
            noun = "an output" if kind == "file" else "an output folder"
            raise OutputError(f"{what} exists and --force only replaces {noun} this tool wrote: {reason}; choose another path")
        raise OutputError(f"{what} exists; choose another path, or add --force to replace an earlier output of this tool")
    free = next_free(path)
    return Output(free, kind, note=f"{path} exists; writing {free}", option=option, create_parents=create_parents)


def as_output(target: "Output | str | Path", option: str, suffixes: Sequence[str] | None = None) -> Output:
    """``target`` if already checked; a path is checked now as a new explicit output file."""
    if isinstance(target, Output):
        return target
    return plan_file(target, option=option, suffixes=suffixes)


def check_distinct(outputs: Iterable[Output]) -> None:
    """Two outputs of one command must not be the same path."""
    seen: dict[Path, str] = {}
    for out in outputs:
        key = out.path.absolute()
        if key in seen:
            raise OutputError(f"{out.option} and {seen[key]} name the same path {out.path}; give each its own")
        seen[key] = out.option


# --------------------------------------------------------------------------- writing outputs


def write_output_file(output: Output, write: Callable[[Path], Any]) -> Path:
    """Write an output file planned by :func:`plan_file`: ``write(tmp)`` then rename, then the sidecar.

    If the target appeared since it was planned (another process), or was changed, it is not
    replaced: :class:`OutputError`.
    """
    path = output.path
    if output.create_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, create_parents=False) as tmp:
        write(tmp)
        if os.path.lexists(path) and not (output.replace and why_not_ours_file(path) is None):
            raise OutputError(f"{_what(output.option, path)} appeared while this command ran; it was left as it is")
        digest = sha256_file(tmp)
    atomic_write_json(sidecar_path(path), _manifest({path.name: digest}, "file"))
    return path


def write_output_text(output: Output, text: str) -> Path:
    return write_output_file(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_output_json(output: Output, data: Any, **dump: Any) -> Path:
    dump.setdefault("indent", 2)
    return write_output_text(output, json.dumps(data, **dump) + "\n")


def _remove_listed(folder: Path, listed: Iterable[str]) -> None:
    """Remove the files a manifest lists, then the folders left empty; nothing else."""
    for rel in listed:
        full = folder / rel
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            if not rel.endswith("/") and (full.is_symlink() or full.is_file()):
                full.unlink()
    with contextlib.suppress(FileNotFoundError):
        (folder / MANIFEST).unlink()
    for root, dirs, _ in os.walk(folder, topdown=False):  # children before their parents
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(root) / name).rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _write_manifest(folder: Path) -> None:
    """Record everything in ``folder`` (files with their SHA-256) as this tool's output."""
    entries = _folder_files(folder)
    files = {rel: sha256_file(full) for rel, full in entries.items() if not rel.endswith("/") and full.is_file()}
    dirs = {rel: "" for rel in entries if rel.endswith("/")}
    atomic_write_json(folder / MANIFEST, _manifest({**dirs, **files}, "folder"))


@contextlib.contextmanager
def output_folder(output: Output, in_place: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``output.path``; on success it becomes the output folder.

    ``in_place``: yield the output folder itself, made now (for outputs that hold long work,
    such as trained runs, which an interruption must not throw away); it must be new. What
    is in it at the end is recorded in the manifest; after an error it stays as it is (removed
    if it is still empty).

    Files written into the yielded folder are recorded in the manifest. A replaced earlier
    output (``output.replace``) is moved aside and only the files its manifest lists are
    deleted; if something else appeared in it meanwhile, that part stays where it was moved
    (``.NAME.flywheel-tmp-...``) and a line on stderr says so. On error the temporary folder,
    which this call made, is removed and the target is untouched.
    """
    path = output.path
    parent = path.parent if str(path.parent) else Path(".")
    if output.create_parents:
        parent.mkdir(parents=True, exist_ok=True)
    if in_place:
        if output.replace:
            raise OutputError(f"{_what(output.option, path)}: an earlier output cannot be replaced by one written in place; choose a new path")
        try:
            os.mkdir(path, folder_mode())
        except FileExistsError:
            raise OutputError(f"{_what(output.option, path)} appeared while this command ran; it was left as it is") from None
        try:
            yield path
        except BaseException:
            with contextlib.suppress(OSError):  # made here and still empty: nothing to keep, and it would block the next try
                if not any(path.iterdir()):
                    path.rmdir()
            raise
        _write_manifest(path)
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name[:64]}{TEMP_MARK}", dir=parent))
    try:
        yield tmp
        for root, subdirs, names in os.walk(tmp):
            os.chmod(root, folder_mode())
            for name in names:
                os.chmod(Path(root) / name, file_mode())
        _write_manifest(tmp)
        if _FAULT is not None:
            _FAULT(path)
        if os.path.lexists(path):
            reason = why_not_ours_folder(path) if output.replace else "it appeared while this command ran"
            if reason is not None:
                raise OutputError(f"{_what(output.option, path)} was not replaced: {reason}")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name[:64]}{TEMP_MARK}old-", dir=parent))
            os.rename(path, old / path.name)
            os.rename(tmp, path)
            listed = (_read_manifest(old / path.name / MANIFEST) or {}).get("files", {})
            _remove_listed(old / path.name, listed)
            with contextlib.suppress(OSError):
                old.rmdir()
            if old.exists():
                print(f"note: files that appeared in the earlier {path} while this command ran were kept in {old}", file=sys.stderr)
        else:
            os.rename(tmp, path)
        _fsync_path(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def new_folder(path: str | Path, what: str | None = None) -> Iterator[Path]:
    """Make a folder in one step: fill the yielded temporary sibling, then it is renamed to ``path``.

    Until the rename nothing exists at ``path``; an error or a signal inside the block removes
    the temporary folder (this call made it), so a half-made folder never appears. If ``path``
    exists by the time of the rename, nothing is replaced: :class:`OutputError`.
    """
    path = Path(path)
    what = what or str(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name[:64]}{TEMP_MARK}", dir=parent))
    try:
        os.chmod(tmp, folder_mode())
        yield tmp
        if os.path.lexists(path):
            raise OutputError(f"{what} already exists (made by another process meanwhile); nothing was replaced")
        os.rename(tmp, path)
        _fsync_path(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def plot_format(path: str | Path) -> str:
    """The matplotlib format for a plot path, from its extension; :class:`OutputError` otherwise."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        _check_suffix(path, "plot", PLOT_FORMATS)
    return fmt
