"""Runs inside a sandbox under the aido seccomp profile; prints one JSON line of results.

workloads: name -> "ok" or the error; denied: name -> errno name seen ("OK" if the call succeeded).
Driven by test/docker/seccomp.test.ts.
"""
import ctypes
import errno
import json
import os
import platform
import socket
import subprocess
import sys
import traceback

workloads = {}
denied = {}


def workload(name):
    def run(fn):
        try:
            fn()
            workloads[name] = "ok"
        except BaseException as exc:  # noqa: BLE001 - every failure is a result
            workloads[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return fn

    return run


@workload("numpy matrix multiply")
def _():
    import numpy as np

    a = np.arange(90000, dtype=np.float64).reshape(300, 300) / 1000.0
    b = a @ a.T
    assert b.shape == (300, 300)
    assert abs(b[5, 7] - float(a[5] @ a[7])) < 1e-6
    np.linalg.inv(np.eye(50) * 2.0)


@workload("pandas groupby")
def _():
    import pandas as pd

    df = pd.DataFrame({"k": ["a", "b", "a", "c", "b"], "v": [1, 2, 3, 4, 5]})
    assert df.groupby("k")["v"].sum().to_dict() == {"a": 4, "b": 7, "c": 4}
    df.to_csv("/workspace/out.csv", index=False)
    assert pd.read_csv("/workspace/out.csv").shape == (5, 2)


@workload("matplotlib Agg png in /tmp")
def _():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0, 1, 4])
    fig.savefig("/tmp/plot.png")
    with open("/tmp/plot.png", "rb") as f:
        head = f.read(8)
    assert head == b"\x89PNG\r\n\x1a\n", head
    assert os.path.getsize("/tmp/plot.png") > 1000


@workload("import ipykernel, zmq; ipc bind in /tmp and /run/kernel")
def _():
    import ipykernel  # noqa: F401
    import zmq

    ctx = zmq.Context()
    for where in ("/tmp/probe.sock", "/run/kernel/probe.sock"):
        rep = ctx.socket(zmq.REP)
        rep.bind("ipc://" + where)
        req = ctx.socket(zmq.REQ)
        req.connect("ipc://" + where)
        req.send(b"ping")
        assert rep.recv() == b"ping"
        rep.send(b"pong")
        assert req.recv() == b"pong"
        req.close(linger=0)
        rep.close(linger=0)
    ctx.term()


@workload("threads")
def _():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(lambda x: x * x, range(100))) == 328350


@workload("subprocess.run(['true'])")
def _():
    subprocess.run(["true"], check=True)
    out = subprocess.run([sys.executable, "-c", "print(6*7)"], check=True, capture_output=True)
    assert out.stdout.strip() == b"42"


@workload("multiprocessing pool (fork, POSIX semaphores in /dev/shm)")
def _():
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]


@workload("asyncio with a subprocess")
def _():
    import asyncio

    async def main():
        proc = await asyncio.create_subprocess_exec("true")
        assert await proc.wait() == 0

    asyncio.run(main())


@workload("loopback inet socket and netlink interface list")
def _():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    s.close()
    names = [n for _, n in socket.if_nameindex()]
    assert names == ["lo"], names


@workload("write /workspace, refuse writes to the root file system")
def _():
    with open("/workspace/x.txt", "w") as f:
        f.write("hello")
    try:
        open("/etc/probe", "w")
    except OSError as exc:
        assert exc.errno in (errno.EROFS, errno.EACCES), exc
    else:
        raise AssertionError("/etc is writable")


# --- denials -------------------------------------------------------------------------------------

NR = {
    "x86_64": dict(
        clone=56, clone3=435, unshare=272, setns=308, mount=165, pivot_root=155, chroot=161,
        ptrace=101, process_vm_readv=310, keyctl=250, add_key=248, bpf=321, perf_event_open=298,
        userfaultfd=323, io_uring_setup=425, kexec_load=246, init_module=175,
        open_by_handle_at=304, name_to_handle_at=303, personality=135, fsopen=430,
        settimeofday=164, adjtimex=159, syslog=103,
    ),
    "aarch64": dict(
        clone=220, clone3=435, unshare=97, setns=268, mount=40, pivot_root=41, chroot=51,
        ptrace=117, process_vm_readv=270, keyctl=219, add_key=217, bpf=280, perf_event_open=241,
        userfaultfd=282, io_uring_setup=425, kexec_load=104, init_module=105,
        open_by_handle_at=265, name_to_handle_at=264, personality=92, fsopen=430,
        settimeofday=170, adjtimex=171, syslog=116,
    ),
}[platform.machine()]

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIGCHLD = 17


def raw(name, *args):
    """Calls a system call by number; returns its errno name, or "OK"."""
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
    if ret == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return "OK"


def raw_clone(flags):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(NR["clone"]), ctypes.c_long(flags), 0, 0, 0, 0)
    if ret == 0:  # child of a clone that should not have happened
        os._exit(0)
    if ret == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    os.waitpid(ret, 0)
    return "OK"


def sock(family, kind, proto=0):
    try:
        socket.socket(family, kind, proto).close()
        return "OK"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


denied["unshare(CLONE_NEWUSER)"] = raw("unshare", CLONE_NEWUSER)
denied["unshare(CLONE_NEWNS)"] = raw("unshare", CLONE_NEWNS)
denied["setns"] = raw("setns", 0, 0)
denied["mount tmpfs"] = raw("mount", 0, 0, 0, 0, 0)
denied["pivot_root"] = raw("pivot_root", 0, 0)
denied["chroot"] = raw("chroot", 0)
denied["ptrace(PTRACE_PEEKDATA, parent)"] = raw("ptrace", 2, os.getppid(), 0, 0)
denied["process_vm_readv"] = raw("process_vm_readv", os.getpid(), 0, 0, 0, 0, 0)
denied["keyctl"] = raw("keyctl", 0, -3, 0)
denied["add_key"] = raw("add_key", 0, 0, 0, 0, -3)
denied["bpf"] = raw("bpf", 0, 0, 0)
denied["perf_event_open"] = raw("perf_event_open", 0, 0, -1, -1, 0)
denied["userfaultfd"] = raw("userfaultfd", 0)
denied["io_uring_setup"] = raw("io_uring_setup", 1, 0)
denied["kexec_load"] = raw("kexec_load", 0, 0, 0, 0)
denied["init_module"] = raw("init_module", 0, 0, 0)
denied["open_by_handle_at"] = raw("open_by_handle_at", -100, 0, 0)
denied["name_to_handle_at"] = raw("name_to_handle_at", -100, 0, 0, 0, 0)
denied["fsopen"] = raw("fsopen", 0, 0)
denied["settimeofday"] = raw("settimeofday", 0, 0)
denied["adjtimex"] = raw("adjtimex", 0)
denied["syslog"] = raw("syslog", 3, 0, 0)
denied["personality(ADDR_NO_RANDOMIZE)"] = raw("personality", 0x0040000)
denied["clone(CLONE_NEWUSER)"] = raw_clone(CLONE_NEWUSER | SIGCHLD)
denied["clone(CLONE_NEWNET)"] = raw_clone(CLONE_NEWNET | SIGCHLD)
denied["clone3"] = raw("clone3", 0, 0)
denied["socket(AF_ALG)"] = sock(38, socket.SOCK_SEQPACKET)
denied["socket(AF_VSOCK)"] = sock(40, socket.SOCK_STREAM)
denied["socket(AF_PACKET)"] = sock(17, socket.SOCK_RAW)
denied["socket(AF_NETLINK, NETLINK_AUDIT)"] = sock(16, socket.SOCK_RAW, 9)
# Positive controls: the same calls with allowed arguments go through.
denied["personality(query) [allowed]"] = raw("personality", 0xFFFFFFFF)
denied["clone(SIGCHLD) [allowed]"] = raw_clone(SIGCHLD)

status = open("/proc/self/status").read()
seccomp_mode = [l.split()[1] for l in status.splitlines() if l.startswith("Seccomp:")]
print(json.dumps({
    "workloads": workloads,
    "denied": denied,
    "seccompMode": seccomp_mode[0] if seccomp_mode else None,
    "uid": os.getuid(),
}), flush=True)
