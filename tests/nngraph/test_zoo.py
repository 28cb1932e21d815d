"""The shipped zoo: every spec in specs/ (and specs/seeds/) is listed once, and `nngraph zoo copy` writes its bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nngraph import cli
from nngraph.zoo import find_spec, zoo_specs

ROOT = Path(__file__).resolve().parents[2]
ON_DISK = sorted(ROOT.glob("specs/*.yaml")) + sorted(ROOT.glob("specs/seeds/*.yaml"))


def test_the_zoo_lists_every_spec_of_the_repository_once_with_its_system():
    specs = zoo_specs()
    assert [s.name for s in specs] == [p.stem for p in ON_DISK]
    assert len({s.name for s in specs}) == len(specs)
    gpt = find_spec("gpt_char")
    assert gpt.system.startswith("Character-level GPT")
    assert gpt.text == (ROOT / "specs" / "gpt_char.yaml").read_text()


def test_zoo_list_prints_name_and_system():
    res = CliRunner().invoke(cli.app, ["zoo", "list"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert len(lines) == len(ON_DISK)
    assert any(line.split()[0] == "gan_2d" and "GAN" in line for line in lines)


def test_zoo_copy_writes_the_spec_bytes_into_a_folder(tmp_path: Path):
    res = CliRunner().invoke(cli.app, ["zoo", "copy", "gan_2d", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "gan_2d.yaml").read_bytes() == (ROOT / "specs" / "seeds" / "gan_2d.yaml").read_bytes()


def test_zoo_copy_never_replaces_a_file_without_force(tmp_path: Path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("my own work\n")
    res = CliRunner().invoke(cli.app, ["zoo", "copy", "mlp", str(mine)])
    assert res.exit_code == 1
    assert "exists" in res.output and "--force" in res.output
    assert mine.read_text() == "my own work\n"
    res = CliRunner().invoke(cli.app, ["zoo", "copy", "mlp", str(mine), "--force"])
    assert res.exit_code == 0
    assert mine.read_bytes() == (ROOT / "specs" / "mlp.yaml").read_bytes()


@pytest.mark.parametrize("name", ["gpt_chr", "nope"])
def test_zoo_copy_of_an_unknown_name_fails_and_suggests(name: str, tmp_path: Path):
    res = CliRunner().invoke(cli.app, ["zoo", "copy", name, str(tmp_path)])
    assert res.exit_code == 1
    assert f"no spec '{name}'" in res.output
    if name == "gpt_chr":
        assert "did you mean gpt_char" in res.output
    assert list(tmp_path.iterdir()) == []
