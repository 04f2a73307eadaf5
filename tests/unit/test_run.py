"""What `kiln run` shows a person: one line per task, openable artifact paths, no escapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from kiln._components.run import _TaskLines, openable, run_pipeline, show
from kiln._report import Reporter, strip_ansi

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 8


def test_strip_ansi_removes_kfps_colours() -> None:
    text = "Task \x1b[96m'enhance'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m"
    assert strip_ansi(text) == "Task 'enhance' finished with status FAILURE"


def test_task_lines_show_one_line_per_task_and_keep_the_rest(tmp_path: Path) -> None:
    shown: list[str] = []

    class Screen:
        def write(self, text: str) -> None:
            shown.append(text)

        def flush(self) -> None:
            pass

    report = Reporter(stream=Screen(), log_path=tmp_path / "run.log")  # type: ignore[arg-type]
    stream = _TaskLines(report)
    stream.write("06:36:53.649 - INFO - Executing task \x1b[96m'make-sample'\x1b[0m\n")
    stream.write('    {"executor": "json",\n     "lines": 1}\n')
    stream.write("06:36:53.954 - INFO - Task \x1b[96m'make-sample'\x1b[0m finished ")
    stream.write("with status \x1b[92mSUCCESS\x1b[0m\n")
    stream.write("06:36:54.954 - INFO - Task 'plot' finished with status FAILURE")
    stream.flush()
    report.close()

    assert "".join(shown) == "    make-sample: ok\n    plot: failure\n"
    log = (tmp_path / "run.log").read_text()
    assert '"executor": "json"' in log
    assert "Executing task 'make-sample'" in log
    assert "\x1b[" not in log


def test_artifacts_get_a_sibling_with_their_types_extension(tmp_path: Path) -> None:
    page = tmp_path / "page"
    page.write_text("<html></html>")
    summary = tmp_path / "summary"
    summary.write_text("# report")
    plot = tmp_path / "first_pair"
    plot.write_bytes(PNG)
    tagged = tmp_path / "missing_map"
    tagged.write_bytes(b"not sniffable")
    opaque = tmp_path / "images"
    opaque.write_bytes(b"PK\x03\x04 numpy archive")

    assert openable("HTML", page, {}) == tmp_path / "page.html"
    assert openable("Markdown", summary, {}) == tmp_path / "summary.md"
    assert openable("Artifact", plot, {}) == tmp_path / "first_pair.png"
    assert openable("Artifact", tagged, {"format": "PNG"}) == tmp_path / "missing_map.png"
    assert openable("Dataset", opaque, {}) == opaque  # no known extension: the file itself
    assert (tmp_path / "page.html").read_text() == "<html></html>"
    assert (tmp_path / "first_pair.png").read_bytes() == PNG
    assert page.is_file()  # kfp's own file stays where downstream tasks expect it


def test_text_output_prints_a_path_not_a_dict() -> None:
    value = {"artifact": "HTML", "path": "/runs/x/page.html", "uri": "/runs/x/page"}
    assert show(value) == "/runs/x/page.html  (HTML)"
    assert show(3.25) == "3.25"


def test_a_run_leaves_no_kfp_workspace_folder_in_the_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kfp.local.init makes /tmp/kfp-workspace-* when given no workspace_root; only a
    # pipeline that kfp ran removes it: runs stopped before left 438 on this machine.
    from kfp import local  # noqa: PLC0415 - what run_pipeline imports

    given: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def init(**options: Any) -> None:
        given.update(options)
        raise Stop

    monkeypatch.setattr(local, "init", init)
    runs = tmp_path / "runs" / "demo"
    with pytest.raises(Stop):
        run_pipeline(cast(Any, None), tmp_path, pipeline_root=runs, arguments={})
    assert given["workspace_root"] == str(runs / ".kfp-workspace")
    assert (runs / ".kfp-workspace").is_dir()
