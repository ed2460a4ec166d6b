"""README's "Running a federation across machines" block is the script a test runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "walkthrough" / "across-machines.sh"


def test_readme_walkthrough_block_is_the_script() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running a federation across machines", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)

    assert block is not None
    assert block[1] == SCRIPT.read_text()


def test_walkthrough_script_parses_as_bash() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed here")
    checked = subprocess.run([bash, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
