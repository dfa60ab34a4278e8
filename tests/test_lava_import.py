"""Lava imports after other code has set up multiprocessing (tqdm does, through its lock)."""

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_lava_processes_import_after_tqdm():
    r = _run("from tqdm import tqdm; tqdm(total=1, disable=True).close()\n"
             "import multiprocessing as mp; assert mp.get_start_method(allow_none=True) == 'fork'\n"
             "from lavasnn.procs.perturb_process import PerturbLIF; print('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_lava_imports_lazily_after_a_lock_created_later():
    """lavasnn.backends readies Lava at import; a lock made afterwards must not break a later
    first import of Lava (crosscheck's run_lava imports Lava inside the function)."""
    r = _run("import lavasnn.backends\n"
             "import multiprocessing as mp; mp.Lock()\n"
             "from lava.proc.dense.process import Dense; print('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_another_start_method_is_a_clear_error():
    r = _run("import multiprocessing as mp; mp.set_start_method('spawn')\n"
             "from lavasnn.errors import UserError\n"
             "try:\n    import lavasnn.procs.process\nexcept UserError as e:\n    print(e)")
    assert "needs multiprocessing's 'fork' start method" in r.stdout, r.stderr
