"""nngraph.outputs and the atomic writer: an output is never an input (by any name) and never replaces
anything but a regular file; a path below a file is refused by name."""

from __future__ import annotations

import os

import pytest

from nngraph.io import write_text_atomic
from nngraph.outputs import OutputError, check_output, check_target, same_file


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "spec.yaml").write_text("spec")
    os.symlink("spec.yaml", tmp_path / "link.yaml")
    os.link(tmp_path / "spec.yaml", tmp_path / "hard.yaml")
    (tmp_path / "afile").write_text("a file")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    return tmp_path


def refusal(call, *args) -> str:
    with pytest.raises(OutputError) as info:
        call(*args)
    (diag,) = info.value.diagnostics
    return f"{diag.pos}: {diag.message} | {diag.hint}"


def test_same_file_sees_the_path_a_symlink_and_a_hard_link(folder):
    spec = folder / "spec.yaml"
    assert same_file(spec, folder / "link.yaml") and same_file(spec, folder / "hard.yaml")
    assert same_file(folder / "new", folder / "." / "new")  # missing: the resolved paths
    assert not same_file(spec, folder / "afile") and not same_file(spec, folder / "new")


@pytest.mark.parametrize("name", ["spec.yaml", "link.yaml", "hard.yaml"])
def test_an_output_that_is_the_input_is_refused_naming_both(folder, name):
    out, spec = folder / name, folder / "spec.yaml"
    assert refusal(check_output, out, [("the spec", spec)], "--emit-python") == (
        f"{out}: --emit-python '{out}' is the spec '{spec}': writing it would destroy that input | "
        "give --emit-python another path")
    assert (folder / "spec.yaml").read_text() == "spec"


def test_the_writer_refuses_a_link_a_fifo_a_folder_and_a_path_below_a_file(folder):
    for name, what in (("link.yaml", "is a symbolic link: nngraph does not replace links (it would become a file)"),
                       ("fifo", "is a FIFO (named pipe): nngraph only replaces regular files"),
                       ("dir", "is a folder: nngraph only replaces regular files")):
        assert f"'{folder / name}' {what}" in refusal(write_text_atomic, folder / name, "x")
    assert refusal(write_text_atomic, folder / "afile" / "sub" / "x", "x") == (
        f"{folder}/afile/sub/x: cannot create '{folder}/afile/sub/x': '{folder}/afile' is a file, not a folder | "
        f"write into a folder, or move '{folder}/afile' out of the way")
    assert os.path.islink(folder / "link.yaml") and (folder / "spec.yaml").read_text() == "spec"
    assert sorted(os.listdir(folder)) == ["afile", "dir", "fifo", "hard.yaml", "link.yaml", "spec.yaml"]


def test_a_character_device_is_refused(folder):
    assert "'/dev/null' is a character device: nngraph only replaces regular files" in refusal(check_target, "/dev/null")


def test_a_regular_file_or_a_new_path_is_written(folder):
    check_output(folder / "out.txt", [("the spec", folder / "spec.yaml")])
    write_text_atomic(folder / "afile", "new")
    write_text_atomic(folder / "new" / "deeper" / "x", "made")
    assert (folder / "afile").read_text() == "new" and (folder / "new" / "deeper" / "x").read_text() == "made"


@pytest.mark.parametrize(("name", "folder"), [("../../..", ".._.._.."), ("/etc", "_etc"), ("..", "_.."), ("", "_"),
                                              ("a\\b", "a_b"), ("gpt-tiny.v2", "gpt-tiny.v2")])
def test_a_name_becomes_one_folder_name_never_a_path(name, folder):
    from nngraph.outputs import folder_name

    assert folder_name(name) == folder


def test_the_inputs_of_a_spec_are_the_spec_and_every_library_it_imports_through_any_chain(tmp_path):
    from nngraph.outputs import spec_inputs

    (tmp_path / "lib" / "deep").mkdir(parents=True)
    block = "  b{n}: {{inputs: [x], nodes: [{{name: r, op: relu, in: x}}], outputs: [r]}}\n"
    (tmp_path / "lib" / "deep" / "c.yaml").write_text("nngraph: 1\nname: c\nblocks:\n" + block.format(n=3))
    (tmp_path / "lib" / "b.yaml").write_text("nngraph: 1\nname: b\nimports: [deep/c.yaml]\nblocks:\n" + block.format(n=2))
    (tmp_path / "spec.yaml").write_text("nngraph: 1\nname: s\nimports: [lib/b.yaml, {path: lib/deep/c.yaml, as: c}, "
                                        "missing.yaml]\n")
    assert spec_inputs(tmp_path / "spec.yaml") == [
        ("the spec", tmp_path / "spec.yaml"),
        ("a block library the spec imports", (tmp_path / "lib" / "b.yaml").resolve()),
        ("a block library the spec imports", (tmp_path / "lib" / "deep" / "c.yaml").resolve())]
    message = refusal(check_output, tmp_path / "lib" / "deep" / "c.yaml", spec_inputs(tmp_path / "spec.yaml"))
    assert message.endswith(f"is a block library the spec imports '{(tmp_path / 'lib/deep/c.yaml').resolve()}': "
                            "writing it would destroy that input | give -o another path")


def test_a_file_written_beside_the_output_is_checked_like_the_output(folder):
    from nngraph.outputs import check_beside

    name = "m" * 250  # m...m.data is 255 bytes: the most one name may have here
    check_beside(folder / name, folder / f"{name}.data", [], "--external-data")
    long = name + "xx"
    message = refusal(check_beside, folder / long, folder / f"{long}.data", [], "--external-data")
    assert message == (f"{folder / long}: -o '{folder / long}': --external-data also writes '{long}.data' beside it, "
                       f"a name of 257 bytes, more than the limit of 255 for one file name in '{folder}' | "
                       "give -o a name of at most 250 bytes")
    message = refusal(check_beside, folder / "spec", folder / "link.yaml", [("the spec", folder / "spec.yaml")], "--x")
    assert message == (f"{folder / 'spec'}: -o '{folder / 'spec'}': --x also writes '{folder / 'link.yaml'}' beside it, "
                       f"which is the spec '{folder / 'spec.yaml'}': writing it would destroy that input | "
                       "give -o another path")
    assert "is a FIFO (named pipe)" in refusal(check_beside, folder / "x", folder / "fifo", [], "--x")


def test_a_name_longer_than_the_filesystem_holds_is_refused_before_any_work(folder):
    long = folder / ("n" * 256)
    assert refusal(check_output, long, []) == (f"{long}: -o '{long}': the name is 256 bytes, more than the limit of "
                                               f"255 for one file name in '{folder}' | give a shorter name")
