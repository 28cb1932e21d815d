"""The generated train reference and the mask/position part of the spec reference."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nngraph import cli
from nngraph.docs import spec_reference
from nngraph.docs_train import TRAIN_DOCS_COMMAND, key_default, key_range, key_type, train_reference
from nngraph.attention.masks import MASKS
from nngraph.attention.positions import POSITIONS
from nngraph.train_keys import SCHEMA

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "train-reference.md"


def _part(text: str, heading: str, end: str = "\n## ") -> str:
    """The text under ``heading`` up to the next heading that starts with ``end``."""
    return text.split(heading, 1)[1].split(end, 1)[0]


def test_committed_train_reference_is_up_to_date():
    current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
    assert current == train_reference(), f"docs/train-reference.md is stale: run `{TRAIN_DOCS_COMMAND}`"


def test_cli_writes_and_checks_the_train_reference(tmp_path):
    out = tmp_path / "t.md"
    assert CliRunner().invoke(cli.app, ["docs", "--train", "-o", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf-8") == train_reference()
    assert CliRunner().invoke(cli.app, ["docs", "--train", "-o", str(out), "--check"]).exit_code == 0
    out.write_text("stale", encoding="utf-8")
    assert CliRunner().invoke(cli.app, ["docs", "--train", "-o", str(out), "--check"]).exit_code == 1


def test_every_key_of_every_section_has_a_row():
    text = train_reference()
    for name, f in SCHEMA.items():
        if f.kind == "section":
            section = _part(text, f"\n## {name}\n")
            assert f"| `{name}` | [section](#{name}) |" in text
            for key in f.section:
                assert f"\n| `{key}` |" in section, (name, key)
        else:
            assert f"\n| `{name}` | {key_type(f)} |" in text


def test_train_rows_show_type_default_range_and_doc():
    text = train_reference()
    optimizer = _part(text, "\n## optimizer\n")
    assert "Shorthand: `optimizer: sgd` is `optimizer: {type: sgd}`." in optimizer
    assert "| `lr` | float | `0.001` | [0, 100] | peak learning rate |" in optimizer
    assert "| `betas` | two floats | `[0.9, 0.999]` | each [0, 1] | adam/adamw betas |" in optimizer
    lora = SCHEMA["lora"]
    assert "`lora: false` keeps it off" in text and lora.optional_section
    log = SCHEMA["log"].section
    assert (key_type(log["plot"]), key_default(log["plot"])) == ("true, false or `auto`", "`auto`")
    assert key_range(SCHEMA["precision"]) == "`fp32`, `bf16`, `fp16`"
    assert key_default(SCHEMA["steps"]) == "—"


def test_spec_reference_documents_every_mask_and_position_with_its_conventions():
    text = spec_reference()
    part = _part(text, "\n## attention masks and positions\n", "\n## none-such")
    for name in MASKS:
        assert f"\n### mask `{name}`\n" in part
    for name in POSITIONS:
        assert f"\n### position `{name}`\n" in part
    rope = _part(part, "### position `rope`\n", "\n### ")
    assert "**rotate-half**" in rope and "only the first r = int(head_dim · fraction) dims" in rope
    assert "| `fraction` | float | `1.0` | [0, 1] | fraction of head_dim that is rotated (partial rotary) |" in rope
    window = _part(part, "### mask `sliding_window`\n", "\n### ")
    assert "query i sees the w keys i-w+1..i, itself included" in window
    assert "Written `mask: {type: sliding_window, window: ...}`." in window
    t5 = _part(part, "### position `t5_bias`\n", "\n### ")
    assert "every distance ≥ max_distance shares the last bucket" in t5
    assert "- [attention masks and positions](#attention-masks-and-positions)" in text
