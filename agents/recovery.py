"""Resuming a run folder after any interruption: which checkpoint, and one TensorBoard curve.

* :func:`find_checkpoints` lists every checkpoint in ``RUN/checkpoints`` (``model_<steps>.zip``
  with ``vecnormalize_<steps>.pkl``), newest first. ``latest.json`` is only a hint: a kill
  between the model's rename and ``latest.json``'s, a malformed ``latest.json``, or one naming
  a deleted file does not hide the checkpoints that are there.
* :func:`load_newest` tries them newest first with a loader the trainer gives, skips those that
  do not load (truncated, zero bytes, a zip that is not a model) and reports each skipped one in
  one line, so ``--resume`` continues from the newest checkpoint that works.
* :func:`truncate_events` rewrites the TensorBoard event files of the run without the events
  logged after the checkpoint's step, so the resumed training continues one curve instead of
  drawing a second one over the steps it repeats (what ``SummaryWriter(purge_step=)`` asks
  TensorBoard to do, made permanent in the files). A record cut short by a kill is dropped.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agents.io import atomic_path

MODEL_PATTERN = re.compile(r"^model_(\d+)\.zip$")
VECNORM_NAME = "vecnormalize_{steps}.pkl"
LATEST_NAME = "latest.json"


@dataclass(frozen=True)
class CheckpointFiles:
    """One checkpoint's files. ``wall_seconds`` comes from ``latest.json`` when it names this one."""

    timesteps: int
    model_path: Path
    vecnormalize_path: Path
    wall_seconds: float = 0.0


def read_latest(checkpoint_dir: str | Path) -> tuple[dict | None, str | None]:
    """``(latest.json as a dict, None)``, or ``(None, why it is unusable)``; never raises."""
    path = Path(checkpoint_dir) / LATEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{LATEST_NAME} is missing"
    except (OSError, UnicodeDecodeError, ValueError):
        return None, f"{LATEST_NAME} is not valid JSON"
    if not isinstance(doc, dict) or not isinstance(doc.get("timesteps"), int) or not isinstance(doc.get("model"), str):
        return None, f"{LATEST_NAME} does not name a checkpoint"
    return doc, None


def find_checkpoints(checkpoint_dir: str | Path) -> list[CheckpointFiles]:
    """Every checkpoint present (model and statistics both there), newest first."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    latest, _ = read_latest(folder)
    found = []
    for path in folder.iterdir():
        match = MODEL_PATTERN.match(path.name)
        if not match:
            continue
        steps = int(match.group(1))
        vec = folder / VECNORM_NAME.format(steps=steps)
        if not vec.is_file():
            continue
        wall = 0.0
        if latest and latest.get("model") == path.name:
            try:
                wall = float(latest.get("wall_seconds", 0.0))
            except (TypeError, ValueError):
                wall = 0.0
        found.append(CheckpointFiles(steps, path, vec, wall))
    return sorted(found, key=lambda c: -c.timesteps)


VECNORM_PATTERN = re.compile(r"^vecnormalize_(\d+)\.pkl$")


def checkpoint_traces(checkpoint_dir: str | Path) -> list[str]:
    """Names of the checkpoint files in the folder (models, statistics, ``latest.json``),
    whole checkpoints or not, sorted: a folder with none is one a run never checkpointed into."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name == LATEST_NAME or MODEL_PATTERN.match(p.name) or VECNORM_PATTERN.match(p.name))


def lost_checkpoints(checkpoint_dir: str | Path) -> list[str]:
    """The checkpoint files of a folder where a whole checkpoint once was but none is now (its
    model deleted, say), or ``[]``. A checkpoint is written statistics first, then model, then
    ``latest.json``: a lone statistics file is a first checkpoint cut short, not a lost one."""
    traces = checkpoint_traces(checkpoint_dir)
    if not traces or find_checkpoints(checkpoint_dir):
        return []
    steps = {int(m.group(1)) for name in traces for m in [MODEL_PATTERN.match(name) or VECNORM_PATTERN.match(name)] if m}
    if LATEST_NAME in traces or any(MODEL_PATTERN.match(name) for name in traces) or len(steps) > 1:
        return traces
    return []


def check_model_file(path: Path) -> str | None:
    """``None`` if ``path`` is a whole SB3 model archive; else what is wrong, in a few words."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return "is truncated or not a zip archive"
    if bad is not None:
        return f"is damaged ({bad} fails its checksum)"
    if "data" not in names or "policy.pth" not in names:
        return "is truncated or damaged (no data / policy.pth in the archive)"
    return None


@dataclass
class Recovered:
    """What :func:`load_newest` chose: the loaded objects, the checkpoint, and what it skipped.

    ``checkpoint`` and ``loaded`` are ``None`` when no checkpoint loads.
    """

    loaded: Any
    checkpoint: CheckpointFiles | None
    skipped: list[tuple[CheckpointFiles, str]]


def load_newest(checkpoints: list[CheckpointFiles], load: Callable[[CheckpointFiles], Any]) -> Recovered:
    """Load the newest checkpoint that loads, noting every newer one it skipped and why.

    :param load: ``load(checkpoint) -> anything``; any exception marks the checkpoint unusable.
    """
    skipped: list[tuple[CheckpointFiles, str]] = []
    for ckpt in checkpoints:
        problem = check_model_file(ckpt.model_path)
        if problem is None and ckpt.vecnormalize_path.stat().st_size == 0:
            problem = f"{ckpt.vecnormalize_path.name} is empty (0 bytes)"
        if problem is None:
            try:
                return Recovered(load(ckpt), ckpt, skipped)
            except Exception as exc:  # noqa: BLE001 - any failure to load means: try the previous one
                problem = f"does not load ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        else:
            problem = f"{ckpt.model_path.name} {problem}" if not problem.startswith(ckpt.vecnormalize_path.name) else problem
        skipped.append((ckpt, problem))
    return Recovered(None, None, skipped)


def describe_skipped(skipped: list[tuple[CheckpointFiles, str]]) -> list[str]:
    """One line per skipped checkpoint."""
    return [f"skipped checkpoint at step {c.timesteps}: {why}" for c, why in skipped]


# --------------------------------------------------------------------------- TensorBoard


def _event_files(tb_dir: Path) -> list[Path]:
    return sorted(p for p in tb_dir.glob("events.out.tfevents.*") if p.is_file())


def _read_records(path: Path) -> list[tuple[bytes, Any]]:
    """``(raw record, parsed Event)`` of one file, in order; a record cut short at the end is dropped."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2

    records = []
    for raw in RawEventFileLoader(str(path)).Load():
        try:
            records.append((raw, event_pb2.Event.FromString(raw)))
        except Exception:  # noqa: BLE001 - a damaged record ends what can be trusted
            break
    return records


def read_events(path: Path) -> list[Any]:
    """The events of one file, in order; a record cut short at the end is dropped."""
    return [event for _, event in _read_records(path)]


def truncate_events(tb_dir: str | Path, after_step: int) -> dict[str, int]:
    """Drop every event with ``step > after_step`` from the event files under ``tb_dir``.

    Files with nothing to drop are left untouched; the others are rewritten atomically. Files
    left without any scalar or text are kept (TensorBoard ignores them).

    :returns: ``{"dropped": events removed, "files": files rewritten}``.
    """
    from tensorboard.summary.writer.record_writer import RecordWriter

    tb_dir = Path(tb_dir)
    dropped = rewritten = 0
    if not tb_dir.is_dir():
        return {"dropped": 0, "files": 0}
    for path in _event_files(tb_dir):
        size = path.stat().st_size
        records = _read_records(path)
        keep = [raw for raw, event in records if event.step <= after_step]
        whole = sum(len(raw) + 16 for raw, _ in records)  # 16 bytes: a record's length and two CRCs
        if len(keep) == len(records) and whole == size:
            continue
        dropped += len(records) - len(keep)
        rewritten += 1
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                writer = RecordWriter(f)
                for raw in keep:
                    writer.write(raw)
                writer.flush()
    return {"dropped": dropped, "files": rewritten}


def scalar_steps(tb_dir: str | Path) -> dict[str, list[int]]:
    """``{tag: [steps in file order]}`` of every scalar under ``tb_dir`` (all event files)."""
    steps: dict[str, list[int]] = {}
    for path in _event_files(Path(tb_dir)):
        for event in read_events(path):
            if event.HasField("summary"):
                for value in event.summary.value:
                    steps.setdefault(value.tag, []).append(int(event.step))
    return steps


def has_tag(tb_dir: str | Path, tag: str) -> bool:
    """Whether any event file under ``tb_dir`` holds a summary with ``tag`` (e.g. the config text)."""
    for path in _event_files(Path(tb_dir)):
        for event in read_events(path):
            if event.HasField("summary") and any(v.tag == tag or v.tag.startswith(tag + "/") for v in event.summary.value):
                return True
    return False
