"""``strongroom completion bash|zsh``: the scripts work in the real shells, over the whole
command tree (main.py otherwise builds only the command on the command line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "strongroom"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m strongroom.cli.main "$@"\n')
    exe.chmod(0o755)
    return folder


def bash_complete(bin_dir: Path, line: str) -> list[str]:
    words = line.split(" ")
    script = (
        "source <(strongroom completion bash)\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_strongroom_completion strongroom\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, check=True, timeout=60
    )
    return [w for w in done.stdout.splitlines() if w]


def test_bash_completes_commands_subcommands_and_options(bin_dir: Path) -> None:
    assert "backup" in bash_complete(bin_dir, "strongroom ba")
    assert bash_complete(bin_dir, "strongroom backup st") == ["stdin"]
    assert bash_complete(bin_dir, "strongroom restore files --ta") == ["--target"]
    assert {"--password-file", "--password-command"} <= set(
        bash_complete(bin_dir, "strongroom points --pass")
    )
    assert "copy" in bash_complete(bin_dir, "strongroom co")


def test_zsh_script_loads(bin_dir: Path) -> None:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = (
        "autoload -Uz compinit && compinit -u && source <(strongroom completion zsh) && "
        "whence -w _strongroom_completion"
    )
    done = subprocess.run(
        ["zsh", "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert "function" in done.stdout, done.stderr


def test_zsh_protocol_answers(bin_dir: Path) -> None:
    env = {
        **os.environ,
        "_TYPER_COMPLETE_ARGS": "strongroom backup f",
        "_STRONGROOM_COMPLETE": "complete_zsh",
    }
    done = subprocess.run(
        [str(bin_dir / "strongroom")], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0 and '"files"' in done.stdout


def test_an_unknown_shell_is_a_usage_error(bin_dir: Path) -> None:
    done = subprocess.run(
        [str(bin_dir / "strongroom"), "completion", "tcsh"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "bash or zsh" in done.stderr
