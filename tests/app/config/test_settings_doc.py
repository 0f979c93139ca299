"""docs/configuration.md is generated from ``Settings``, lists every setting once, is current."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.cli import main
from app.config.settings import Settings
from app.config.settings_doc import (
    DOC_PATH,
    GROUPS,
    OTHER,
    REPO_ROOT,
    env_var,
    grouped,
    render,
    stale,
    undocumented,
)


def _rows(page: str) -> list[str]:
    """The variables of the page's table rows, in order."""
    return [
        line.split("|")[1].strip().strip("`") for line in page.splitlines() if line[:3] == "| `"
    ]


def test_configuration_page_is_current() -> None:
    difference = stale(DOC_PATH)
    assert difference is None, f"{difference}\nrun `fusionserve settings-doc` and commit the page"


def test_every_setting_is_described_and_listed_once() -> None:
    assert undocumented() == [], "add Field(description=...) for these in app/config/settings.py"
    prefix = Settings.model_config["env_prefix"]
    assert prefix == "FUSIONSERVE_"
    rows = _rows(DOC_PATH.read_text(encoding="utf-8"))
    assert sorted(rows) == sorted(f"{prefix}{name.upper()}" for name in Settings.model_fields)
    placed = [name for _, _, names in grouped() for name in names]
    assert sorted(placed) == sorted(Settings.model_fields)


def test_page_does_not_depend_on_the_checkout() -> None:
    page = render()
    assert str(REPO_ROOT) not in page
    assert "| `FUSIONSERVE_BUNDLE_PATH` | path | `models/default` of the source checkout |" in page


@pytest.mark.parametrize(
    ("name", "cells"),
    [
        ("port", "| integer >= 0, <= 65535 | `8000` |"),
        ("device", "| one of `auto`, `cuda`, `cpu` | `auto` |"),
        ("max_body_bytes", "| integer >= 1 | `33554432` (32 MiB) |"),
        ("max_batch_wait_ms", "| number >= 0, <= 1000 | `0` |"),
        ("bundles", "| list of paths (JSON list or comma-separated) | none |"),
        ("text_length_buckets", "| list of integers (JSON list) | `[16,32,64,128]` |"),
        ("api_keys_file", "| path, or unset | unset |"),
        ("default_top_k", "| integer >= 1, or unset | unset |"),
        ("jpeg_draft", "| boolean | `true` |"),
    ],
)
def test_types_and_defaults_as_the_environment_takes_them(name: str, cells: str) -> None:
    row = next(line for line in render().splitlines() if line.startswith(f"| `{env_var(name)}` "))
    assert cells in row


def test_names_of_settings_in_descriptions_become_variables() -> None:
    row = next(line for line in render().splitlines() if "`FUSIONSERVE_BODY_MEMORY_MB` |" in line)
    assert "At least `FUSIONSERVE_MAX_BODY_BYTES`." in row


class _Demo(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    grouped_one: int = Field(default=1, description="In a group.")
    loose: str = Field(default="x", description="In no group | with a pipe.")


def test_renderer_places_every_field_and_escapes_cells() -> None:
    page = render(_Demo, (("One", "The first group.", ("grouped_one",)),))
    assert page.index("## One") < page.index("`DEMO_GROUPED_ONE`")
    assert page.index(f"## {OTHER}") < page.index("`DEMO_LOOSE`")
    assert "In no group \\| with a pipe." in page


def test_renderer_refuses_undocumented_fields_and_unknown_groups() -> None:
    class Undocumented(BaseSettings):
        bare: int = 1

    with pytest.raises(ValueError, match="bare"):
        render(Undocumented, ())
    with pytest.raises(ValueError, match="nope"):
        render(_Demo, (("One", "", ("nope",)),))
    with pytest.raises(ValueError, match="more than one group"):
        render(_Demo, (("One", "", ("loose",)), ("Two", "", ("loose",))))
    assert all(name in Settings.model_fields for _, _, names in GROUPS for name in names)


def test_cli_writes_the_page_and_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "configuration.md"
    assert main(["settings-doc", "--check", "--out", str(page)]) == 1
    assert f"{page} does not exist" in capsys.readouterr().err
    assert main(["settings-doc", "--out", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == render()
    assert main(["settings-doc", "--check", "--out", str(page)]) == 0
    page.write_text(render().replace("Address to listen on.", "Somewhere."), encoding="utf-8")
    assert main(["settings-doc", "--check", "--out", str(page)]) == 1
    err = capsys.readouterr().err
    assert "differs from what app/config/settings.py gives" in err
    assert "+| `FUSIONSERVE_HOST`" in err
    assert main(["settings-doc", "--check"]) == 0  # the committed page
