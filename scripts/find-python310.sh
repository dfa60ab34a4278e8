#!/usr/bin/env bash
# Print the path of a working Python 3.10 interpreter, or explain why there is none.
# lava-nc 0.10 and lava-dl 0.6 declare requires-python ">=3.10,<3.11", so no other
# version will do. Order: $PYTHON310, python3.10 on PATH, pyenv's 3.10.x (newest first).
set -u

is_py310() {
    "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1
}

candidates=()
[ -n "${PYTHON310:-}" ] && candidates+=("$PYTHON310")
command -v python3.10 >/dev/null 2>&1 && candidates+=("$(command -v python3.10)")
pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for p in $(ls -d "$pyenv_root"/versions/3.10.*/bin/python 2>/dev/null | sort -t. -k3 -n -r); do
    candidates+=("$p")
done

for p in "${candidates[@]+"${candidates[@]}"}"; do
    if is_py310 "$p"; then
        echo "$p"
        exit 0
    fi
done

cat >&2 <<MSG
error: Python 3.10 is required but none was found.
  lavasnn depends on lava-nc 0.10 and lava-dl 0.6, which install only on Python >=3.10,<3.11.
  Looked at: \$PYTHON310, python3.10 on PATH, and pyenv versions under $pyenv_root/versions/3.10.*.
  Fix: install one (for example 'pyenv install 3.10') or point PYTHON310 at a python3.10 binary.
MSG
exit 1
