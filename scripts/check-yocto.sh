#!/usr/bin/env bash
# Checks yocto/ without bitbake (nothing here builds an image):
#  - the roadsight recipe's -crates.inc is what `bitbake -c update_crates` writes from
#    Cargo.lock (scripts/yocto-crates.py), and Cargo.lock is the only one bitbake would find;
#  - the recipe: its version is Cargo.toml's; its LIC_FILES_CHKSUM md5s match the files; every
#    file:// it fetches and every ${S}/... it installs exists in the repository; SYSTEMD_SERVICE
#    names units it installs; the units' /etc/roadsight paths (ExecStart) are files it installs,
#    all of them CONFFILES; the units' users and groups are the ones it creates, the same as
#    systemd/sysusers.d/roadsight.conf; onnxruntime-prebuilt is the ONNX Runtime version
#    scripts/setup.sh tests with;
#  - the image's roadsight.toml, made from configs/roadsight.toml by the recipe's own script
#    with the recipe's own arguments, parses and points at files the recipe installs;
#  - the kas files pass kas' schema and their includes resolve;
#  - oelint-adv over the layer (versions in yocto/lint-requirements.txt, rules in
#    yocto/oelint-rules.json) reports no error or warning, and every `# nooelint:` says why.
# Lint tools go into .local/oelint-venv (created on first use, from PyPI). Exit 1 on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYER=yocto/meta-roadsight
RECIPE_DIR=$LAYER/recipes-roadsight/roadsight
VENV=.local/oelint-venv
REQS=yocto/lint-requirements.txt

fail() { echo "check-yocto: FAIL: $*" >&2; exit 1; }

# 1. crates.inc
python3 scripts/yocto-crates.py --check || fail "$RECIPE_DIR/roadsight-crates.inc is stale (diff above)"
# update_crates reads every Cargo.lock under the recipe's source; only this one is fetched.
extra_locks=$(git ls-files -- '*Cargo.lock' | grep -vx Cargo.lock || true)
[ -z "$extra_locks" ] || fail "update_crates would also read: $extra_locks"
echo "check-yocto: roadsight-crates.inc matches Cargo.lock"

# 2-3. The recipe against the repository, the units and the configs.
python3 - "$RECIPE_DIR" <<'EOF'
import hashlib, pathlib, re, subprocess, sys, tempfile, tomllib

recipe_dir = pathlib.Path(sys.argv[1])
problems = []
def problem(msg): problems.append(msg)

recipes = sorted(recipe_dir.glob("roadsight_*.bb"))
if len(recipes) != 1:
    sys.exit(f"check-yocto: FAIL: expected one roadsight_<version>.bb in {recipe_dir}, found {recipes}")
recipe = recipes[0]
text = recipe.read_text()
flat = re.sub(r"\\\n", " ", text)  # join continued lines

# Version.
pv = recipe.stem.split("_", 1)[1]
cargo_version = tomllib.loads(pathlib.Path("Cargo.toml").read_text())["package"]["version"]
if pv != cargo_version:
    problem(f"{recipe.name}: version {pv}, Cargo.toml says {cargo_version}: git mv it to roadsight_{cargo_version}.bb")

# Variables: the poky scarthgap defaults the recipe uses, then its own simple assignments.
variables = {
    "PN": "roadsight", "BPN": "roadsight", "prefix": "/usr", "bindir": "/usr/bin",
    "sysconfdir": "/etc", "datadir": "/usr/share", "docdir": "/usr/share/doc",
    "libdir": "/usr/lib", "nonarch_libdir": "/usr/lib", "base_sbindir": "/sbin",
    "systemd_system_unitdir": "/lib/systemd/system",
}
for m in re.finditer(r'^([A-Z_]+)\s*(?:\?=|=)\s*(["\'])(.*?)\2\s*$', flat, re.M):
    variables.setdefault(m.group(1), m.group(3))
def expand(value):
    for _ in range(10):
        value = re.sub(r"\$\{([A-Za-z_]+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)
    return value

# LIC_FILES_CHKSUM against the repository (bitbake's md5 of lines beginline..endline).
lic = re.search(r'^LIC_FILES_CHKSUM\s*=\s*"([^"]*)"', flat, re.M).group(1)
for entry in lic.split():
    path, *params = entry.removeprefix("file://").split(";")
    params = dict(p.split("=", 1) for p in params)
    begin, end = int(params.get("beginline", 0)), int(params.get("endline", 0))
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if n >= begin and (not end or n <= end):
                md5.update(line)
    if md5.hexdigest() != params.get("md5"):
        problem(f"LIC_FILES_CHKSUM {path} lines {begin}-{end}: md5 is now {md5.hexdigest()} "
                f"(check the lines still hold the license, then update beginline/endline/md5)")

# Fetched files: repository paths (subdir=roadsight) and files/ beside the recipe.
fetched, local = [], []
for m in re.finditer(r"file://([^;\s\"]+)((?:;[^\s\"]*)?)", re.search(r'^SRC_URI \+?=\s*"([^"]*)"', flat, re.M).group(1)):
    (fetched if "subdir=roadsight" in m.group(2) else local).append(m.group(1))
for path in fetched:
    p = pathlib.Path(path)
    if not p.exists() or (p.is_dir() and not any(p.iterdir())):
        problem(f"SRC_URI fetches {path}, which is not in the repository")
    elif subprocess.run(["git", "ls-files", "--error-unmatch", path], capture_output=True).returncode:
        problem(f"SRC_URI fetches {path}, which git does not track")
for path in local:
    if not (recipe_dir / "files" / path).exists():
        problem(f"SRC_URI fetches {path}, not in {recipe_dir}/files")
def is_fetched(path):
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in fetched)

# What do_install installs: `install ... ${S}/SRC ${D}DEST`, the image config, directories.
install = re.search(r"^do_install:append\(\) \{\n(.*?)^\}", text, re.M | re.S).group(1)
install_flat = re.sub(r"\\\n", " ", install)
installed = {"/usr/bin/roadsightd"}  # cargo_do_install, --bin roadsightd
dirs = set()
for m in re.finditer(r"\$\{S\}/(\S+)", install_flat):
    if not is_fetched(m.group(1)):
        problem(f"do_install uses ${{S}}/{m.group(1)}, which SRC_URI does not fetch")
for m in re.finditer(r"install -m \d+ \$\{S\}/(\S+) \$\{D\}(\S+)", install_flat):
    installed.add(expand(m.group(2)))
for m in re.finditer(r"install -d (?:-m \d+ )?((?:\$\{D\}\S+\s*)+)", install_flat):
    dirs.update(expand(d.removeprefix("${D}")) for d in m.group(1).split())
config = re.search(r"nativepython3 \$\{WORKDIR\}/(\S+)\s+\$\{S\}/(\S+)\s+\$\{D\}(\S+)((?:\s+--(?:str|raw) (?:'[^']*'|\S+))+)", install_flat)
if not config:
    sys.exit("check-yocto: FAIL: no roadsight-image-config.py call in do_install")
script, config_src, config_dest, config_args = config.groups()
installed.add(expand(config_dest))

# The image's roadsight.toml, made by the recipe's script with the recipe's arguments.
args = [expand(a[1:-1] if a.startswith("'") else a) for a in re.findall(r"'[^']*'|\S+", config_args)]
with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp, "roadsight.toml")
    run = subprocess.run([sys.executable, str(recipe_dir / "files" / script), config_src, str(out), *args],
                         capture_output=True, text=True)
    if run.returncode:
        problem(f"{script} on {config_src}: {run.stderr.strip() or run.stdout.strip()}")
    else:
        image = tomllib.loads(out.read_text())
        etc = pathlib.PurePosixPath(expand(config_dest)).parent
        for key in ("path", "labels"):
            value = image["model"][key]
            if not value.startswith("/") or value not in installed:
                problem(f"image roadsight.toml: model.{key} = {value!r} is not a file the recipe installs")
        if not str(image["model"].get("ort_library", "")).startswith("/"):
            problem("image roadsight.toml: model.ort_library is not an absolute path")
        cameras = etc / image.get("cameras_dir", "cameras.d")
        if str(cameras) not in dirs:
            problem(f"image roadsight.toml: cameras_dir {cameras} is not a directory the recipe makes")

# Units: SYSTEMD_SERVICE, ExecStart's /etc/roadsight paths, users and groups.
unitdir = variables["systemd_system_unitdir"]
units = {}
for m in re.finditer(r'^SYSTEMD_SERVICE:\$\{PN\}(\S*)\s*=\s*"([^"]*)"', flat, re.M):
    for unit in m.group(2).split():
        if f"{unitdir}/{unit}" not in installed:
            problem(f"SYSTEMD_SERVICE:${{PN}}{m.group(1)} names {unit}, which do_install does not install")
        units[unit] = pathlib.Path("systemd", unit)
if not units:
    problem("no SYSTEMD_SERVICE")
conffiles = set(expand(re.sub(r"\s+", " ", " ".join(re.findall(r'^CONFFILES:\S+\s*=\s*"([^"]*)"', flat, re.M)))).split())
for path in sorted(p for p in installed if p.startswith("/etc/roadsight/")):
    if path not in conffiles:
        problem(f"{path} is installed but not in CONFFILES")
useradd = ";".join(re.findall(r'^USERADD_PARAM:\S+\s*=\s*"([^"]*)"', flat, re.M))
groupadd = ";".join(re.findall(r'^GROUPADD_PARAM:\S+\s*=\s*"([^"]*)"', flat, re.M))
users = {p.split()[-1]: p for p in useradd.split(";") if p.strip()}
base_groups = {"video"}  # base-passwd
for unit, path in units.items():
    if not path.exists():
        problem(f"SYSTEMD_SERVICE names {unit}, which is not in systemd/")
        continue
    body = path.read_text()
    for m in re.finditer(r"^ExecStart=\S*?(/\S+)(.*)$", body, re.M):
        for arg in m.group(2).split():
            if arg.startswith("/etc/roadsight/") and arg not in installed:
                problem(f"{path}: ExecStart uses {arg}, which the recipe does not install")
    for key, value in re.findall(r"^(User|Group|SupplementaryGroups)=(.*)$", body, re.M):
        for name in value.split():
            if key == "User" and name not in users:
                problem(f"{path}: User={name} is not created by USERADD_PARAM")
            if key != "User" and name not in base_groups and f"--system {name}" not in groupadd:
                problem(f"{path}: {key}={name} is not created by GROUPADD_PARAM")
    user = re.search(r"^User=(\S+)", body, re.M)
    groups = re.search(r"^SupplementaryGroups=(.*)$", body, re.M)
    if user and groups and user.group(1) in users:
        have = re.search(r"--groups (\S+)", users[user.group(1)])
        missing = set(groups.group(1).split()) - set(have.group(1).split(",") if have else [])
        if missing:
            problem(f"{path}: {user.group(1)} is not in {' '.join(sorted(missing))} (USERADD_PARAM --groups)")
for line in pathlib.Path("systemd/sysusers.d/roadsight.conf").read_text().splitlines():
    fields = line.split()
    if len(fields) >= 2 and fields[0] == "u" and fields[1] not in users:
        problem(f"sysusers.d user {fields[1]} is not created by USERADD_PARAM")
    if len(fields) >= 3 and fields[0] == "u" and ":" in fields[2]:
        group = fields[2].split(":")[1]
        if fields[1] in users and f"--gid {group}" not in users[fields[1]]:
            problem(f"sysusers.d puts {fields[1]} in group {group}; USERADD_PARAM does not")
    if len(fields) >= 2 and fields[0] == "g" and f"--system {fields[1]}" not in groupadd:
        problem(f"sysusers.d group {fields[1]} is not created by GROUPADD_PARAM")

# The ONNX Runtime the image ships is the one the tests run against.
ort = sorted(pathlib.Path("yocto/meta-roadsight/recipes-support/onnxruntime").glob("onnxruntime-prebuilt_*.bb"))
tested = re.search(r'^ORT_VERSION="\$\{ORT_VERSION:-([^}]+)\}"', pathlib.Path("scripts/setup.sh").read_text(), re.M)
if len(ort) != 1 or not tested or ort[0].stem.split("_", 1)[1] != tested.group(1):
    problem(f"onnxruntime-prebuilt is {[o.name for o in ort]}, scripts/setup.sh tests ONNX Runtime "
            f"{tested.group(1) if tested else '?'}: move the recipe to that version (wheel URLs and sha256 from PyPI)")

if problems:
    for p in problems:
        print(f"check-yocto: FAIL: {p}", file=sys.stderr)
    sys.exit(1)
print(f"check-yocto: {recipe.name}: {len(fetched)} fetched paths present, {len(installed)} installed files, "
      f"units, users, CONFFILES and the image config consistent")
EOF

# 4-5. Lint tools, pinned; reinstalled when the requirements change.
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "check-yocto: installing the lint tools of $REQS into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  echo "$want" > "$stamp"
fi

"$VENV/bin/python" - <<'EOF'
import argparse, json, os, pathlib, sys, tempfile
import jsonschema, kas, yaml
from kas.context import create_global_context
from kas.includehandler import IncludeHandler

schema = json.loads(pathlib.Path(kas.__file__).with_name("schema-kas.json").read_text())
files = sorted(pathlib.Path("yocto/kas").glob("*.yml"))
with tempfile.TemporaryDirectory() as work:
    os.environ["KAS_WORK_DIR"] = work
    create_global_context(argparse.Namespace(no_color=True, update=False))
    for f in files:
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)
        config, missing = IncludeHandler([str(f.resolve())], use_lock=False).get_config()
        if missing:
            sys.exit(f"check-yocto: FAIL: {f}: includes from repositories it cannot see: {missing}")
        jsonschema.validate(config, schema)
print(f"check-yocto: kas {kas.__version__}: {len(files)} files valid")
EOF

# oelint: the whole layer at once (the recipe's .inc comes with the recipe).
mapfile -t lint_files < <(find "$LAYER" -type f \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' -o -name '*.conf' \) | sort)
findings=$("$VENV/bin/oelint-adv" --quiet --relpaths --mode all --release scarthgap --hide info \
  --rulefile yocto/oelint-rules.json --constantmods=+yocto/oelint-constants.json \
  "${lint_files[@]}" 2>&1 || true)
# roadsight-crates.inc is bitbake's own output, kept byte for byte (step 1): its
# `SRC_URI += " \` opening is the one thing oelint objects to there.
left=$(grep -v -E '^[^:]*/roadsight-crates\.inc:[0-9]+:(error|warning):oelint\.vars\.(inconspaces|notneededspace):' <<<"$findings" || true)
[ -z "$left" ] || fail "oelint-adv:"$'\n'"$left"
# A suppression must say why: `# nooelint: <ids> - <reason>`.
bare=$(grep -rn --include='*.bb' --include='*.bbappend' --include='*.bbclass' --include='*.conf' --include='*.inc' \
  -E '^#\s+nooelint:' "$LAYER" | grep -v -E 'nooelint:\s+[A-Za-z0-9.,_-]+\s+-\s+\S' || true)
[ -z "$bare" ] || fail "# nooelint without a reason (# nooelint: <ids> - <reason>):"$'\n'"$bare"
echo "check-yocto: oelint-adv $("$VENV/bin/oelint-adv" --version | cut -d' ' -f2): ${#lint_files[@]} files clean" \
  "($(grep -rc -E '^#\s+nooelint:' "$LAYER" | awk -F: '{s+=$2} END {print s}') justified suppressions)"
