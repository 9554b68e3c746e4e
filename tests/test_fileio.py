"""Atomic folder writes: never delete what the new output does not write, and say exactly what was written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bertner import fileio
from bertner.errors import BertnerError, OutputExistsError
from bertner.fileio import atomic_dir, atomic_path


def files_under(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temp_left(target: Path) -> bool:
    return not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


def test_existing_subfolders_and_other_files_are_kept(tmp_path):
    target = tmp_path / "out"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "mine.txt").write_text("keep me")
    (target / "sub" / "x.ann").write_text("old")
    (target / "top.txt").write_text("keep me too")
    with atomic_dir(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.ann").write_text("new")
        (tmp / "y.ann").write_text("new")
    assert files_under(target) == {"sub/mine.txt": "keep me", "sub/x.ann": "new", "top.txt": "keep me too", "y.ann": "new"}
    assert no_temp_left(target)


def test_a_path_component_that_is_a_file_stops_before_any_move(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.ann").write_text("old")
    (target / "sub").write_text("a file where a folder must go")
    with pytest.raises(OutputExistsError, match=r"out/sub is a file.*nothing was written"):
        with atomic_dir(target) as tmp:
            (tmp / "a.ann").write_text("new")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "b.ann").write_text("new")
    assert files_under(target) == {"a.ann": "old", "sub": "a file where a folder must go"}
    assert no_temp_left(target)


def test_a_folder_where_a_file_must_go_stops_before_any_move(tmp_path):
    target = tmp_path / "out"
    (target / "b.ann").mkdir(parents=True)
    (target / "b.ann" / "mine.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match=r"out/b.ann is a folder.*nothing was written"):
        with atomic_dir(target) as tmp:
            (tmp / "a.ann").write_text("new")
            (tmp / "b.ann").write_text("new")
    assert files_under(target) == {"b.ann/mine.txt": "keep me"}


def test_a_new_folder_appears_whole_in_one_rename(tmp_path, monkeypatch):
    target = tmp_path / "out"
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(fileio.os, "replace", lambda a, b: (renames.append(Path(b).name), real_replace(a, b)))
    with atomic_dir(target) as tmp:
        for name in ("a.txt", "b.txt"):
            (tmp / name).write_text(name)
    assert renames == ["out"]
    assert files_under(target) == {"a.txt": "a.txt", "b.txt": "b.txt"}
    assert no_temp_left(target)


def test_a_move_that_fails_midway_says_exactly_what_was_written(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()  # an existing folder is filled file by file
    real_replace = os.replace

    def full_disk_at_c(source, destination):
        if Path(destination).name == "c.txt":
            raise OSError(28, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(fileio.os, "replace", full_disk_at_c)
    with pytest.raises(BertnerError) as caught:
        with atomic_dir(target) as tmp:
            for name in ("d.txt", "a.txt", "c.txt", "b.txt"):
                (tmp / name).write_text(name)
    message = str(caught.value)
    assert "No space left on device" in message
    assert "the first 2 of 4 files in name order (a.txt to b.txt) were written" in message
    assert "nothing was written" not in message
    assert files_under(target) == {"a.txt": "a.txt", "b.txt": "b.txt"}
    assert no_temp_left(target)


def test_a_target_the_file_system_refuses_is_one_line_of_ours(tmp_path):
    from bertner.errors import OutputError

    (tmp_path / "a-file").write_text("x")
    for make in (atomic_path, atomic_dir):
        with pytest.raises(OutputError, match=r"cannot write .*a-file/out"):
            with make(tmp_path / "a-file" / "out"):
                pass
    assert (tmp_path / "a-file").read_text() == "x"
