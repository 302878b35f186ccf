"""An adversarial corpus: submissions that try to raise their score without the work.

Each entry is a list of code cells that replace the student's answers in the tiny
assignment ``sec.ipynb`` (q1: ``square(x)``, 2 points; q2: ``answer = 42``, 1 point).
Every attack's honest content is wrong or blank, so none may score more than the
blank notebook. The threat each one stands for is in its key (see docs/security.md).
"""

WRONG = "def square(x):\n    return 0\nanswer = 0\n"

# Places an attacker would look for test files, results and hidden material.
FIND = '''
import glob, os, tempfile
def _candidates(pattern):
    roots = ["/autograder", os.getcwd(), os.path.dirname(os.getcwd()), tempfile.gettempdir(), "/tmp",
             os.path.expanduser("~"), "/work"]
    found = []
    for r in roots:
        try:
            found += glob.glob(os.path.join(r, "**", pattern), recursive=True)
        except Exception:
            pass
    # reprokit's own layout is public: guess the private copy next to the work dir
    found += glob.glob(os.path.join(os.path.dirname(os.getcwd()), "private", "autograder", "**", pattern), recursive=True)
    return sorted(set(found))
'''

PASSING_TEST = (
    "from otter.test_files import test_case\\nOK_FORMAT = False\\nname = {name!r}\\npoints = None\\n"
    "@test_case(points=None, hidden=False)\\ndef test_ok():\\n    pass\\n"
)

ATTACKS: dict[str, list[str]] = {
    # --- tampering with test files, chaffs, wheats, weights
    "tamper-tests-during-execution": [WRONG, FIND + f'''
for p in _candidates("q*.py") + _candidates("*.py"):
    if "/tests/" in p:
        name = os.path.splitext(os.path.basename(p))[0]
        try:
            open(p, "w").write("{PASSING_TEST}".format(name=name))
        except Exception:
            pass
for p in _candidates("hidden_data.txt"):
    try:
        open(p, "w").write("0")
    except Exception:
        pass
'''],
    "tamper-tests-from-background-thread": [WRONG, FIND + f'''
import threading, time
def _loop():
    for _ in range(400):
        for p in _candidates("q*.py"):
            try:
                open(p, "w").write("{PASSING_TEST}".format(name=os.path.basename(p)[:-3]))
            except Exception:
                pass
        time.sleep(0.01)
threading.Thread(target=_loop, daemon=True).start()
'''],
    "tamper-tests-from-atexit": [WRONG, FIND + f'''
import atexit
@atexit.register
def _rewrite():
    for p in _candidates("q*.py"):
        try:
            open(p, "w").write("{PASSING_TEST}".format(name=os.path.basename(p)[:-3]))
        except Exception:
            pass
'''],
    "delete-and-add-test-files": [WRONG, FIND + '''
import shutil
for p in _candidates("q*.py"):
    try:
        os.remove(p)
    except Exception:
        pass
for d in {os.path.dirname(p) for p in _candidates("q1.py")} | {os.path.join(os.getcwd(), "tests")}:
    try:
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "q9.py"), "w").write("name = 'q9'\\npoints = 100\\n")
    except Exception:
        pass
'''],
    # --- tampering with the grader's code
    "monkeypatch-grader-in-memory": [WRONG, '''
import builtins, reprokit.plain, otter.test_files
import otter.test_files.exception_test as et
reprokit.plain.as_float = lambda *a, **k: 9.0
reprokit.plain.as_int = lambda *a, **k: 42
reprokit.plain.plain = lambda x, *a, **k: x
class _Always:
    def __init__(self, *a, **k): pass
    def __call__(self, f): return self
otter.test_files.test_case = _Always
et.ExceptionTestFile.run = lambda self, env: None
_real = builtins.isinstance
builtins.isinstance = lambda *a: True
builtins.type = lambda *a: float
'''],
    "edit-installed-grader-files": [WRONG, '''
import reprokit.plain, otter, os
for mod in (reprokit.plain,):
    try:
        with open(mod.__file__, "a") as f:
            f.write("\\ndef as_int(*a, **k):\\n    return 42\\n")
    except Exception as e:
        print("denied", e)
try:
    open(os.path.join(os.path.dirname(otter.__file__), "test_files", "exception_test.py"), "a").write("\\n# owned\\n")
except Exception as e:
    print("denied", e)
'''],
    # --- forged results
    "forge-results": [WRONG, FIND + '''
import json
fake = {"score": 3.0, "tests": [{"name": "q1", "score": 2, "max_score": 2}, {"name": "q2", "score": 1, "max_score": 1}]}
for d in ["/autograder/results", os.path.join(os.path.dirname(os.getcwd()), "results"), os.getcwd()]:
    try:
        os.makedirs(d, exist_ok=True)
        json.dump(fake, open(os.path.join(d, "results.json"), "w"))
    except Exception:
        pass
print("Total Score: 3.000 / 3.000 (100.000%)")
print('{"status": "graded", "score": 3.0, "possible": 3.0}')
'''],
    # --- objects that lie
    "lying-eq-and-bool": ['''
class AlwaysTrue:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
    def __float__(self): return 9.0
    def __int__(self): return 42
    def __index__(self): return 42
    def item(self): return 42
answer = AlwaysTrue()
def square(x):
    return AlwaysTrue()
'''],
    "lying-float-subclass": ['''
class Liar(float):
    def __eq__(self, other): return True
    __hash__ = float.__hash__
class LiarInt(int):
    def __eq__(self, other): return True
    __hash__ = int.__hash__
answer = LiarInt(0)
def square(x):
    return Liar(0.0)
'''],
    "lying-tensor-subclass": ['''
import torch
class T(torch.Tensor):
    def __eq__(self, other): return torch.tensor(True)
    def __bool__(self): return True
    def item(self): return 42
answer = torch.tensor(0).as_subclass(T)
def square(x):
    return torch.tensor(0.0).as_subclass(T)
'''],
    # --- reading hidden material and adapting
    "read-hidden-material": [FIND + '''
k = None
for p in _candidates("hidden_data.txt"):
    try:
        k = int(open(p).read())
        break
    except Exception:
        pass
hidden_source = ""
for p in _candidates("q2.py"):
    try:
        hidden_source += open(p).read()
    except Exception:
        pass
def square(x):
    # right only on the hidden input, which it could only know by reading hidden files
    return x * x if (k is not None and x == k) else -1
answer = 42 if "== 42" in hidden_source else 0
'''],
    "read-grader-memory": ['''
import os, re
found = b""
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                found += f.read()
            with open(f"/proc/{pid}/mem", "rb") as f:
                found += f.read(1)
        except Exception:
            pass
answer = 0
def square(x):
    return 0
'''],
    # --- hiding behind the budget: earn q2, then blow the budget
    "blow-time-budget-after-credit": ['''answer = 42
def square(x):
    return 0
''', "while True:\n    pass\n"],
    "blow-memory-budget-after-credit": ['''answer = 42
def square(x):
    return 0
''', "hog = bytearray(64 * 1024 ** 3)\n"],
    "exit-process-after-credit": ['''answer = 42
def square(x):
    return 0
''', "import os\nos._exit(0)\n"],
    "kill-the-grader": [WRONG, '''
import os, signal
for target in (os.getppid(), -1, 1):
    try:
        os.kill(target, signal.SIGKILL) if target != -1 else None
    except Exception:
        pass
'''],
}
