"""Starts a real ipykernel under the aido seccomp profile and runs cells through jupyter_client.

Prints one JSON line: {"replies": [{"status", "stdout", "mimetypes"}...]}. Driven by
test/docker/seccomp.test.ts; the client lives in the same sandbox, over ipc in /tmp.
"""
import json
import os

os.environ.setdefault("JUPYTER_RUNTIME_DIR", "/tmp/jupyter-runtime")
os.environ.setdefault("IPYTHONDIR", "/tmp/ipython")
os.environ.setdefault("MPLCONFIGDIR", "/tmp/mpl")

from jupyter_client.manager import KernelManager  # noqa: E402

CELLS = [
    "import numpy as np; print(int((np.ones((64, 64)) @ np.ones((64, 64)))[0, 0]))",
    "import pandas as pd; print(pd.DataFrame({'k': [1, 1, 2], 'v': [1, 2, 3]}).groupby('k').v.sum().to_dict())",
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()",
    "import subprocess, threading; t = threading.Thread(target=lambda: None); t.start(); t.join(); print(subprocess.run(['true']).returncode)",
]

km = KernelManager(kernel_name="python3", transport="ipc", ip="/tmp/k")
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=120)
replies = []
try:
    for code in CELLS:
        stdout, mimetypes = [], []

        def on_output(msg):
            if msg["msg_type"] == "stream":
                stdout.append(msg["content"]["text"])
            elif msg["msg_type"] in ("display_data", "execute_result"):
                mimetypes.extend(sorted(msg["content"]["data"]))
            elif msg["msg_type"] == "error":
                stdout.append("\n".join(msg["content"]["traceback"]))

        reply = kc.execute_interactive(code, timeout=120, output_hook=on_output)
        replies.append({"status": reply["content"]["status"], "stdout": "".join(stdout), "mimetypes": mimetypes})
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)

print(json.dumps({"replies": replies}), flush=True)
