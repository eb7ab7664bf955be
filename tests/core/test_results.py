"""Results files: tables saved with their provenance, replaced by key, refused when incomplete, and rendered for the
docs; ``--save`` on a measuring command writes them."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.core.errors import SettingError
from mobilenets.core.results import PROVENANCE, load_results, results_index, results_markdown, save_tables
from mobilenets.core.tables import Table


def _table(key: str, value: str) -> Table:
    return Table(key=key, title=f"{key} title", columns=["model", "ms"], rows=[["a", value]], notes=["a note"])


def test_saved_tables_carry_their_provenance_and_the_newest_replaces_its_key(tmp_path):
    path = tmp_path / "bench.json"
    save_tables([_table("first", "1.0"), _table("second", "2.0")], path, "mobilenets bench backbone")
    save_tables([_table("first", "3.0")], path, "mobilenets bench backbone --rounds 5")
    tables = load_results(path)
    assert list(tables) == ["first", "second"]
    assert tables["first"]["rows"] == [["a", "3.0"]] and tables["second"]["rows"] == [["a", "2.0"]]
    first = tables["first"]
    assert set(PROVENANCE) <= set(first)
    assert first["command"] == "mobilenets bench backbone --rounds 5"
    assert first["torch"] == torch.__version__ and first["cores"] == os.cpu_count()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", first["date"])
    assert re.fullmatch(r"[0-9a-f]{40}(\+changes)?|mobilenet-suite .*|unknown", first["commit"])


def test_rendered_table_has_its_title_notes_and_provenance(tmp_path):
    path = tmp_path / "bench.json"
    save_tables([_table("first", "1|5")], path, "mobilenets bench backbone")
    text = results_markdown(path, "first")
    assert text.splitlines()[:5] == ["**first title**", "", "| model | ms |", "|---|---|", "| a | 1\\|5 |"]
    assert "a note" in text and "`mobilenets bench backbone`" in text and "table `first`" in text
    assert "### first title" in results_index(tmp_path)


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "maps table keys to tables"),
    ('{"t": {"title": "x", "columns": ["a"], "rows": [[1]]}}', "table 't' lacks command, commit"),
    ("{not json", "not a results file"),
])
def test_incomplete_results_files_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SettingError, match=re.escape(message)) as error:
        load_results(path)
    assert str(path) in str(error.value)


def test_rows_must_fit_the_columns(tmp_path):
    path = tmp_path / "ragged.json"
    save_tables([_table("t", "1")], path, "mobilenets profile")
    tables = json.loads(path.read_text())
    tables["t"]["rows"].append(["only one cell"])
    path.write_text(json.dumps(tables))
    with pytest.raises(SettingError, match=r"table 't' has 2 columns but rows of \[1, 2\] cells"):
        load_results(path)


def test_an_unknown_key_names_the_ones_there(tmp_path):
    path = tmp_path / "bench.json"
    save_tables([_table("first", "1")], path, "mobilenets profile")
    with pytest.raises(SettingError, match="no table 'other'; it has first"):
        results_markdown(path, "other")


def test_profile_save_writes_the_paper_tables_with_the_command_as_typed(tmp_path, capsys):
    path = tmp_path / "sizes.json"
    assert main(["profile", "--table", "table3", "--save", str(path)]) == 0
    assert "| layer |" in capsys.readouterr().out
    tables = load_results(path)
    assert list(tables) == ["table3"] and len(tables["table3"]["rows"]) == 4
    assert tables["table3"]["command"] == "mobilenets profile --table table3"
