#!/usr/bin/env bash
# What each dependency adds to the packaged service, as a table sorted by size: artifact, MB, share.
#
#   mvn -B -q clean package -DskipTests && scripts/jar-report.sh [target/outboard.jar]
#
# A thin jar (a manifest Class-Path, as this build makes): each row is one file, the jar itself or a
# dependency in lib/ as Maven resolved it. A shaded jar (as builds before issue 14 made): an entry
# belongs to the first artifact on the runtime classpath that holds it (our own classes first), the
# one the shade plugin copies; its bytes are its compressed data plus its zip headers, so the rows
# add up to the file. Merged files (services, reference.conf, the manifest) count as "(merged)";
# "kept" is how much of the artifact's own jar the shading kept. Needs python3 (and, for a shaded
# jar, Maven to read the runtime classpath).
set -euo pipefail
cd "$(dirname "$0")/.."
JAR=${1:-target/outboard.jar}
[[ -f $JAR ]] || { echo "no $JAR: run mvn -B -q clean package -DskipTests first" >&2; exit 1; }
CP=$(mktemp)
trap 'rm -f "$CP"' EXIT
if ! unzip -p "$JAR" META-INF/MANIFEST.MF | grep -q '^Class-Path:'; then
  mvn -B -q -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:build-classpath \
    -DincludeScope=runtime -Dmdep.outputFile="$CP" >&2
fi
python3 - "$JAR" target/classes "$CP" <<'PY'
import os, sys, zipfile

jar, classes, cp_file = sys.argv[1:]
sizes, full = {}, {}  # artifact -> bytes in the package; artifact -> bytes of its own jar


def stored(info):  # bytes of one entry in a zip: data, local header, central directory record
    name = len(info.filename.encode())
    return info.compress_size + 30 + name + len(info.extra) + 46 + name + len(info.extra) + len(info.comment)


def thin(class_path):
    sizes[os.path.basename(jar) + " (own classes)"] = os.path.getsize(jar)
    for entry in class_path.split():
        path = os.path.join(os.path.dirname(jar), entry)
        sizes[os.path.basename(entry)[: -len(".jar")]] = os.path.getsize(path)


def shaded():
    owner = {}  # entry -> artifact
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
    with zipfile.ZipFile(jar) as z:
        for info in z.infolist():
            name = info.filename
            if info.is_dir() or name in merged or name.startswith("META-INF/services/"):
                art = "(merged, directories)"
            else:
                art = owner.get(name, "(other)")
            sizes[art] = sizes.get(art, 0) + stored(info)
    sizes["(zip structure)"] = os.path.getsize(jar) - sum(sizes.values())


with zipfile.ZipFile(jar) as z:
    manifest = z.read("META-INF/MANIFEST.MF").decode().replace("\r\n", "\n").replace("\n ", "")
class_path = next((l[len("Class-Path:"):] for l in manifest.split("\n") if l.startswith("Class-Path:")), None)
thin(class_path) if class_path else shaded()
total = sum(sizes.values())
print(f"{'artifact':<56} {'MB':>7} {'share':>6} {' kept' if full else ''}".rstrip())
for art, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
    kept = f"{min(100, 100 * size / full[art]):4.0f}%" if full.get(art) else ""
    print(f"{art:<56} {size / 1e6:7.2f} {100 * size / total:5.1f}% {kept:>5}".rstrip())
print(f"{'total' + (' (the jar and lib/)' if class_path else ''):<56} {total / 1e6:7.2f}")
PY
