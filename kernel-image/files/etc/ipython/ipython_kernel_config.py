# System-wide ipykernel configuration of the sandboxed kernel image. Installed read-only as
# /etc/ipython/ipython_kernel_config.py; IPython executes it as Python on every kernel start,
# before any user code runs. It changes nothing for plain python3 processes in the container.
import os
import shutil

# 1. Figures in kernels. The image sets MPLBACKEND=Agg so that any Python process in the sandbox
# draws headless. ipykernel picks its inline backend (figures sent back as display_data PNGs) only
# when MPLBACKEND is unset, so with Agg a kernel's plt.show() would show nothing. For the kernel
# process, the image default is dropped and ipykernel's own default applies; a value that the
# gateway passed on purpose is kept.
if os.environ.get("MPLBACKEND") == "Agg":
    del os.environ["MPLBACKEND"]


# 2. matplotlib's font cache. matplotlib keeps its font list (fontlist-v<N>.json) in its
# config/cache directory (MPLCONFIGDIR) and uses that directory only if it is writable: pointed
# at a read-only one, it logs a warning, makes a temporary directory and scans every font again
# on the first `import matplotlib.pyplot` (about 0.3 s at 0.5 CPU). The root filesystem is
# read-only at run time, so Dockerfile.secure builds the list into
# /usr/local/share/aido-kernel/matplotlib and it is copied here into the writable MPLCONFIGDIR
# (/tmp/.matplotlib, on the /tmp tmpfs). Any failure just leaves matplotlib to rebuild it.
def _seed_matplotlib_cache(seed="/usr/local/share/aido-kernel/matplotlib"):
    target = os.environ.get("MPLCONFIGDIR")
    if not target or not os.path.isdir(seed):
        return
    try:
        os.makedirs(target, mode=0o700, exist_ok=True)
        for name in os.listdir(seed):
            destination = os.path.join(target, name)
            if not os.path.exists(destination):
                shutil.copyfile(os.path.join(seed, name), destination)
    except OSError:
        pass


_seed_matplotlib_cache()
