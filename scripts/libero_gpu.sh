#!/usr/bin/env bash
# LIBERO (libero_10) on the GPU machine, from what `aura sim bundle` built (docs/libero_gpu.md).
# Runs there from the repository root, once per device call:
#   call 1..n-1: bash scripts/libero_gpu.sh --partial-ok          (stages what this call carried)
#   call n:      bash scripts/libero_gpu.sh && . /tmp/aura-libero/env.sh && aura eval libero ...
# Each part, wheel and deb is checked against .libero_bundle/index.json (sha256) and copied into
# the prefix (/tmp/aura-libero: it lasts while that machine stays up). Once all are there: wheels
# pip-installed into PREFIX/wheels, GL debs unpacked into / (dpkg -x), parts decompressed into
# PREFIX/src with every file's sha256 checked against the manifest, the assets linked where LIBERO
# looks, LIBERO's config written, LIBERO imported and one EGL frame rendered; then PREFIX/env.sh is
# written (PYTHONPATH, LIBERO_CONFIG_PATH, MUJOCO_GL=egl, the EGL vendor file, PATH with an `aura`).
# A later run on a set-up machine only verifies (sha256 of every file: 0.2 s). Exit: 0 ready (or staged with --partial-ok), 3 still missing something (named),
# 2 corrupt or failed (one line naming the part or file).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PREFIX=${AURA_LIBERO_PREFIX:-/tmp/aura-libero}
INDEX=.libero_bundle/index.json
WHEEL_DIR=.whl
GL_DIR=.gl
PY=python3
PARTIAL_OK=0
EGL_VENDOR=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
T0=$(date +%s)

log() { echo "[libero_gpu] $*"; }
die() {
    echo "[libero_gpu] ERROR: $*" >&2
    exit 2
}
usage() {
    cat <<EOF
usage: bash scripts/libero_gpu.sh [options]
  --prefix DIR     persistent folder for staged parts and the tree (default $PREFIX)
  --index FILE     the carried bundle index (default $INDEX; else the staged copy)
  --wheel-dir DIR  carried wheels (default $WHEEL_DIR); those of this Python's tag in the index install
  --gl-dir DIR     carried GL loader debs (default $GL_DIR), unpacked into / with dpkg -x
  --no-gl          skip the GL debs (a machine whose EGL already works, e.g. a local test)
  --python PY      interpreter to set up for (default python3)
  --partial-ok     exit 0 when parts are still missing after staging (the calls before the last)
EOF
}
while [ $# -gt 0 ]; do
    case $1 in
    --prefix | --index | --wheel-dir | --gl-dir | --python)
        [ $# -ge 2 ] || die "$1 needs a value"
        case $1 in
        --prefix) PREFIX=$2 ;;
        --index) INDEX=$2 ;;
        --wheel-dir) WHEEL_DIR=$2 ;;
        --gl-dir) GL_DIR=$2 ;;
        --python) PY=$2 ;;
        esac
        shift 2
        ;;
    --no-gl) GL_DIR="" && shift ;;
    --partial-ok) PARTIAL_OK=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
command -v "$PY" >/dev/null || die "python $PY not found (--python)"
PREFIX=$(mkdir -p "$PREFIX" && cd "$PREFIX" && pwd)
PY=$(command -v "$PY")
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

# 1. check and stage what this call carried; install the wheels once all are staged
rc=0
PYTHONPATH="$REPO" "$PY" -m cli sim bundle-setup stage --prefix "$PREFIX" --index "$INDEX" \
    --wheel-dir "$WHEEL_DIR" ${GL_DIR:+--gl-dir "$GL_DIR"} || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || exit 2 # the python step printed the one line naming what is bad

# 2. GL loaders (Debian's glvnd, EGL, Vulkan): into / once per machine, as the device notes say
if [ -n "$GL_DIR" ]; then
    mkdir -p "$PREFIX/gl-done"
    new=0
    for f in "$PREFIX"/gl/*.deb; do
        [ -e "$f" ] || continue
        [ -e "$PREFIX/gl-done/$(basename "$f")" ] && continue
        dpkg -x "$f" / || die "dpkg -x $f failed"
        touch "$PREFIX/gl-done/$(basename "$f")"
        new=1
    done
    [ "$new" = 0 ] || ldconfig || die "ldconfig failed after unpacking the GL debs"
fi
if [ "$rc" = 3 ]; then
    if [ "$PARTIAL_OK" = 1 ]; then
        log "staged in $PREFIX; send the rest in the next call ($(($(date +%s) - T0)) s)"
        exit 0
    fi
    echo "[libero_gpu] ERROR: not set up yet: parts, wheels or debs are missing (named above)" >&2
    exit 3
fi

# 3. unpack + verify (or only verify), link, config, import and EGL checks
export PYTHONPATH="$PREFIX/src:$PREFIX/wheels:$REPO"
export LIBERO_CONFIG_PATH="$PREFIX/config" MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
[ -e "$EGL_VENDOR" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$EGL_VENDOR"
"$PY" -m cli sim bundle-setup setup --prefix "$PREFIX" || exit 2

# 4. the environment for later commands (this call's and the next ones' on the same machine)
mkdir -p "$PREFIX/bin"
cat >"$PREFIX/bin/aura" <<EOF
#!/bin/sh
exec "$PY" -c 'import sys; from cli import main; sys.exit(main())' "\$@"
EOF
chmod +x "$PREFIX/bin/aura"
{
    echo "# written by scripts/libero_gpu.sh; source it: . $PREFIX/env.sh"
    echo "export PYTHONPATH=\"$PYTHONPATH\""
    echo "export LIBERO_CONFIG_PATH=\"$LIBERO_CONFIG_PATH\" MUJOCO_GL=egl PYOPENGL_PLATFORM=egl"
    [ -e "$EGL_VENDOR" ] && echo "export __EGL_VENDOR_LIBRARY_FILENAMES=\"$EGL_VENDOR\""
    echo "export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1"
    echo "export PATH=\"$PREFIX/bin:\$PATH\""
} >"$PREFIX/env.sh"
log "ready in $(($(date +%s) - T0)) s; for aura commands: . $PREFIX/env.sh"
cat "$PREFIX/env.sh"
