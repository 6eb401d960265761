#!/usr/bin/env bash
# What each dependency adds to the service jar, as a table sorted by size: artifact, MB, share.
#
#   mvn -B -q clean package -DskipTests && scripts/jar-report.sh [target/outboard.jar]
#
# A shaded jar: an entry belongs to the first artifact on the runtime classpath that holds it (our own
# classes first), the one the shade plugin copies; its bytes are its compressed data plus its zip
# headers, so the rows add up to the file. Merged files (services, reference.conf, the manifest) count
# as "(merged)"; "kept" is how much of the artifact's own jar the shading kept. Reading the classpath
# needs Maven and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
JAR=${1:-target/outboard.jar}
[[ -f $JAR ]] || { echo "no $JAR: run mvn -B -q clean package -DskipTests first" >&2; exit 1; }
CP=$(mktemp)
trap 'rm -f "$CP"' EXIT
mvn -B -q -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:build-classpath \
  -DincludeScope=runtime -Dmdep.outputFile="$CP" >&2
python3 - "$JAR" target/classes "$CP" <<'PY'
import os, sys, zipfile

jar, classes, cp_file = sys.argv[1:]


def stored(info):  # bytes of one entry in a zip: data, local header, central directory record
    name = len(info.filename.encode())
    return info.compress_size + 30 + name + len(info.extra) + 46 + name + len(info.extra) + len(info.comment)


owner, full = {}, {}  # entry -> artifact; artifact -> bytes of its own jar
for root, _, files in os.walk(classes):
    for f in files:
        rel = os.path.relpath(os.path.join(root, f), classes).replace(os.sep, "/")
        owner.setdefault(rel, "outboard (own classes)")
with open(cp_file) as f:
    deps = [p for p in f.read().strip().split(os.pathsep) if p.endswith(".jar")]
for dep in deps:
    name = os.path.basename(dep)[: -len(".jar")]
    with zipfile.ZipFile(dep) as z:
        for info in z.infolist():
            if not info.is_dir():
                owner.setdefault(info.filename, name)
        full[name] = os.path.getsize(dep)
merged = {"META-INF/MANIFEST.MF", "reference.conf", "version.conf"}
sizes = {}
with zipfile.ZipFile(jar) as z:
    for info in z.infolist():
        name = info.filename
        if info.is_dir() or name in merged or name.startswith("META-INF/services/"):
            art = "(merged, directories)"
        else:
            art = owner.get(name, "(other)")
        sizes[art] = sizes.get(art, 0) + stored(info)
total = os.path.getsize(jar)
sizes["(zip structure)"] = total - sum(sizes.values())
print(f"{'artifact':<56} {'MB':>7} {'share':>6} {'kept':>5}")
for art, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
    kept = f"{min(100, 100 * size / full[art]):4.0f}%" if full.get(art) else ""
    print(f"{art:<56} {size / 1e6:7.2f} {100 * size / total:5.1f}% {kept:>5}")
print(f"{jar:<56} {total / 1e6:7.2f}")
PY
