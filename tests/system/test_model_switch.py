"""Issue 5: a new model re-encodes every photo once, in the background, while searches keep working."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from conftest import DEMO_MODEL, make_scenes


def copy_model(tmp_path: Path, new_id: str) -> Path:
    """The demo model under another id: to nasclip, a different model."""
    folder = tmp_path / new_id
    shutil.copytree(DEMO_MODEL, folder)
    manifest = folder / "model.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["id"] = new_id
    manifest.write_text(yaml.safe_dump(data, allow_unicode=True))
    return folder


@pytest.mark.slow
def test_switching_models_reencodes_once_while_searches_answer(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    scenes = make_scenes(share, 600, seed=41)
    daemon = daemon_factory({"photos": share})
    first = daemon.wait_idle()
    old_model = first["model"]["id"]
    assert first["encoded"]["run"] == len(scenes)
    assert daemon.stop() == 0

    new_model = copy_model(tmp_path, "demo-copy-2")
    config = yaml.safe_load(daemon.config_path.read_text())
    config["model"] = str(new_model)
    daemon.config_path.write_text(yaml.safe_dump(config))
    daemon.start()

    served_by: list[str] = []
    switch_seen = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        reply = daemon.request(op="search", text="a red circle", k=20)
        if not reply["ok"] and reply["error"]["code"] == "busy":
            # This loop reconnects faster than a loaded server may see its last connections
            # close (the per-user limit); nasclip-query waits that out the same way.
            time.sleep(0.05)
            continue
        assert reply["ok"], reply
        assert len(reply["results"]) == 20, "every photo stays searchable during the switch"
        served_by.append(reply["model"])
        status = daemon.status()
        if status["model_switch"]:
            switch_seen = True
            assert status["model_switch"]["to"] == "demo-copy-2"
            assert status["model_switch"]["serving"] == old_model
        elif status["photos"]["pending"] == 0 and reply["model"] == "demo-copy-2":
            break
    else:
        raise AssertionError(f"the switch did not finish; last status {status}")
    assert switch_seen and served_by[0] == old_model, served_by[:5]
    assert served_by[-1] == "demo-copy-2"
    # The old model answered until the new one covered every photo, then never again.
    first_new = served_by.index("demo-copy-2")
    assert set(served_by[:first_new]) == {old_model} and set(served_by[first_new:]) == {"demo-copy-2"}
    assert status["encoded"]["run"] == len(scenes)  # each photo once, none twice
    assert status["encoded"]["total"] == 2 * len(scenes)
    assert daemon.stop() == 0
    # The old index is retired: only the new model's checkpoint is left.
    assert sorted(p.name for p in (Path(config["state_dir"]) / "index").glob("*.faiss")) == ["demo-copy-2.faiss"]
    assert f"retired model {old_model}" in daemon.log()
