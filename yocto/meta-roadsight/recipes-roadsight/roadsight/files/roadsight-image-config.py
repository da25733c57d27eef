#!/usr/bin/env python3
"""Writes the image's /etc/roadsight/roadsight.toml from configs/roadsight.toml: the same file,
comments and all, with the keys the image needs set (absolute model paths, the image's ONNX
Runtime library, ...). Run by the recipe's do_install and by scripts/check-yocto.sh.

    roadsight-image-config.py IN OUT --str model.path=/usr/share/... --raw model.providers='["cpu"]'

Each TABLE.KEY must already be in IN, in that table, as `KEY = ...` or commented out as
`# KEY = ...` (the first uncommented line wins, else the first commented one), so a renamed or
removed key fails the build instead of leaving a default behind. The result is parsed again and
every value checked. Python 3.11+ standard library only.
"""

import argparse
import json
import re
import sys
import tomllib

TABLE = re.compile(r"^\s*\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$")


def toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


def parse_setting(arg: str, raw: bool) -> tuple[str, str, str, object]:
    dotted, sep, value = arg.partition("=")
    table, dot, key = dotted.rpartition(".")
    if not sep or not key:
        raise SystemExit(f"roadsight-image-config: expected TABLE.KEY=VALUE, got {arg!r}")
    text = value if raw else toml_str(value)
    try:
        expected = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as e:
        raise SystemExit(f"roadsight-image-config: {dotted}: not a TOML value: {value!r} ({e})")
    return table, key, text, expected


def rewrite(lines: list[str], settings: list[tuple[str, str, str, object]]) -> list[str]:
    out = list(lines)
    for table, key, text, _ in settings:
        plain, commented = None, None
        current = ""
        for i, line in enumerate(out):
            m = TABLE.match(line)
            if m:
                current = m.group(1)
                continue
            if current != table:
                continue
            if plain is None and re.match(rf"^{re.escape(key)}\s*=", line):
                plain = i
            elif commented is None and re.match(rf"^#\s?{re.escape(key)}\s*=", line):
                commented = i
        where = plain if plain is not None else commented
        if where is None:
            name = f"[{table}] {key}" if table else key
            raise SystemExit(f"roadsight-image-config: {name} not found in the input config")
        out[where] = f"{key} = {text}\n"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--str", dest="strs", action="append", default=[], metavar="TABLE.KEY=TEXT")
    parser.add_argument("--raw", dest="raws", action="append", default=[], metavar="TABLE.KEY=TOML")
    args = parser.parse_args()

    settings = [parse_setting(a, False) for a in args.strs] + [parse_setting(a, True) for a in args.raws]
    with open(args.input, encoding="utf-8") as f:
        lines = f.readlines()
    result = "".join(rewrite(lines, settings))

    parsed = tomllib.loads(result)
    for table, key, _, expected in settings:
        node = parsed
        for part in [p for p in table.split(".") if p] + [key]:
            node = node.get(part) if isinstance(node, dict) else None
        if node != expected:
            raise SystemExit(f"roadsight-image-config: {table}.{key} is {node!r} after rewriting, expected {expected!r}")

    with open(args.output, "w", encoding="utf-8") as f:
        f.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
