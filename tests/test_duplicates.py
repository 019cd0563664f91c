"""No twin code in hh/: pylint's duplicate-code check (R0801, six or more similar lines) finds nothing.

A twin is a change that has to be made twice; when this fails, make the shared lines one function
(pylint names both places). Comments, docstrings, imports and signatures are ignored, as pylint does by
default.
"""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow   # pylint over the whole package: the fast suite's budget goes to the numerics
def test_no_duplicate_code_in_hh():
    result = subprocess.run(
        [sys.executable, "-m", "pylint", "--disable=all", "--enable=duplicate-code",
         "--min-similarity-lines=6", "--score=n", "hh"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pylint duplicate-code found twins in hh/:\n{result.stdout}{result.stderr}"
