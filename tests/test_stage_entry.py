"""Every stage run the way DVC runs it: bad paths give one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def _stage_commands() -> dict[str, list[str]]:
    """Each stage's command from dvc.yaml with every path pointing into a folder that does not exist."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage["cmd"].split() for name, stage in stages.items() if name != "simulate"}


@pytest.mark.parametrize("stage", sorted(_stage_commands()))
def test_missing_inputs_give_one_line_and_exit_2(stage: str, tmp_path: Path) -> None:
    argv = _stage_commands()[stage]
    missing = tmp_path / "nowhere"
    args = [arg if arg.startswith("-") else str(missing / Path(arg).name) for arg in argv[3:]]
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", argv[2], *args, "--params", str(params)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "nowhere" in errors[0], result.stderr[-2000:]
