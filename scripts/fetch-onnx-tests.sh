#!/usr/bin/env bash
# Fetches the ONNX backend test suite: the `onnx` Python wheel pinned below,
# from PyPI with pip, unpacked into the cache directory (default
# target/onnx-tests, ignored by git) as
#
#   target/onnx-tests/data/node/<case>/model.onnx, test_data_set_N/...
#   target/onnx-tests/data/pytorch-converted/<case>/...
#   target/onnx-tests/data/pytorch-operator/<case>/...
#
# onnx 1.22.0 is the pinned release: it ships onnx/backend/test/data/node.
# Run from anywhere; a second run with the data present does nothing.
#
#   ONNX_VERSION  the onnx release (default 1.22.0)
#   ONNX_TESTS    the cache directory (default target/onnx-tests)
#
# Then: lpsim onnx-test target/onnx-tests/data/node   (see conformance/README.md)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=${ONNX_VERSION:-1.22.0}
cache=${ONNX_TESTS:-target/onnx-tests}
stamp="$cache/data/.onnx-$version"

if [ -f "$stamp" ]; then
    echo "fetch-onnx-tests: onnx $version test data already in $cache/data"
    exit 0
fi

python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
    echo "fetch-onnx-tests: error: python3 is needed (for pip and to unzip the wheel)" >&2
    exit 1
fi

wheels="$cache/wheels"
mkdir -p "$wheels"
# The wheel for this interpreter; failing that (no wheel for this Python
# version) the CPython 3.11 manylinux one: the test data is the same in all.
if ! ls "$wheels"/onnx-"$version"-*.whl >/dev/null 2>&1; then
    "$python" -m pip download --quiet --no-deps --only-binary=:all: "onnx==$version" -d "$wheels" ||
        "$python" -m pip download --quiet --no-deps --only-binary=:all: \
            --python-version 3.11 --platform manylinux_2_28_x86_64 "onnx==$version" -d "$wheels"
fi
wheel=$(ls "$wheels"/onnx-"$version"-*.whl | head -n 1)

rm -rf "$cache/data"
mkdir -p "$cache/data"
"$python" - "$wheel" "$cache/data" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
prefix = "onnx/backend/test/data/"
suites = ("node", "pytorch-converted", "pytorch-operator")
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = name[len(prefix):]
        if rel.split("/", 1)[0] not in suites:
            continue
        dest = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, "wb") as dst:
            dst.write(src.read())
        n += 1
print(f"fetch-onnx-tests: unpacked {n} files from {os.path.basename(wheel)}")
PY
touch "$stamp"
for s in node pytorch-converted pytorch-operator; do
    echo "fetch-onnx-tests: $s: $(ls "$cache/data/$s" | wc -l) cases"
done
