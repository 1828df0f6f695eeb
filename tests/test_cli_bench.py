"""`controlsprint bench`: lists bench/, runs one benchmark in a subprocess, passes its exit code through."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, run_cli_process


def test_list_names_every_benchmark_with_its_summary(cli):
    code, out, err = cli("bench", "--list")
    assert code == 0, err
    lines = dict(line.split(None, 1) for line in out.splitlines())
    expected = {p.stem for p in (REPO / "bench").glob("*.py") if not p.stem.startswith("_")} - {"common"}
    assert set(lines) == expected
    assert lines["inference"].startswith("Generation speed: controlsprint's inference core")
    assert "common" not in lines and "_inference_systems" not in lines


def test_runs_the_benchmark_with_its_arguments_and_exit_code():
    ok = run_cli_process("bench", "inference", "--help")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("usage: inference.py") and "--batches" in ok.stdout
    bad = run_cli_process("bench", "synth", "--no-such-flag")
    assert bad.returncode == 2
    assert "synth.py: error: unrecognized arguments: --no-such-flag" in bad.stderr


def test_unknown_benchmark_is_a_one_line_error(cli):
    code, _, err = cli("bench", "nosuch")
    assert code == 2
    assert err.strip().count("\n") == 0 and "no benchmark named 'nosuch'" in err and "inference" in err


def test_missing_bench_folder_is_a_user_error(cli, monkeypatch, tmp_path):
    import controlsprint.cli.bench as bench

    # As if installed from a wheel: the package sits in site-packages with no bench/ beside it.
    monkeypatch.setattr(
        bench, "__file__", str(tmp_path / "site-packages" / "controlsprint" / "cli" / "bench.py")
    )
    code, _, err = cli("bench", "--list")
    assert code == 2
    assert "no benchmarks folder at" in err and str(Path("site-packages") / "bench") in err
