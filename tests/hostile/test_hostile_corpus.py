"""The hostile-input corpus: every case in ``cases/`` holds (see runner.py for what each promises).

One test per case file, so a failure names the case; the corpus is also counted, so a case file
that fails to load is a failure, not a silent skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hostile_runner import case_files, check, load_case, run_case


def test_the_corpus_has_cases_and_every_case_file_loads():
    files = case_files()
    print(f"hostile corpus: {len(files)} cases")
    assert len(files) >= 88, f"{len(files)} cases: a case file went missing"
    for path in files:
        case = load_case(path)
        assert case.about and case.argv, f"{path.name}: about and argv are required"


@pytest.mark.parametrize("path", case_files(), ids=lambda p: p.stem)
def test_case_holds(path: Path, tmp_path: Path):
    case = load_case(path)
    folder = tmp_path / "work"
    folder.mkdir()
    got = run_case(case, folder)
    broken = check(case, got)
    assert not broken, f"{case.about}\n  " + "\n  ".join(broken) + f"\n--- stderr ---\n{got.err[-3000:]}"
