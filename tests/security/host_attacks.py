"""Attacks on the machine and on the grader itself, rather than on the tests.

Same assignment and rules as ``attacks.py`` (q1: ``square(x)``, 2 points; q2: ``answer = 42``,
1 point). Each attack earns a point only where its attack worked (``answer = 42`` when it saw
another submission's files, the host's processes ...), so a score above the blank notebook's
means a hole. The wire attacks write to the grader's socket themselves; they must end with
status ``error``, zero and every point still possible. ``{port}`` is a listener the test opens
on the host's loopback. docs/security.md lists the finding behind each key.
"""

FIND_SOCKET = '''
import os, socket, struct, time
def _grader_socket():
    for fd in range(3, 256):
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        if s.family == socket.AF_UNIX and s.type == socket.SOCK_STREAM:
            return s
        s.detach()
    raise RuntimeError("no socket")
'''

HOST_ATTACKS: dict[str, list[str]] = {
    # --- a shared /dev/shm: one submission leaves files, a later one reads them
    "dev-shm-write": ['''
import os
answer = 0
def square(x):
    return 0
with open("/dev/shm/reprokit-attack-secret", "wb") as f:
    for _ in range(50):
        f.write(b"4" * (4 << 20))  # 200 MB
'''],
    "dev-shm-read": ['''
import os
answer = 42 if os.path.exists("/dev/shm/reprokit-attack-secret") else 0
def square(x):
    return 0
'''],
    # --- System V IPC that outlives its grade
    "sysv-shm-create": ['''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
shmid = libc.shmget(0x5EED, 64 << 20, 0o1000 | 0o666)  # IPC_CREAT, 64 MB
answer = 0
def square(x):
    return 0
'''],
    "sysv-shm-find": ['''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
answer = 42 if libc.shmget(0x5EED, 0, 0) >= 0 else 0
def square(x):
    return 0
'''],
    # --- /proc shows the host: the grader's process and its command line
    "proc-lists-host": ['''
import os
seen = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            seen.append(open(f"/proc/{pid}/cmdline", "rb").read())
        except OSError:
            pass
answer = 42 if len(seen) > 3 or any(b"pytest" in c for c in seen) else 0
def square(x):
    return 0
'''],
    # --- a process that outlives the grade
    "leave-a-daemon": ['''
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
answer = 0
def square(x):
    return 0
'''],
    # --- no total disk limit: many files each under the per-file limit
    "fill-the-disk": ['''
import os
written = 0
try:
    for i in range(6):
        with open(f"fill-{i}.bin", "wb") as f:
            for _ in range(50):
                f.write(b"\\0" * (4 << 20))
                written += 4 << 20
except OSError:
    pass
answer = 42 if written >= 1200 << 20 else 0
def square(x):
    return 0
'''],
    # --- the network: a listener on the host's loopback
    "reach-host-listener": ['''
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    answer = 42
except OSError:
    answer = 0
def square(x):
    return 0
'''],
    # --- the wire: replies the grader must survive
    "trickle-a-reply": [FIND_SOCKET + '''
answer = 0
def square(x):
    s = _grader_socket()
    s.sendall(struct.pack("!Q", 1000) + b'{"op":')
    while True:
        time.sleep(1)
        s.sendall(b" ")
'''],
    "huge-reply": [FIND_SOCKET + '''
answer = 0
def square(x):
    body = b'{"op":"result","value":[' + b"[]," * (20 << 20) + b'[]]}'  # 60 MB
    _grader_socket().sendall(struct.pack("!Q", len(body)) + body)
    time.sleep(600)
'''],
    "oversized-length-prefix": [FIND_SOCKET + '''
answer = 0
def square(x):
    _grader_socket().sendall(struct.pack("!Q", 1 << 40))
    time.sleep(600)
'''],
    "unknown-wire-tag": [FIND_SOCKET + '''
answer = 0
def square(x):
    body = b'{"op":"result","value":{"__pickle__":"gASV"}}'
    _grader_socket().sendall(struct.pack("!Q", len(body)) + body)
    time.sleep(600)
'''],
    # --- signals to processes of other uids (another grader's submission on the same kernel)
    "kill-every-process-in-reach": ['''
import os, signal
for sig in (signal.SIGKILL,):
    try:
        os.kill(-1, sig)
    except OSError:
        pass
answer = 0
def square(x):
    return 0
'''],
}

#: the attacks that break the wire protocol: status ``error``
WIRE_ATTACKS = {"trickle-a-reply", "huge-reply", "oversized-length-prefix", "unknown-wire-tag"}
