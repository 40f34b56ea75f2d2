"""`emostream deploy`: list, publish (staged, refuses worse models), roll back into .retired."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from emostream_trainer.deploy_command import RETIRED, DeployError, listing, main, publish, rollback
from emostream_trainer.export import numbered_versions


def fake_version(folder: Path, accuracy: float | None, revision: str = "abc123") -> Path:
    """A folder that looks like an exported version (publish only checks saved_model.pb and the card)."""
    (folder / "assets").mkdir(parents=True)
    (folder / "variables").mkdir()
    (folder / "saved_model.pb").write_bytes(b"not really a graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "assets" / "labels.txt").write_text("happy\nneutral\nfear\n")
    card = {"labels": ["happy", "neutral", "fear"], "code_revision": revision}
    if accuracy is not None:
        card["validation_accuracy"] = accuracy
    (folder / "assets" / "model_card.json").write_text(json.dumps(card))
    return folder


def children(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir())


def test_publish_copies_in_as_next_version_without_leftovers(tmp_path: Path) -> None:
    base = tmp_path / "emotion"
    first = publish(fake_version(tmp_path / "a", 0.5), base)
    assert first == base / "1"
    second = publish(fake_version(tmp_path / "b", 0.6, "def456"), base)
    assert second == base / "2"
    assert children(base) == ["1", "2"]  # no hidden staging folder left
    assert (second / "saved_model.pb").read_bytes() == b"not really a graph"
    assert (second / "variables" / "variables.index").is_file()
    assert (tmp_path / "b" / "saved_model.pb").is_file()  # the source is copied, not moved
    assert listing(base) == [
        {
            "version": 1,
            "serving": False,
            "validation_accuracy": 0.5,
            "labels": ["happy", "neutral", "fear"],
            "code_revision": "abc123",
        },
        {
            "version": 2,
            "serving": True,
            "validation_accuracy": 0.6,
            "labels": ["happy", "neutral", "fear"],
            "code_revision": "def456",
        },
    ]


def test_publish_refuses_lower_accuracy_unless_forced(tmp_path: Path) -> None:
    base = tmp_path / "emotion"
    publish(fake_version(tmp_path / "good", 0.7), base)
    worse = fake_version(tmp_path / "worse", 0.6)
    with pytest.raises(DeployError, match=re.escape("0.6000 < serving version 1's 0.7000")):
        publish(worse, base)
    assert numbered_versions(base) == [1] and children(base) == ["1"]
    assert publish(worse, base, force=True) == base / "2"
    # Without a recorded accuracy there is nothing to compare: published.
    assert publish(fake_version(tmp_path / "unknown", None), base) == base / "3"
    assert publish(fake_version(tmp_path / "equal", 0.6), base) == base / "4"  # 0.6 is not below 0.6 (v2)


def test_publish_rejects_folder_without_saved_model(tmp_path: Path) -> None:
    base = tmp_path / "emotion"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeployError, match=re.escape("no saved_model.pb")):
        publish(empty, base)
    assert numbered_versions(base) == []


def test_rollback_retires_newer_versions(tmp_path: Path) -> None:
    base = tmp_path / "emotion"
    for n in range(4):
        publish(fake_version(tmp_path / f"v{n}", 0.5 + n / 10), base)
    assert rollback(base) == 3
    assert numbered_versions(base) == [1, 2, 3]
    assert (base / RETIRED / "4" / "saved_model.pb").is_file()
    assert rollback(base, to=1) == 1
    assert numbered_versions(base) == [1]
    assert sorted(p.name for p in (base / RETIRED).iterdir()) == ["2", "3", "4"]
    # .retired is not a numeric child, so neither server ever loads from it.
    assert not RETIRED.isdigit() and children(base) == [RETIRED, "1"]
    assert listing(base)[-1]["version"] == 1 and listing(base)[-1]["serving"]


def test_rollback_errors(tmp_path: Path) -> None:
    base = tmp_path / "emotion"
    publish(fake_version(tmp_path / "only", 0.5), base)
    with pytest.raises(DeployError, match="nothing to roll back to"):
        rollback(base)
    with pytest.raises(DeployError, match="no version 7"):
        rollback(base, to=7)
    assert numbered_versions(base) == [1]


def test_main_list_publish_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "emotion"
    assert main(["--model-base", str(base), "publish", str(fake_version(tmp_path / "a", 0.5))]) == 0
    assert main(["--model-base", str(base), "publish", str(fake_version(tmp_path / "b", 0.9))]) == 0
    assert f"published {base / '2'}" in capsys.readouterr().out
    assert main(["--model-base", str(base), "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["serving"], r["validation_accuracy"]) for r in rows] == [(1, False, 0.5), (2, True, 0.9)]
    assert main(["--model-base", str(base), "rollback"]) == 0
    assert "serving version 1" in capsys.readouterr().out
    assert main(["--model-base", str(base), "rollback", "--to", "1"]) == 0  # already there: nothing newer
    assert numbered_versions(base) == [1]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["publish", "{tmp}/absent"], "not a SavedModel folder"),
        (["publish", "{tmp}/worse"], "pass --force"),
        (["rollback"], "nothing to roll back to"),
        (["rollback", "--to", "5"], "no version 5"),
    ],
)
def test_main_errors_exit_2_with_a_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragment: str,
) -> None:
    base = tmp_path / "emotion"
    publish(fake_version(tmp_path / "good", 0.8), base)
    fake_version(tmp_path / "worse", 0.1)
    code = main(["--model-base", str(base), *(a.format(tmp=tmp_path) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("emostream deploy: ") and fragment in err and "Traceback" not in err
    assert numbered_versions(base) == [1]
