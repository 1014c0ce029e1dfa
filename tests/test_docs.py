"""What a newcomer reads first: the README's commands and links, and a clean editable install."""

from __future__ import annotations

import re
import subprocess
import sys
import venv
from pathlib import Path

from daemon.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_readme_lists_every_command() -> None:
    commands_section = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^qi2lab-ingest (\w+)", commands_section, re.M))
    parser = build_parser()
    (subcommands,) = (a for a in parser._actions if a.dest == "command")
    assert listed == set(subcommands.choices)  # type: ignore[arg-type]
    assert "qi2lab-ingest --version" in commands_section


def test_every_relative_link_of_the_docs_leads_to_a_file_of_the_repository() -> None:
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
        if page.name == "README.md":  # paths named in backticks (docs/ names example paths)
            targets += re.findall(r"`(\.\./[^`\s]*|(?:docs|bench)/[^`\s]*\.md)`", text)
        for target in targets:
            assert (page.parent / target).resolve().exists(), f"{page.name}: {target}"
            assert (page.parent / target).resolve().is_relative_to(REPO), f"{page.name}: {target}"
    assert "(docs/datastore.md)" in README


def test_the_readme_gives_the_commands_that_let_the_service_user_in() -> None:
    assert re.search(r"setfacl -m u:qi2lab-ingest:rwx /data/merfish/exp01\b", README)
    assert re.search(r"setfacl -R -m u:qi2lab-ingest:rX,d:u:qi2lab-ingest:rX \S+/raw_data", README)
    assert "install -d -o qi2lab-ingest -g qi2lab-ingest" in README


def test_an_editable_install_gives_no_warning_about_the_layout(tmp_path: Path) -> None:
    """setuptools warns about top-level folders next to the package unless packaging says
    exactly where the package is; installed into a bare environment of its own."""
    target = tmp_path / "env"
    venv.create(target, with_pip=False, symlinks=True)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--disable-pip-version-check", "-e", str(REPO)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    output = install.stdout + install.stderr
    assert "same name as your package" not in output, output[-3000:]
    imported = subprocess.run(
        [target / "bin" / "python", "-c", "import daemon.cli; print(daemon.cli.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert imported.stdout.strip() == str(REPO / "daemon" / "cli" / "__init__.py"), imported.stderr


def test_the_architecture_page_the_import_contract_and_the_code_name_the_same_packages() -> None:
    """docs/architecture.md's levels table, the import-linter layers and the code's own top-level
    modules list the same packages, so the page cannot drift from what `lint-imports` checks."""
    import tomllib

    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = page.split("## Levels, top to bottom", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    documented = [set(re.findall(r"`(daemon\.\w+)`", row.split("|")[2])) for row in rows]
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = (
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    )
    contracted = [{name.strip() for name in layer.split("|")} for layer in layers]
    assert documented == contracted
    code = {
        f"daemon.{p.stem if p.suffix == '.py' else p.name}"
        for p in (REPO / "daemon").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert code == set().union(*contracted) | {"daemon.simulate"}
