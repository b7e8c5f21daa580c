"""``gether log``, ``inspect`` and ``replay`` on a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import gether
from gether.cli.main import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/notes.db"
    with gether.Document.open(url, "notes") as doc:
        doc["title"] = "Groceries"
        doc.text("body").insert(0, "hello")
        with doc.transaction():
            doc.list("todos").append({"text": "milk"})
            doc.counter("likes").increment(3)
    return url


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_log(url: str) -> None:
    out = run("log", url, "notes")
    assert "4 event(s)" in out
    rows = json.loads(run("log", url, "notes", "--json"))
    assert [r["what"] for r in rows] == [
        "set /title",
        "set /body",
        "type /body",
        "set /todos, insert /todos, set /todos/-/text, set /likes, add /likes",
    ]
    assert {r["verdict"] for r in rows} == {"accepted"} and {r["subject"] for r in rows} == {None}
    assert json.loads(run("log", url, "notes", "--json", "--limit", "1")) == rows[-1:]
    assert json.loads(run("log", "--store", url, "notes", "--json")) == rows
    wrong = CliRunner().invoke(main, ["log", "--store", url, url, "notes"])
    assert wrong.exit_code == 2 and "--store URL DOC_ID" in wrong.output


def test_inspect_json(url: str) -> None:
    out = json.loads(run("inspect", url, "notes", "--json"))
    assert out["state"] == {
        "body": "hello",
        "likes": 3,
        "title": "Groceries",
        "todos": [{"text": "milk"}],
    }
    assert out["events"] == 4
    assert (
        gether.Version.parse(out["version"])
        == gether.Document.open(url, "notes", read_only=True).version
    )


def test_replay_at_a_count_and_at_a_version(url: str) -> None:
    first_two = json.loads(run("replay", url, "notes", "--at", "2", "--json"))
    assert first_two["state"] == {"title": "Groceries", "body": ""}
    again = json.loads(run("replay", url, "notes", "--at", first_two["version"], "--json"))
    assert again == first_two


def test_inspect_writes_nothing(url: str, tmp_path: Path) -> None:
    before = (tmp_path / "notes.db").stat().st_mtime_ns
    run("inspect", url, "notes")
    run("log", url, "notes")
    assert (tmp_path / "notes.db").stat().st_mtime_ns == before


def test_errors_are_one_line(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["inspect", url, "other"])
    assert missing.exit_code == 1 and "no events" in missing.output
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    bad = runner.invoke(main, ["log", f"sqlite:///{junk}", "notes"])
    assert bad.exit_code == 1 and "[corrupt_store]" in bad.output
    version = runner.invoke(main, ["replay", url, "notes", "--at", "nobody"])
    assert version.exit_code == 1 and "[invalid_value]" in version.output
