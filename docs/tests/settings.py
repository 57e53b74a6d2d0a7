#!/usr/bin/env python3
"""The settings table of docs/configuration.md, made from `sbomjob-operator --print-settings`.

    docs/tests/settings.py check OPERATOR_BIN   # exit 1 when the table differs from the binary's
    docs/tests/settings.py write OPERATOR_BIN   # rewrite the table

The table lies between the two marker comments; everything else in the file is hand-written.
The settings themselves are declared in operator/src/settings/table.rs.
"""
import json
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "configuration.md"
BEGIN = "<!-- settings: made by docs/tests/settings.py from `sbomjob-operator --print-settings`; edit operator/src/settings/table.rs -->"
END = "<!-- end of settings -->"


def table(settings):
    rows = ["| Variable | Chart value | Default | Meaning |", "|---|---|---|---|"]
    for s in settings:
        cells = [f"`{s['name']}`", s["chart"], s["default_doc"], s["meaning"]]
        if any("|" in c or "\n" in c for c in cells):
            sys.exit(f"{s['name']}: a cell holds '|' or a newline, which breaks the table")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "write"):
        sys.exit(__doc__)
    mode, binary = sys.argv[1], sys.argv[2]
    settings = json.loads(subprocess.run([binary, "--print-settings"], check=True, capture_output=True).stdout)
    text = DOC.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        sys.exit(f"{DOC}: expected one {BEGIN!r} and one {END!r}")
    head, rest = text.split(BEGIN)
    old, tail = rest.split(END)
    new = f"\n\n{table(settings)}\n\n"
    if mode == "write":
        DOC.write_text(head + BEGIN + new + END + tail)
        print(f"wrote {len(settings)} settings to {DOC}")
    elif old != new:
        print(f"FAIL  {DOC}'s settings table differs from `{binary} --print-settings`;"
              f" run docs/tests/settings.py write {binary}")
        sys.exit(1)
    else:
        print(f"ok    docs/configuration.md lists the {len(settings)} settings of --print-settings")


if __name__ == "__main__":
    main()
