#!/usr/bin/env python3
"""The settings tables of the docs, made from the binaries' `--print-settings`.

    docs/tests/settings.py check OPERATOR_BIN ENTRYPOINT_BIN   # exit 1 when a table differs
    docs/tests/settings.py write OPERATOR_BIN ENTRYPOINT_BIN   # rewrite the tables

docs/configuration.md lists the operator's (operator/src/settings/table.rs), job-image/README.md
the entrypoint's (job-image/src/settings/table.rs). Each table lies between two marker comments;
everything else in the files is hand-written.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
END = "<!-- end of settings -->"
# (document, binary's name, its table's source, the second column: header and key)
TABLES = [
    ("docs/configuration.md", "sbomjob-operator", "operator/src/settings/table.rs", "Variable", "Chart value", "chart"),
    ("job-image/README.md", "sbomjob-entrypoint", "job-image/src/settings/table.rs", "Variable in the job",
     "Set on the operator as", "set_on"),
]


def table(settings, first, second, key):
    rows = [f"| {first} | {second} | Default | Meaning |", "|---|---|---|---|"]
    for s in settings:
        cells = [f"`{s['name']}`", s[key], s["default_doc"], s["meaning"]]
        if any("|" in c or "\n" in c for c in cells):
            sys.exit(f"{s['name']}: a cell holds '|' or a newline, which breaks the table")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("check", "write"):
        sys.exit(__doc__)
    mode, binaries, failed = sys.argv[1], sys.argv[2:], False
    for (doc, name, source, first, second, key), binary in zip(TABLES, binaries):
        path = ROOT / doc
        begin = (f"<!-- settings: made by docs/tests/settings.py from `{name} --print-settings`;"
                 f" edit {source} -->")
        settings = json.loads(subprocess.run([binary, "--print-settings"], check=True, capture_output=True).stdout)
        text = path.read_text()
        if text.count(begin) != 1 or text.count(END) != 1:
            sys.exit(f"{doc}: expected one {begin!r} and one {END!r}")
        head, rest = text.split(begin)
        old, tail = rest.split(END)
        new = f"\n\n{table(settings, first, second, key)}\n\n"
        if mode == "write":
            path.write_text(head + begin + new + END + tail)
            print(f"wrote {len(settings)} settings to {doc}")
        elif old != new:
            print(f"FAIL  {doc}'s settings table differs from `{name} --print-settings`;"
                  f" run docs/tests/settings.py write {' '.join(binaries)}")
            failed = True
        else:
            print(f"ok    {doc} lists the {len(settings)} settings of `{name} --print-settings`")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
