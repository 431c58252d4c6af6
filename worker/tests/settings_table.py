"""The README's configuration table against a runtime's table of settings (worker/runtimes/setting.py)."""

from pathlib import Path

from worker.runtimes.setting import Setting

README = Path(__file__).resolve().parents[2] / "README.md"


def assert_readme_lists(table: tuple[Setting, ...], prefix: str, runtime: str) -> None:
    """Every setting of `table` has its row, in order, with its default as the README shows it."""
    rows = {}
    for line in README.read_text().splitlines():
        if line.startswith(f"| `{prefix}"):
            name, default = (cell.strip() for cell in line.split("|")[1:3])
            rows[name.strip("`")] = default

    assert list(rows) == [item.name for item in table]
    for item in table:
        if item.required:
            assert rows[item.name] == f"empty (required with `RUNTIME={runtime}`)"
        elif item.default == "":
            assert rows[item.name] == "empty"
        else:
            shown = f"{item.default:g}" if isinstance(item.default, float) else str(item.default)
            assert rows[item.name] == f"`{shown}`", item.name
