"""Shell completion for bash, zsh and fish, as the README tells users to set it up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.process import flowsync, flowsync_env

BIN = Path(sys.executable).parent
README = Path(__file__).resolve().parent.parent / "README.md"
SHELLS = ["bash", "zsh", "fish"]


def completion_env(**extra: str) -> dict[str, str]:
    return flowsync_env(None, None, None, **extra)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_completion_script_is_produced_for_each_shell(shell: str) -> None:
    """`_FLOWSYNC_COMPLETE={shell}_source flowsync` prints a script that registers `flowsync`."""
    result = flowsync(env=completion_env(_FLOWSYNC_COMPLETE=f"{shell}_source"))
    assert result.returncode == 0, result.stderr
    assert "_flowsync_completion" in result.stdout
    assert "_FLOWSYNC_COMPLETE" in result.stdout
    assert f"_FLOWSYNC_COMPLETE={shell}_source flowsync" in README.read_text(), "documented"


@pytest.mark.parametrize(
    ("shell", "cword", "expected"),
    [("bash", "1", "plain,sync"), ("zsh", "1", "plain\nsync\n"), ("fish", "sy", "plain,sync\t")],
)
def test_completing_sy_offers_sync_in_each_shell(shell: str, cword: str, expected: str) -> None:
    """What each shell's script asks flowsync when the user types `flowsync sy<TAB>`."""
    result = flowsync(
        env=completion_env(_FLOWSYNC_COMPLETE=f"{shell}_complete", COMP_WORDS="flowsync sy", COMP_CWORD=cword)
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert "status" not in result.stdout  # only what starts with `sy`


def test_bash_completes_commands_and_subcommands_end_to_end() -> None:
    """In a real bash, the sourced script fills COMPREPLY: `sy` gives sync, `db up` gives upgrade."""
    assert (BIN / "flowsync").exists(), "flowsync is installed in this environment"
    script = """
eval "$(_FLOWSYNC_COMPLETE=bash_source flowsync)"
complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _flowsync_completion flowsync; }
complete_words flowsync sy; echo "${COMPREPLY[*]}"
complete_words flowsync db up; echo "${COMPREPLY[*]}"
complete_words flowsync sync --log-f; echo "${COMPREPLY[*]}"
"""
    bash = shutil.which("bash")
    assert bash is not None
    env = completion_env(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(
        [bash, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["sync", "upgrade", "--log-format"]


@pytest.mark.parametrize(("shell", "check"), [("zsh", ["-n"]), ("fish", ["--no-execute"])])
def test_the_zsh_and_fish_scripts_are_valid_syntax(shell: str, check: list[str], tmp_path: Path) -> None:
    """The shell itself parses the script (where that shell is installed)."""
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed on this machine, so its script is not syntax-checked")
    script = tmp_path / f"flowsync.{shell}"
    script.write_text(flowsync(env=completion_env(_FLOWSYNC_COMPLETE=f"{shell}_source")).stdout)
    result = subprocess.run(
        [binary, *check, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
