"""The one output writer (agents.io): outputs never destroy anything a user had.

Every test states what exists before, runs the writer, and checks that what the user had is
byte for byte the same afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from agents import io
from agents.io import OutputError


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Everything under ``folder``: file contents, link targets, folders."""
    found: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            full = Path(root) / name
            rel = full.relative_to(folder).as_posix()
            if full.is_symlink():
                found[rel] = "link:" + os.readlink(full)
            elif full.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = full.read_bytes()
    return found


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- atomic layer


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_users_umask(tmp_path, mask, mode) -> None:
    with umask(mask):
        io.atomic_write_text(tmp_path / "a.txt", "x")
        out = io.write_output_text(io.plan_file(tmp_path / "b.csv", option="--csv"), "y")
        with io.output_folder(io.plan_folder(tmp_path / "eval", option="--out")) as tmp:
            (tmp / "eval.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "eval" / "eval.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "eval").stat().st_mode) == mode | 0o111 & ~mask


def test_a_device_is_never_replaced(tmp_path) -> None:
    before = os.stat("/dev/null")
    with pytest.raises(OutputError, match="is a device"):
        io.atomic_write_text("/dev/null", "x")
    with pytest.raises(OutputError, match="is a device"):
        io.plan_file("/dev/null", option="--csv")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_a_link_to_stdout_or_to_a_folder_is_refused_and_kept(tmp_path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "out.csv").symlink_to("/dev/stdout")
    (tmp_path / "d.png").symlink_to(tmp_path / "dir")
    before = snapshot(tmp_path)
    for name in ("out.csv", "d.png"):
        with pytest.raises(OutputError, match="symbolic link"):
            io.atomic_write_text(tmp_path / name, "x")
        with pytest.raises(OutputError, match="symbolic link"):
            io.plan_file(tmp_path / name, option="--csv", force=True)
    assert snapshot(tmp_path) == before


def test_a_folder_or_fifo_target_is_refused(tmp_path) -> None:
    (tmp_path / "x.json").mkdir()
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(OutputError, match="is a folder"):
        io.atomic_write_json(tmp_path / "x.json", {})
    with pytest.raises(OutputError, match="is a FIFO"):
        io.plan_file(tmp_path / "pipe.csv", option="--csv", force=True)
    assert (tmp_path / "x.json").is_dir() and stat.S_ISFIFO(os.lstat(tmp_path / "pipe.csv").st_mode)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "model.zip"
    target.write_bytes(b"old")

    def half_write(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError):
        io.atomic_save(target, half_write)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.zip"]


def test_disk_full_through_the_fault_hook(tmp_path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")
    with io.fault_hook(io.disk_full), pytest.raises(OSError) as info:
        io.atomic_write_json(target, {"big": "x" * 1000})
    assert info.value.errno == errno.ENOSPC
    assert "No space left" in io.describe_os_error(info.value, str(target))
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    io.atomic_write_json(target, {"ok": 1})  # the hook is gone after the block
    assert '"ok"' in target.read_text()


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str = "256k"):
    """A real full disk where the machine allows it (root, tmpfs); else the ENOSPC fault hook.

    Yields ``(folder, fill)``: ``fill()`` uses up the space left (a no-op under the hook, which
    makes every write fail by itself)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                                   capture_output=True).returncode == 0
    try:
        if mounted:
            def fill() -> None:
                with contextlib.suppress(OSError), open(mount / "filler", "wb", buffering=0) as f:
                    while True:
                        f.write(b"\0" * 4096)
            yield mount, fill, contextlib.nullcontext()
        else:
            yield mount, (lambda: None), io.fault_hook(io.disk_full)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_keeps_the_old_file(tmp_path) -> None:
    with small_disk(tmp_path) as (folder, fill, hook):
        target = folder / "checkpoint.bin"
        io.atomic_write_text(target, "previous checkpoint")
        fill()
        with hook, pytest.raises(OSError) as info:
            io.atomic_write_text(target, "y" * 200_000)
        assert info.value.errno == errno.ENOSPC
        assert target.read_text() == "previous checkpoint"
        assert io.stale_temporaries(folder) == []


# --------------------------------------------------------------------------- output files


def test_an_existing_explicit_file_is_refused_unless_ours_and_forced(tmp_path) -> None:
    mine = tmp_path / "mine.csv"
    mine.write_text("the user's own data")
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match="exists; choose another path, or add --force"):
        io.plan_file(mine, option="--csv")
    with pytest.raises(OutputError, match="not written by this tool"):
        io.plan_file(mine, option="--csv", force=True)
    assert snapshot(tmp_path) == before

    ours = io.write_output_text(io.plan_file(tmp_path / "ours.csv", option="--csv"), "a,b\n")
    plan = io.plan_file(ours, option="--csv", force=True)
    assert plan.replace and "replacing" in plan.note
    io.write_output_text(plan, "c,d\n")
    assert ours.read_text() == "c,d\n"
    ours.write_text("c,d\nedited by the user\n")
    with pytest.raises(OutputError, match="changed since"):
        io.plan_file(ours, option="--csv", force=True)
    assert mine.read_text() == "the user's own data"


def test_a_taken_default_gets_the_next_free_name(tmp_path) -> None:
    default = tmp_path / "benchmark.json"
    default.write_text("earlier")
    (tmp_path / "benchmark-2.json").write_text("earlier too")
    plan = io.plan_file(default, option="--json", explicit=False)
    assert plan.path == tmp_path / "benchmark-3.json" and plan.note == f"{default} exists; writing {plan.path}"
    io.write_output_json(plan, {"x": 1})
    assert default.read_text() == "earlier" and (tmp_path / "benchmark-2.json").read_text() == "earlier too"


def test_file_checks_happen_before_any_work(tmp_path) -> None:
    with pytest.raises(OutputError, match="folder .* does not exist"):
        io.plan_file(tmp_path / "missing" / "a.csv", option="--csv")
    with pytest.raises(OutputError, match=r"'\.txt' is not supported; use one of \.png, \.pdf"):
        io.plan_file(tmp_path / "plot.txt", option="--plot", suffixes=io.PLOT_FORMATS)
    with pytest.raises(OutputError, match="at most 255"):
        io.plan_file(tmp_path / ("r" * 300 + ".csv"), option="--csv")
    assert io.plan_file(tmp_path / "plot.PDF", option="--plot", suffixes=io.PLOT_FORMATS).format == "pdf"
    assert io.plot_format("x.svg") == "svg"
    a, b = io.plan_file(tmp_path / "x.csv", option="--csv"), io.plan_file(tmp_path / "x.csv", option="--plot")
    with pytest.raises(OutputError, match="name the same path"):
        io.check_distinct([a, b])
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_only_what_the_same_command_wrote(tmp_path, monkeypatch) -> None:
    """`sensitivity.py --out RUN/eval --force` must not replace an evaluation, nor `benchmark.py
    --json docs/backtest.json --force` the back-test: the manifest names the command."""
    monkeypatch.setattr(io, "_writer", None)
    io.set_writer("evaluate")
    folder = tmp_path / "eval"
    with io.output_folder(io.plan_folder(folder, option="--out")) as staging:
        (staging / "eval.json").write_text("{}")
    report = io.write_output_json(io.plan_file(tmp_path / "bt.json", option="--json"), {"a": 1})
    io.set_writer("sensitivity")
    with pytest.raises(OutputError, match="--force only replaces an output folder this tool wrote: it was written by evaluate, not sensitivity"):
        io.plan_folder(folder, option="--out", force=True)
    with pytest.raises(OutputError, match="it was written by evaluate, not sensitivity"):
        io.plan_file(report, option="--json", force=True)
    assert (folder / "eval.json").read_text() == "{}"
    io.set_writer("evaluate")
    assert io.plan_folder(folder, option="--out", force=True).replace
    # a manifest from before the writer key: its command line names the program
    sidecar = io.sidecar_path(report)
    doc = json.loads(sidecar.read_text())
    for command, allowed in (("backtest.py --json x.json --force", "backtest"), ("flywheel plot-run RUN --out x.png", "plot_run")):
        doc.pop("writer", None)
        doc["command"] = command
        sidecar.write_text(json.dumps(doc))
        io.set_writer(allowed)
        assert io.plan_file(report, option="--json", force=True).replace
        io.set_writer("benchmark")
        with pytest.raises(OutputError, match=f"it was written by {allowed}, not benchmark"):
            io.plan_file(report, option="--json", force=True)


def test_an_in_place_folder_left_empty_by_an_error_is_removed_one_with_work_is_kept(tmp_path) -> None:
    """`frontier.py --train --out X` makes X first (trained runs must survive an interruption); a
    failure before anything is written must not leave an empty X that refuses the next try."""
    for work in (False, True):
        out = tmp_path / f"out-{work}"
        with pytest.raises(KeyboardInterrupt):
            with io.output_folder(io.plan_folder(out, option="--out"), in_place=True) as folder:
                if work:
                    (folder / "ppo").mkdir()
                raise KeyboardInterrupt
        assert out.exists() == work
    assert io.plan_folder(tmp_path / "out-False", option="--out").path == tmp_path / "out-False"  # free again


def test_the_projects_runs_folder_is_made_when_an_output_names_it(tmp_path, monkeypatch) -> None:
    """A fresh clone has no runs/, and the README's commands write there (`--json runs/benchmark.json`,
    `--out runs/frontier_readme_v2`); any other missing folder is still refused."""
    monkeypatch.setattr(io, "RUNS_DIR", tmp_path / "runs")
    out = io.plan_file(tmp_path / "runs" / "benchmark.json", option="--json")
    folder = io.plan_folder(tmp_path / "runs" / "frontier", option="--out")
    assert not (tmp_path / "runs").exists()  # checked, nothing made before the work
    io.write_output_json(out, {"a": 1})
    assert (tmp_path / "runs" / "benchmark.json").is_file()
    with io.output_folder(folder) as staging:
        (staging / "x.csv").write_text("1\n")
    assert (tmp_path / "runs" / "frontier" / "x.csv").is_file()
    for deeper in (tmp_path / "runs" / "missing" / "a.json", tmp_path / "elsewhere" / "a.json"):
        with pytest.raises(OutputError, match="does not exist; create it first"):
            io.plan_file(deeper, option="--json")


def test_an_unwritable_folder_is_refused_before_work(tmp_path) -> None:
    # /proc takes no new files, whoever asks (root ignores a folder's mode bits)
    with pytest.raises(OutputError, match="cannot write in /proc"):
        io.plan_file("/proc/a.csv", option="--csv")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if os.geteuid() != 0:
        with pytest.raises(OutputError, match="cannot write in"):
            io.plan_folder(ro / "eval", option="--out")


# --------------------------------------------------------------------------- output folders


def make_run_folder(path: Path) -> None:
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.yaml").write_text("algo: ppo\n")
    (path / "model.zip").write_bytes(b"PK trained for hours")


def test_a_run_folder_is_never_an_output_folder(tmp_path) -> None:
    run = tmp_path / "run"
    make_run_folder(run)
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match="exists; choose another path"):
        io.plan_folder(run, option="--out")
    with pytest.raises(OutputError, match="training run folder"):
        io.plan_folder(run, option="--out", force=True)
    with pytest.raises(OutputError, match="training run folder|not written by this tool"):
        io.plan_folder(tmp_path, option="--out", force=True)  # `--out runs`
    assert snapshot(tmp_path) == before


def test_an_output_folder_is_replaced_only_when_it_holds_nothing_else(tmp_path) -> None:
    out = tmp_path / "eval"
    with io.output_folder(io.plan_folder(out, option="--out")) as tmp:
        (tmp / "eval.json").write_text("{}")
        (tmp / "plots").mkdir()
        (tmp / "plots" / "a.png").write_bytes(b"png")
    assert (out / io.MANIFEST).is_file() and not io.stale_temporaries(tmp_path)

    (out / "notes.txt").write_text("my notes")
    with pytest.raises(OutputError, match="holds notes.txt, which this tool did not write"):
        io.plan_folder(out, option="--out", force=True)
    (out / "notes.txt").unlink()
    (out / "eval.json").write_text('{"edited": true}')
    with pytest.raises(OutputError, match="eval.json was changed"):
        io.plan_folder(out, option="--out", force=True)
    (out / "eval.json").write_text("{}")

    plan = io.plan_folder(out, option="--out", force=True)
    with io.output_folder(plan) as tmp:
        (tmp / "eval.json").write_text('{"new": 1}')
    assert (out / "eval.json").read_text() == '{"new": 1}' and not (out / "plots").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_a_taken_default_folder_gets_the_next_free_name(tmp_path) -> None:
    run = tmp_path / "run"
    make_run_folder(run)
    (run / "eval").mkdir()
    (run / "eval" / "mine.md").write_text("kept")
    plan = io.plan_folder(run / "eval", option="--out", explicit=False)
    assert plan.path == run / "eval-2" and "eval-2" in plan.note
    with io.output_folder(plan) as tmp:
        (tmp / "eval.json").write_text("{}")
    assert (run / "eval" / "mine.md").read_text() == "kept" and (run / "model.zip").read_bytes() == b"PK trained for hours"


def test_an_error_while_writing_a_folder_leaves_the_old_one(tmp_path) -> None:
    out = tmp_path / "eval"
    with io.output_folder(io.plan_folder(out, option="--out")) as tmp:
        (tmp / "eval.json").write_text("old")
    before = snapshot(tmp_path)
    plan = io.plan_folder(out, option="--out", force=True)
    with pytest.raises(RuntimeError), io.output_folder(plan) as tmp:
        (tmp / "eval.json").write_text("half")
        raise RuntimeError("the evaluation failed")
    assert snapshot(tmp_path) == before
    with io.fault_hook(io.disk_full), pytest.raises(OSError), io.output_folder(plan) as tmp:
        (tmp / "eval.json").write_text("new")
    assert snapshot(tmp_path) == before


def test_a_folder_that_appears_meanwhile_is_not_replaced(tmp_path) -> None:
    out = tmp_path / "eval"
    plan = io.plan_folder(out, option="--out")
    with pytest.raises(OutputError, match="appeared while this command ran"):
        with io.output_folder(plan) as tmp:
            (tmp / "eval.json").write_text("{}")
            out.mkdir()
            (out / "theirs.txt").write_text("another process")
    assert (out / "theirs.txt").read_text() == "another process" and sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_a_new_folder_appears_whole_or_not_at_all(tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt), io.new_folder(tmp_path / "run") as tmp:
        (tmp / "config.yaml").write_text("algo: ppo\n")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with io.new_folder(tmp_path / "run") as tmp:
        (tmp / "config.yaml").write_text("algo: ppo\n")
    assert (tmp_path / "run" / "config.yaml").is_file()
    with pytest.raises(OutputError, match="already exists"), io.new_folder(tmp_path / "run") as tmp:
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# --------------------------------------------------------------------------- the commands


def run_all(commands: dict[str, list[str]], cwd: Path) -> dict[str, subprocess.CompletedProcess]:
    """Run every command at once (each a Python script of the repo); wait for all."""
    import sys

    from conftest import REPO_ROOT, script_env

    procs = {name: subprocess.Popen([sys.executable, str(REPO_ROOT / argv[0]), *argv[1:]], cwd=cwd, env=script_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, argv in commands.items()}
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


@pytest.mark.slow
def test_commands_refuse_outputs_that_would_destroy_something(tmp_path) -> None:
    # one case or two per command, run at once: the rules themselves are tested on agents.io above
    run = tmp_path / "run"
    make_run_folder(run)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's notes")
    (tmp_path / "stdout.csv").symlink_to("/dev/stdout")
    (tmp_path / "table.csv").write_text("the user's table")
    (tmp_path / "a_file").write_text("not a folder")
    before = snapshot(tmp_path)
    null_before = os.stat("/dev/null")
    cases = {
        "csv to a device": (["scripts/simulate.py", "--csv", "/dev/null"], "/dev/null is a device"),
        "csv to a link to stdout": (["scripts/simulate.py", "--csv", "stdout.csv"], "is a symbolic link (to /dev/stdout)"),
        "benchmark json over a folder": (["scripts/benchmark.py", "--json", "mine"], "mine is a folder"),
        "eval into the run": (["scripts/evaluate.py", "--scenario", "global", "--out", "run"], "--out run exists"),
        "eval forced into the run": (["scripts/evaluate.py", "--scenario", "global", "--out", "run", "--force"], "training run folder"),
        "frontier soft budget": (["scripts/frontier.py", "--set", "budget.mode=soft", "--out", "new"], "hard mode"),
        "constraint benchmark into a file": (["scripts/constraint_benchmark.py", "--out", "a_file"], "not a folder"),
        "train into a 300-character name": (["scripts/train.py", "--run-dir", "r" * 300], "at most 255"),
    }
    import sys

    from conftest import REPO_ROOT, run_main, script_env

    # the train case as a real process, the others through their script's main in this process
    # meanwhile (the same status and line, without an interpreter start-up each)
    real = "train into a 300-character name"
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / cases[real][0][0]), *cases[real][0][1:]], cwd=tmp_path, env=script_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {name: run_main(REPO_ROOT / argv[0], argv[1:], cwd=tmp_path) for name, (argv, _) in cases.items() if name != real}
    out, err = proc.communicate(timeout=300)
    results[real] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    for name, (argv, expected) in cases.items():
        proc = results[name]
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (name, proc.stderr[-1500:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (name, proc.stderr)
    assert snapshot(tmp_path) == before, "a refused command changed a file"
    assert os.stat("/dev/null").st_rdev == null_before.st_rdev


@pytest.mark.slow
def test_simulate_writes_the_format_its_extension_names_and_force_replaces_only_its_own(tmp_path) -> None:
    from conftest import REPO_ROOT, run_main

    # through simulate's main in this process, but the forced replacement as a real process
    first = run_main(REPO_ROOT / "scripts/simulate.py", ["--plot", "run_rate.pdf", "--csv", "rows.csv"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "run_rate.pdf").read_bytes()[:5] == b"%PDF-"
    again = {"again": run_main(REPO_ROOT / "scripts/simulate.py", ["--csv", "rows.csv"], cwd=tmp_path),
             **run_all({"forced": ["scripts/simulate.py", "--csv", "rows.csv", "--force", "--seed", "3"]}, tmp_path)}
    assert again["again"].returncode == 2 and "--force" in again["again"].stderr
    assert again["forced"].returncode == 0, again["forced"].stderr
    assert stat.S_IMODE((tmp_path / "rows.csv").stat().st_mode) == 0o666 & ~io.current_umask()


def test_a_constraint_benchmark_run_trained_otherwise_is_not_reused(tmp_path) -> None:
    import yaml

    from agents import constraint_benchmark as cb
    from agents import sweep

    started = cb.benchmark_spec(["ppo_hard"], [0], 256)  # a benchmark folder begun with 256 steps per run
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / sweep.SWEEP_FILE).write_text(yaml.safe_dump(sweep.spec_document(started)))
    before = snapshot(tmp_path)
    with pytest.raises(cb.BenchmarkError, match="started with set.total_timesteps=256, not 512 asked now; rerun with its --variants, --seeds and --timesteps") as caught:
        cb.run_benchmark(tmp_path, variants=["ppo_hard"], seeds=[0], timesteps=512, log=lambda m: None)
    assert "--resume" not in str(caught.value)  # constraint_benchmark.py has no such flag
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("script, argv, expected", [
    ("evaluate", ["--scenario", "global", "--policies", ","], "--policies names no policy"),
    ("evaluate", ["--scenario", "global", "--episodes", "200000000"], "--episodes must be in [1, 10000]"),
    ("benchmark", ["--seconds", "inf"], "--seconds must be in (0, 600]"),
    ("benchmark", ["--seconds", "nan"], "--seconds must be in (0, 600]"),
    ("frontier", ["--set", "budget.mode=soft"], "hard mode"),
    ("frontier", ["--set", "budget.total=3"], "--budgets gives each point's total budget"),
])
def test_sizes_are_bounded_and_empty_choices_refused(script, argv, expected, tmp_path, capsys, monkeypatch) -> None:
    import importlib.util

    from conftest import REPO_ROOT

    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location(f"{script}_script", REPO_ROOT / "scripts" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        code = module.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert list(tmp_path.iterdir()) == []
